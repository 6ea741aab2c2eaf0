import type net from 'node:net';
import type tls from 'node:tls';
import type { Element } from '@xmpp/xml';
import type { Logger } from '../../../broker/index.ts';
import { NS_SERVER, NS_STREAM, NS_TLS } from '../ns.ts';
import { dialbackKey, dialbackName, dialbackXml } from './dialback.ts';
import type { S2sOptions, S2sStreamLimits } from './options.ts';
import { s2sHeader, S2sStream } from './stream.ts';

export interface OutboundEvents {
  /** dialback said valid: stanzas may go out */
  ready(): void;
  /** the answer to a db:verify we sent, for the stream id it named and our domain it was for */
  verified(id: string, receiving: string, valid: boolean): void;
  /** the stream is gone; `reason` for the stanzas still queued */
  ended(reason: 'remote-server-not-found' | 'remote-server-timeout', why: string): void;
}

/**
 * Our stream to another server [RFC6120 4.7]: header, STARTTLS with the
 * peer's certificate checked for its domain (PKIX; `tlsClient` carries the
 * trust and the servername) [RFC6120 5.4.3.1, 13.7.2], then dialback
 * [XEP-0220 2.1]: we claim our domain with a key only we can check, and the
 * peer asks our listener whether the key is right. Also carries the
 * db:verify requests of our listener to that server's authoritative side.
 */
export class OutboundStream extends S2sStream {
  readonly local: string;
  readonly remote: string;
  private readonly secret: string;
  private readonly tlsClient: tls.ConnectionOptions;
  private readonly ev: OutboundEvents;
  /** the stream id the peer gave us (the dialback key covers it) */
  private peerId?: string;
  /** features seen on the secure stream: db:verify may go out */
  private open = false;
  ready = false;
  private readonly verifyQueue: string[] = [];

  constructor(
    sock: net.Socket,
    a: { local: string; remote: string; secret: string; tlsClient: tls.ConnectionOptions },
    ev: OutboundEvents,
    opts: S2sOptions,
    limits: S2sStreamLimits,
    log: Logger,
  ) {
    super(sock, opts, limits, log.child({ s2sout: a.remote }));
    this.local = a.local;
    this.remote = a.remote;
    this.secret = a.secret;
    this.tlsClient = a.tlsClient;
    this.ev = ev;
    this.sendHeader();
  }

  private sendHeader(): void {
    this.headerSent = true;
    this.write(s2sHeader({ from: this.local, to: this.remote }));
  }

  protected replyHeader(): string {
    return s2sHeader({ from: this.local, to: this.remote });
  }

  /** Ask the peer whether a key it gave our listener is its own [XEP-0220 2.3]. */
  sendVerify(id: string, key: string, receiving: string): void {
    const xml = dialbackXml('verify', { from: receiving, to: this.remote, id, key });
    if (this.open) this.write(xml);
    else this.verifyQueue.push(xml);
  }

  /** A stanza, once ready. */
  sendStanza(xml: string): void {
    this.write(xml);
  }

  protected onHeader(name: string, uri: string, attrs: Record<string, string>): void {
    if (uri !== NS_STREAM || attrs.xmlns !== NS_SERVER)
      return this.fail('invalid-namespace', 'expected a jabber:server stream');
    if (!attrs.id) return this.fail('invalid-xml', 'no stream id'); // [RFC6120 4.7.3] needed by dialback
    if (attrs.version !== '1.0' && this.opts.requireTls)
      return this.fail('unsupported-version', 'version 1.0 required for STARTTLS'); // [RFC6120 4.7.5]
    this.peerId = attrs.id;
  }

  protected async onElement(el: Element): Promise<void> {
    if (el.name === 'stream:features' || (el.name === 'features' && el.attrs.xmlns === NS_STREAM))
      return this.features(el);
    if (el.name === 'stream:error' || (el.name === 'error' && el.attrs.xmlns === NS_STREAM)) {
      const cond = el.getChildElements()[0]?.name ?? 'undefined-condition';
      this.log.info({ condition: cond }, 'peer server closed our stream with an error');
      return this.close();
    }
    if (el.attrs.xmlns === NS_TLS) {
      if (el.name !== 'proceed') return this.giveUp('STARTTLS refused by the peer');
      try {
        await this.startTls({ client: this.tlsClient });
      } catch (err) {
        // An unverified certificate lands here: the peer is not who the domain says [RFC6120 13.7.2]
        return this.giveUp(`TLS with ${this.remote} failed: ${(err as Error).message}`);
      }
      this.sendHeader(); // [RFC6120 5.4.3.3] a new stream over TLS
      return;
    }
    const db = dialbackName(el);
    if (db === 'result') return this.dialbackResult(el);
    if (db === 'verify') {
      const id = el.attrs.id;
      if (id && el.attrs.from === this.remote && el.attrs.to)
        this.ev.verified(id, el.attrs.to, el.attrs.type === 'valid');
      return;
    }
    // Nothing else belongs on a stream we opened (no bidi [XEP-0288]).
    this.fail('unsupported-stanza-type', `<${el.name}/> on an outbound stream`);
  }

  private features(el: Element): void {
    if (!this.secure) {
      const starttls = el
        .getChildElements()
        .some((c) => c.name === 'starttls' && c.attrs.xmlns === NS_TLS);
      if (starttls) return this.write(`<starttls xmlns='${NS_TLS}'/>`);
      if (this.opts.requireTls) return this.giveUp(`${this.remote} offers no STARTTLS`);
    }
    this.open = true;
    for (const v of this.verifyQueue.splice(0)) this.write(v);
    if (this.ready) return;
    // [XEP-0220 2.1.1] claim our domain: the key binds it to the peer's stream id
    const key = dialbackKey(this.secret, this.remote, this.local, this.peerId!);
    this.write(dialbackXml('result', { from: this.local, to: this.remote, key }));
  }

  private dialbackResult(el: Element): void {
    if (el.attrs.from !== this.remote || el.attrs.to !== this.local) return;
    if (el.attrs.type === 'valid') {
      this.ready = true;
      this.authenticated();
      this.ev.ready();
      return;
    }
    this.giveUp(`dialback refused by ${this.remote} (${el.attrs.type ?? 'no type'})`);
  }

  private giveUp(why: string): void {
    this.log.info({ why }, 's2s outbound failed');
    this.endReason = 'remote-server-not-found';
    this.endWhy = why;
    this.close();
  }

  /** a peer that closes or fails during set-up is not found; one that does not answer in time, a timeout [RFC6120 8.3.3.16, 8.3.3.17] */
  private endReason: 'remote-server-not-found' | 'remote-server-timeout' =
    'remote-server-not-found';
  private endWhy = 'connection closed';

  override fail(condition: string, text?: string): void {
    if (condition === 'connection-timeout' && !this.ready) {
      this.endReason = 'remote-server-timeout';
      this.endWhy = text ?? condition;
    }
    super.fail(condition, text);
  }

  protected onEnded(why: string): void {
    this.ev.ended(this.endReason, this.endWhy === 'connection closed' ? why : this.endWhy);
  }
}
