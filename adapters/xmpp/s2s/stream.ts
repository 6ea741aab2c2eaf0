import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import tls from 'node:tls';
import { escapeXML, type Element } from '@xmpp/xml';
import type { Logger } from '../../../broker/index.ts';
import { StreamParser, type ParseFailure, type StreamParserEvents } from '../parser.ts';
import { NS_DIALBACK, NS_SERVER, NS_STREAM, NS_STREAMS_ERR } from '../ns.ts';
import type { S2sOptions, S2sStreamLimits } from './options.ts';
import { InboundThrottle } from './throttle.ts';

/** A stream error element [RFC6120 4.9.3] by its condition name. */
export function streamError(condition: string, text?: string): string {
  const t = text ? `<text xmlns='${NS_STREAMS_ERR}'>${escapeXML(text)}</text>` : '';
  return `<stream:error><${condition} xmlns='${NS_STREAMS_ERR}'/>${t}</stream:error>`;
}

/** The header of a server-to-server stream, with the dialback namespace declared [RFC6120 4.7, XEP-0220 2.1]. */
export function s2sHeader(a: { from: string; to?: string; id?: string }): string {
  const to = a.to ? ` to='${escapeXML(a.to)}'` : '';
  const id = a.id ? ` id='${a.id}'` : '';
  return `<?xml version='1.0'?><stream:stream xmlns='${NS_SERVER}' xmlns:stream='${NS_STREAM}' xmlns:db='${NS_DIALBACK}' from='${escapeXML(a.from)}'${to}${id} version='1.0'>`;
}

/**
 * One server-to-server stream over a TCP socket, either direction: the
 * parser with the listener's limits [RFC6120 13.12], elements handled in
 * order with reading paused while too many wait (maxInboundStanzas), the
 * authentication deadline (authTimeoutMs), the idle timeout, STARTTLS in
 * place, and closing with a stream error. Subclasses (inbound.ts,
 * outbound.ts) speak the protocol.
 */
export abstract class S2sStream implements StreamParserEvents {
  /** this side's stream id (inbound: the one we send, new at every stream restart [RFC6120 4.7.3]; outbound: unused) */
  id = randomBytes(12).toString('hex');
  protected sock: net.Socket;
  protected parser!: StreamParser;
  secure = false;
  closed = false;
  private steps: Promise<void> = Promise.resolve();
  private pending = 0;
  /** why reading is paused: 1 too many elements waiting, 2 over the inbound rate */
  private pausedBy = 0;
  private readonly throttle: InboundThrottle;
  private rateTimer?: NodeJS.Timeout;
  private parsed = 0;
  private authTimer?: NodeJS.Timeout;
  /** bytes of a STARTTLS in progress are not parsed (RFC6120 5.4.3.3) */
  private upgrading = false;
  protected readonly log: Logger;
  protected readonly opts: S2sOptions;
  protected readonly limits: S2sStreamLimits;

  constructor(sock: net.Socket, opts: S2sOptions, limits: S2sStreamLimits, log: Logger) {
    this.sock = sock;
    this.opts = opts;
    this.limits = limits;
    this.log = log;
    this.throttle = new InboundThrottle(limits);
    this.newParser();
    this.attach(sock);
    sock.on('close', () => this.ended('closed'));
    if (opts.idleTimeoutMs > 0) {
      sock.setTimeout(opts.idleTimeoutMs);
      sock.on('timeout', () => this.fail('connection-timeout', 'no traffic'));
    }
    this.authTimer = setTimeout(
      () => this.fail('connection-timeout', 'not authenticated in time'),
      opts.authTimeoutMs,
    );
    this.authTimer.unref();
  }

  private attach(sock: net.Socket): void {
    sock.on('data', (d: Buffer) => {
      if (this.upgrading) return;
      const before = this.parsed;
      this.parser.write(d);
      this.rate(d.length, this.parsed - before);
    });
    sock.on('error', (err) => {
      this.log.debug({ err: err.message }, 's2s socket error');
      this.ended('socket error');
    });
  }

  /** Authenticated: the authentication deadline no longer applies. */
  protected authenticated(): void {
    clearTimeout(this.authTimer);
  }

  protected newParser(): void {
    this.parser = new StreamParser(this, {
      maxStanzaSize: this.limits.maxStanzaSize,
      maxDepth: this.limits.maxDepth,
    });
  }

  write(xml: string): void {
    if (this.closed) return;
    if (this.sock.writableLength > this.opts.maxOutboundBuffer)
      return this.fail('policy-violation', 'slow consumer: outbound buffer full');
    this.sock.write(xml);
  }

  // ---- StreamParserEvents ----

  streamOpened(name: string, uri: string, attrs: Record<string, string>): void {
    this.enqueue(() => this.onHeader(name, uri, attrs));
  }

  stanzaParsed(el: Element): void {
    this.parsed++;
    this.enqueue(() => this.onElement(el));
  }

  streamClosed(): void {
    this.enqueue(() => this.close());
  }

  parseFailed(condition: ParseFailure, text: string): void {
    this.log.info({ condition, text }, 'bad xml from a peer server');
    this.fail(condition, text);
  }

  /** Elements are handled one at a time, in order; reading pauses while too many wait. */
  private enqueue(fn: () => void | Promise<void>): void {
    const parser = this.parser;
    this.pending++;
    if (this.pending > this.limits.maxInboundStanzas) this.setPaused(1, true);
    this.steps = this.steps
      .then(() => (this.closed || parser !== this.parser ? undefined : fn()))
      .catch((err: unknown) => {
        this.log.error({ err }, 's2s element handling failed');
        this.fail('internal-server-error');
      })
      .finally(() => {
        this.pending--;
        if (this.pausedBy & 1 && this.pending <= this.limits.maxInboundStanzas / 2)
          this.setPaused(1, false);
      });
  }

  private setPaused(bit: number, on: boolean): void {
    const was = this.pausedBy;
    this.pausedBy = on ? was | bit : was & ~bit;
    if (was === 0 && this.pausedBy !== 0) this.sock.pause();
    else if (was !== 0 && this.pausedBy === 0) this.sock.resume();
  }

  /** The inbound rate (xmpp.inboundBytesPerSecond, …): past it reading pauses; kept over it, policy-violation [RFC6120 4.9.3.14]. */
  private rate(bytes: number, stanzas: number): void {
    const wait = this.throttle.spend(bytes, stanzas);
    if (wait === 'over')
      return this.fail('policy-violation', 'sending faster than allowed for too long');
    if (wait === 0 || this.rateTimer) return;
    this.setPaused(2, true);
    this.rateTimer = setTimeout(() => {
      this.rateTimer = undefined;
      this.setPaused(2, false);
    }, wait);
    this.rateTimer.unref();
  }

  /**
   * STARTTLS in place [RFC6120 5.4.3.3]: nothing read before the handshake
   * survives (a fresh parser); `server` answers the handshake with our
   * certificate, otherwise we are the client and check the peer's.
   */
  protected async startTls(
    side: { server: tls.SecureContext } | { client: tls.ConnectionOptions },
  ): Promise<void> {
    const raw = this.sock;
    this.upgrading = true;
    raw.removeAllListeners('data');
    raw.removeAllListeners('timeout');
    this.newParser();
    const secure =
      'server' in side
        ? new tls.TLSSocket(raw, { isServer: true, secureContext: side.server })
        : tls.connect({ ...side.client, socket: raw });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error('TLS handshake timed out'));
        secure.destroy();
      }, this.limits.tlsHandshakeTimeoutMs);
      secure.once('secure', () => {
        clearTimeout(timer);
        resolve();
      });
      secure.once('secureConnect', () => {
        clearTimeout(timer);
        resolve();
      });
      secure.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    this.sock = secure;
    if (this.pausedBy) secure.pause();
    this.secure = true;
    this.upgrading = false;
    this.attach(secure);
    if (this.opts.idleTimeoutMs > 0) {
      secure.setTimeout(this.opts.idleTimeoutMs);
      secure.on('timeout', () => this.fail('connection-timeout', 'no traffic'));
    }
  }

  /** End the stream with a stream error [RFC6120 4.9]. */
  fail(condition: string, text?: string): void {
    if (this.closed) return;
    this.log.info({ condition, text }, 's2s stream error');
    this.sock.write(`${this.headerSent ? '' : this.replyHeader()}${streamError(condition, text)}`);
    this.close();
  }

  /** Close the stream [RFC6120 4.4]. */
  close(): void {
    if (this.closed) return;
    this.sock.end('</stream:stream>');
    setTimeout(() => this.sock.destroy(), 2000).unref();
    this.ended('closed');
  }

  private endedOnce = false;
  private ended(why: string): void {
    this.closed = true;
    if (this.endedOnce) return;
    this.endedOnce = true;
    clearTimeout(this.authTimer);
    clearTimeout(this.rateTimer);
    this.onEnded(why);
  }

  /** A header has gone out on this stream (a stream error needs one first). */
  protected headerSent = false;
  /** The header to send before a stream error when none went out yet. */
  protected abstract replyHeader(): string;
  protected abstract onHeader(
    name: string,
    uri: string,
    attrs: Record<string, string>,
  ): void | Promise<void>;
  protected abstract onElement(el: Element): void | Promise<void>;
  protected abstract onEnded(why: string): void;
}
