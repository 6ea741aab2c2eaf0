// Over 600 lines, kept whole for now: SASL (stream-sasl.ts) and binding (stream-bind.ts) are out; what stays is
// one state machine (stream phases, STARTTLS, inbound backpressure and rate limits, detach/resume for XEP-0198)
// whose parts share the phase and the read pause, plus the two entry points of a session that moves between
// cluster nodes (adopt, handOff) because they set that phase. Next split: the inbound throttle into its own file (issue 21).
import { randomBytes } from 'node:crypto';
import { Element, escapeXML } from '@xmpp/xml';
import {
  Address,
  BrokerError,
  closeReason,
  isStorableMessage,
  OriginPipeline,
  sessionDefaults,
  snippet,
  type Broker,
  type CloseKind,
  type CloseReason,
  type Envelope,
  type Logger,
  type RosterItem,
  type Session,
} from '../../broker/index.ts';
import { xmppHooks } from './hooks.ts';
import type { XmppOptions } from './options.ts';
import {
  NS_CLIENT,
  NS_STREAM,
  StreamParser,
  type ParseFailure,
  type StreamParserEvents,
} from './parser.ts';
import { offeredMechanisms } from './sasl.ts';
import { reserveResource, bindResultXml } from './stream-bind.ts';
import { SaslNegotiation, type SaslOutcome } from './stream-sasl.ts';
import { envelopeXml, errorReply, toEnvelope } from './stanza.ts';
import { streamErrorXml } from './stream-errors.ts';
import { handleIq, handlePreAuthIq } from './iq.ts';
import { rosterItemXml } from './modules/roster.ts';
import { nonzaRegistry } from './features.ts';
import { SessionFilters, SessionState, type Outbound, type Slot } from './session-state.ts';

import { NS_BIND, NS_ROSTER, NS_SASL, NS_TLS } from './ns.ts';

/** What the connection needs from its byte transport (TCP, TLS, later WebSocket). */
export interface Transport {
  /** tcp, tls… */
  readonly kind: string;
  readonly remoteAddress: string;
  secure: boolean;
  readonly canStartTls: boolean;
  /** one complete element (or several, on byte-stream transports) */
  write(data: string): void;
  /** the stream header [RFC6120 4.7], or `<open/>` on WebSocket [RFC7395 3.3.2] */
  openStream(attrs: { id: string; from: string; to?: string }): void;
  /**
   * An optional stream error, then the stream end (`</stream:stream>` or `<close/>`);
   * `seeOtherUri`: a WebSocket `<close/>` naming another endpoint [RFC7395 3.6.1]
   * (transports without it close without an error).
   */
  closeStream(errorXml?: string, seeOtherUri?: string): void;
  /** a keepalive the transport understands (whitespace on TCP [RFC6120 4.6.1], a ping frame on WebSocket) */
  keepalive(): void;
  /** bytes queued but not yet sent (slow-consumer detection) */
  bufferedAmount(): number;
  /** upgrade in place; resolves once TLS is up */
  startTls(): Promise<void>;
  /** stop reading from the client (backpressure, rate limit); bytes wait in the kernel or the client */
  pause(): void;
  /** read again */
  resume(): void;
  /** flush and close; `waitForPeer`: first let the client close its side (bounded wait) [RFC6120 4.4] */
  end(waitForPeer?: boolean): void;
}

/** 'detached': the transport is gone but a module (stream management) keeps the session bound for a while. */
type Phase = 'header' | 'tls' | 'auth' | 'bind' | 'bound' | 'detached' | 'closed';

/**
 * One timer for the deadlines of every connection instead of two or three
 * timers per connection: less memory per idle session, no timer churn on
 * every read. Deadlines fire within SWEEP_MS of being due.
 */
const SWEEP_MS = 250;
/** A stream quiet this long lets its parser state go; the next bytes rebuild it (about as costly as parsing a small stanza). */
const RELEASE_PARSER_MS = 1000;
/** How often a paced offline flush looks at the transport's buffer. */
const DRAIN_POLL_MS = 10;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Why reading is paused: too much parsed and not handled yet, or over the inbound rate. */
const PAUSE_BACKLOG = 1;
const PAUSE_RATE = 2;
/** The settled start of every connection's step chain: one shared promise, not one per idle connection. */
const SETTLED: Promise<void> = Promise.resolve();

/** Seconds until a token bucket at `tokens` is back at zero, refilled at `rate` per second (0: no limit). */
function debt(tokens: number, rate: number): number {
  if (rate <= 0) return 0;
  return tokens < 0 ? -tokens / rate : 0;
}
const deadlines = new (class {
  private readonly conns = new Set<XmppConnection>();
  private timer?: NodeJS.Timeout;

  add(c: XmppConnection): void {
    this.conns.add(c);
    if (!this.timer) {
      this.timer = setInterval(() => {
        const now = Date.now();
        for (const conn of this.conns) {
          try {
            conn.checkDeadlines(now);
          } catch (err) {
            // One connection's failure must not end the sweep for the others, nor the process (issue 20).
            conn.transportClosed('internal-error');
            void err;
          }
        }
      }, SWEEP_MS);
      this.timer.unref();
    }
  }

  delete(c: XmppConnection): void {
    this.conns.delete(c);
    if (this.conns.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
})();

/**
 * One client-to-server XMPP stream [RFC6120]: header checks, STARTTLS, SASL,
 * resource binding, then stanzas to the core. It is the Session the core
 * delivers to, and its parser's listener. Steps in order: open → (starttls →
 * open) → auth → open → bind.
 */
export class XmppConnection implements Session, StreamParserEvents {
  readonly id = randomBytes(8).toString('hex');
  readonly protocol = 'xmpp' as const;
  address: Address;
  priority = 0;
  available = false;
  presence?: Envelope;
  interested = false;
  directed?: Set<string>;
  readonly transportRef: Transport;
  /** the client's IP address (`parley session list`) */
  get remoteAddress(): string {
    return this.transportRef.remoteAddress;
  }
  private readonly broker: Broker;
  private readonly opts: XmppOptions;
  private logger?: Logger;
  private parser!: StreamParser;
  private phase: Phase = 'header';
  private authenticated = false;
  private username = '';
  /** SASL in progress (created at the first SASL element, dropped after success) */
  private saslRef?: SaslNegotiation;
  private bound = false;
  /** deadlines checked by the shared sweep (0 = none) */
  private lastActivity = 0;
  private authDeadline = 0;
  private nextKeepalive = 0;
  private closing = false;
  private headerSent = false;
  private queue: Promise<void> = SETTLED;
  /**
   * `<starttls/>` was parsed and TLS is not up yet: nothing else read in
   * cleartext may be handled [RFC6120 5.4.3.3] (CVE-2011-0411 class).
   */
  private tlsRequested = false;
  /** Messages handed to the router and not yet handled (created on the first message). */
  private pipe?: OriginPipeline;
  /** steps parsed and not yet handled, and the bytes of the reads that carried them (FIFO of reads with steps left) */
  private pending = 0;
  private pendingBytes = 0;
  private readonly reads: { left: number; bytes: number }[] = [];
  /** why reading is paused (PAUSE_* bits); 0 = reading */
  private pausedBy = 0;
  /** inbound token buckets [ejabberd shapers, Prosody limits]; allowed debt is negative */
  private byteTokens: number;
  private stanzaTokens: number;
  private tokensAt = Date.now();
  /** since when the client has wanted more than its rate without a break (0 = not throttled) */
  private throttledSince = 0;
  private rateTimer?: NodeJS.Timeout;
  closeReason?: CloseReason;
  /** Modules' per-session state (created on first use; moves with a resumed session). */
  private stateRef?: SessionState;
  /** Modules' per-session stanza filters (created on first use). */
  private filtersRef?: SessionFilters;
  /**
   * Set by a module that may keep this session bound when its transport
   * goes away (stream management): returns true to keep it ('detached').
   */
  keeper?: (reason: CloseReason) => boolean;

  constructor(
    broker: Broker,
    transport: Transport,
    opts: XmppOptions,
    onClosed: (c: XmppConnection) => void,
  ) {
    Object.assign(this, sessionDefaults());
    this.broker = broker;
    this.transportRef = transport;
    this.opts = opts;
    this.address = Address.of('', broker.domain);
    this.onClosed = onClosed;
    this.byteTokens = opts.inboundBytesPerSecond * opts.inboundBurstSeconds;
    this.stanzaTokens = opts.inboundStanzasPerSecond * opts.inboundBurstSeconds;
    this.newParser();
    this.authDeadline = Date.now() + opts.authTimeoutMs;
    this.touch();
    deadlines.add(this);
    this.openedAs = transport.kind; // STARTTLS changes the kind; the gauge must go down under the label it went up
    broker.metrics.connection('xmpp', this.openedAs, 1);
  }

  private readonly onClosed: (c: XmppConnection) => void;
  private readonly openedAs: string;

  get transport(): string {
    return this.transportRef.kind;
  }

  get state(): SessionState {
    return (this.stateRef ??= new SessionState());
  }

  /** A module's state on this session, without creating the state holder (for checks on every session). */
  peek<T>(slot: Slot<T>): T | undefined {
    return this.stateRef?.get(slot);
  }

  get filters(): SessionFilters {
    return (this.filtersRef ??= new SessionFilters());
  }

  /** The account this stream authenticated as ('' before SASL success). */
  get authenticatedAs(): string {
    return this.username;
  }

  /** Bound to a resource and not gone: stanzas can be written to the client now. */
  get live(): boolean {
    return this.phase === 'bound';
  }

  /** Last bytes from the client (ms since the epoch). */
  get lastActive(): number {
    return this.lastActivity;
  }

  /** Settles once every stanza read so far has been handled (messages stored or routed). */
  async settled(): Promise<void> {
    if (this.pipe?.depth) await this.pipe.idle;
  }

  /** Bytes from the transport. */
  data(chunk: Buffer | string): void {
    if (this.phase === 'closed') return;
    this.touch();
    if (this.tlsRequested && !this.transportRef.secure) return this.injected(chunk);
    const before = this.pending;
    this.parser.write(chunk);
    const steps = this.pending - before;
    if (steps > 0) {
      this.reads.push({ left: steps, bytes: chunk.length });
      this.pendingBytes += chunk.length;
    }
    if ((this.phase as Phase) === 'closed') return; // the chunk may have ended the stream
    this.spend(chunk.length, steps);
    this.checkBacklog();
  }

  /**
   * Token buckets for bytes and stanzas per second: past the rate, reading
   * pauses until the tokens are back (soft limit); a client that keeps wanting
   * more for inboundThrottleLimitMs is ended with policy-violation (hard limit)
   * [RFC6120 4.9.3.13].
   */
  private spend(bytes: number, stanzas: number): void {
    const o = this.opts;
    if (o.inboundBytesPerSecond <= 0 && o.inboundStanzasPerSecond <= 0) return;
    // Nothing read (BOSH marks each request as traffic with an empty chunk): it must not count as
    // reading below the rate, or a BOSH stream's throttling would start over at every request.
    if (bytes === 0 && stanzas === 0) return;
    const now = Date.now();
    const dt = (now - this.tokensAt) / 1000;
    this.tokensAt = now;
    if (o.inboundBytesPerSecond > 0)
      this.byteTokens =
        Math.min(
          o.inboundBytesPerSecond * o.inboundBurstSeconds,
          this.byteTokens + dt * o.inboundBytesPerSecond,
        ) - bytes;
    if (o.inboundStanzasPerSecond > 0)
      this.stanzaTokens =
        Math.min(
          o.inboundStanzasPerSecond * o.inboundBurstSeconds,
          this.stanzaTokens + dt * o.inboundStanzasPerSecond,
        ) - stanzas;
    const wait = Math.max(
      debt(this.byteTokens, o.inboundBytesPerSecond),
      debt(this.stanzaTokens, o.inboundStanzasPerSecond),
    );
    if (wait <= 0) {
      // Reading with tokens to spare: whatever throttling there was is over.
      if (!this.rateTimer) this.throttledSince = 0;
      return;
    }
    this.throttledSince ||= now;
    if (o.inboundThrottleLimitMs > 0 && now - this.throttledSince > o.inboundThrottleLimitMs) {
      return this.close(
        closeReason('policy-violation', 'sending faster than allowed for too long'),
      ); // [RFC6120 4.9.3.13]
    }
    if (this.rateTimer) return;
    this.setPaused(PAUSE_RATE, true);
    this.rateTimer = setTimeout(
      () => {
        this.rateTimer = undefined;
        if (this.phase === 'closed') return;
        // A client still over its rate reads again now and is paused again at once: throttledSince stays.
        this.setPaused(PAUSE_RATE, false);
      },
      Math.ceil(wait * 1000),
    );
    this.rateTimer.unref?.();
  }

  /** Pause reading while too much is parsed and not yet handled (like the MQTT adapter's maxInflightInbound). */
  private checkBacklog(): void {
    const over =
      this.pending > this.opts.maxInboundStanzas || this.pendingBytes > this.opts.maxInboundBytes;
    if (over !== ((this.pausedBy & PAUSE_BACKLOG) !== 0)) this.setPaused(PAUSE_BACKLOG, over);
  }

  private setPaused(bit: number, on: boolean): void {
    const was = this.pausedBy;
    this.pausedBy = on ? was | bit : was & ~bit;
    if (was === 0 && this.pausedBy !== 0) this.transportRef.pause();
    else if (was !== 0 && this.pausedBy === 0) this.transportRef.resume();
  }

  /** One parsed step handled (a bound function: one per connection, not one per step). */
  private readonly stepDone = (): void => {
    this.pending--;
    const head = this.reads[0];
    if (head && --head.left <= 0) {
      this.reads.shift();
      this.pendingBytes -= head.bytes;
    }
    if (this.pausedBy & PAUSE_BACKLOG) this.checkBacklog();
  };

  /**
   * Cleartext after `<starttls/>`, before the handshake: a client must wait for
   * `<proceed/>` and the handshake [RFC6120 5.4.2.3], so only an attacker
   * injecting commands into the coming TLS session sends anything here
   * (CVE-2011-0411). Whitespace is dropped; anything else ends the stream, as
   * Postfix does since that CVE, rather than being silently discarded, so the
   * injection is visible in the logs and to the client.
   */
  private injected(chunk: Buffer | string): void {
    if (
      typeof chunk === 'string'
        ? /^[ \t\r\n]*$/.test(chunk)
        : chunk.every((b) => b === 0x20 || b === 0x09 || b === 0x0d || b === 0x0a)
    )
      return;
    this.log.info('cleartext after <starttls/> before the TLS handshake');
    this.close(closeReason('policy-violation', 'data after <starttls/> before the TLS handshake')); // [RFC6120 5.4.3.3]
  }

  /** The transport went away (socket closed or errored). */
  transportClosed(kind: CloseKind = 'client-closed'): void {
    // Detached: the transport's first report (an error) already handed the session to its keeper;
    // the close that follows an error must not end it (only the keeper's endDetached does) [XEP-0198 5].
    if (this.phase === 'closed' || this.phase === 'detached') return;
    this.finish(closeReason(kind));
  }

  // ---- Session ----

  deliver(env: Envelope): void {
    if (this.phase === 'detached') {
      this.filtersRef?.out.run({ xml: envelopeXml(env, env.to), env }); // kept for resumption
      return;
    }
    if (this.phase !== 'bound') {
      // Closed while the message was on its way (its record being written): not silently lost.
      if (this.phase === 'closed' && isStorableMessage(env) && !env.delay) {
        this.broker.router
          .stranded(env, this)
          .catch((err) => this.log.error({ err }, 'stranded message'));
      }
      return;
    }
    if (this.transportRef.bufferedAmount() > this.opts.maxOutboundBuffer) {
      // A client that does not read its socket must not hold the node's memory hostage.
      this.close(closeReason('policy-violation', 'slow consumer: outbound buffer full'));
      return;
    }
    this.sendStanza(envelopeXml(env, env.to), env);
  }

  /**
   * A message from the offline queue, paced by the transport: written only
   * when it fits in half of maxOutboundBuffer (so our own flush never trips
   * the slow-consumer cut of `deliver`), and confirmed only once the
   * transport's buffer has drained, i.e. it has left the node. False when the
   * stream ended first: the queue keeps it [XEP-0160].
   */
  async deliverQueued(env: Envelope): Promise<boolean> {
    const xml = envelopeXml(env, env.to);
    const room = this.opts.maxOutboundBuffer / 2;
    const open = (): boolean => this.phase === 'bound' && !this.closing;
    while (
      open() &&
      this.transportRef.bufferedAmount() > 0 &&
      this.transportRef.bufferedAmount() + xml.length > room
    )
      await sleep(DRAIN_POLL_MS);
    if (!open()) return false;
    this.sendStanza(xml, env); // through the session's filters: stream management counts and keeps it
    // Out of the node (usually at once, into the kernel): delivered, even if the stream ends right after.
    while (open() && this.transportRef.bufferedAmount() > 0) await sleep(DRAIN_POLL_MS);
    return this.transportRef.bufferedAmount() === 0;
  }

  rosterPush(item: RosterItem, ver: string): void {
    if (this.phase !== 'bound') return;
    // [RFC6121 2.1.6] roster push
    this.sendStanza(
      `<iq xmlns='${NS_CLIENT}' type='set' id='push-${randomBytes(6).toString('hex')}' to='${escapeXML(this.address.toString())}'>` +
        `<query xmlns='${NS_ROSTER}' ver='${ver}'>${rosterItemXml(item)}</query></iq>`,
    );
  }

  /** End the stream, with a stream error when the reason has one [RFC6120 4.9]. */
  close(reason: CloseReason): void {
    if (this.phase === 'detached') return this.finish(reason); // no transport left to write to
    if (this.phase === 'closed' || this.closing) return;
    this.closing = true;
    if (!this.headerSent) this.sendHeader();
    const err = streamErrorXml(reason.kind, reason.text, reason.to);
    this.transportRef.closeStream(err, reason.kind === 'see-other-uri' ? reason.to : undefined);
    this.transportRef.end(reason.kind === 'see-other-host');
    this.finish(reason);
  }

  // ---- internals ----

  /** Write raw XML (stream-level elements; stanzas go through {@link sendStanza}). */
  send(xml: string): void {
    if (this.phase === 'closed' || this.phase === 'detached') return;
    this.broker.metrics.traffic('xmpp', 'out');
    this.transportRef.write(xml);
  }

  /** Write a stanza through the session's outbound filters (Prosody's `stanzas/out`). */
  sendStanza(xml: string, env?: Envelope): void {
    const filters = this.filtersRef?.out;
    if (!filters?.size) return this.send(xml);
    const out = filters.run({ xml, env });
    if (out) this.send(out.xml);
  }

  /** Write what an outbound filter held back and lets go, through the filters after it. */
  release(after: (o: Outbound) => Outbound | null, out: Outbound): void {
    const o = this.filtersRef ? this.filtersRef.out.runAfter(after, out) : out;
    if (o) this.send(o.xml);
  }

  private finish(reason: CloseReason): void {
    if (this.phase === 'closed') return;
    clearTimeout(this.rateTimer);
    this.rateTimer = undefined;
    if (this.phase === 'bound' && this.keeper?.(reason)) {
      // Kept bound without a transport (stream management [XEP-0198 5]): the
      // keeper ends it later with endDetached() or hands it to a new stream.
      this.phase = 'detached';
      this.closeReason = reason;
      deadlines.delete(this);
      this.broker.metrics.connection('xmpp', this.openedAs, -1);
      this.broker.metrics.closed('xmpp', reason.kind);
      this.log.debug({ reason: reason.kind }, 'xmpp stream detached; session kept');
      this.onClosed(this);
      return;
    }
    const wasDetached = this.phase === 'detached';
    this.phase = 'closed';
    if (wasDetached) {
      this.closeReason = reason;
      if (this.bound)
        this.broker.sessions
          .unbind(this, reason)
          .catch((err) => this.log.error({ err }, 'unbind failed'));
      return;
    }
    this.closeReason = reason;
    deadlines.delete(this);
    this.broker.metrics.connection('xmpp', this.openedAs, -1);
    this.broker.metrics.closed('xmpp', reason.kind);
    this.log.debug({ reason: reason.kind, text: reason.text }, 'xmpp stream closed');
    if (this.bound)
      this.broker.sessions
        .unbind(this, reason)
        .catch((err) => this.log.error({ err }, 'unbind failed'));
    this.onClosed(this);
  }

  /** End a detached session for good (its keeper's timeout): unbind, unavailable to contacts. */
  endDetached(reason: CloseReason): void {
    if (this.phase === 'detached') this.finish(reason);
  }

  /**
   * This freshly authenticated stream takes over `old`, a session of the same
   * account (stream management resumption [XEP-0198 5]): its address,
   * presence, roster interest and module state move here and the session
   * manager swaps one for the other, so contacts see nothing happen. `old`
   * (detached, or still bound on a dying transport) ends without unbinding.
   */
  async takeOver(old: XmppConnection): Promise<void> {
    this.address = old.address;
    this.priority = old.priority;
    this.available = old.available;
    this.presence = old.presence;
    this.interested = old.interested;
    this.directed = old.directed;
    this.stateRef = old.stateRef;
    this.filtersRef = old.filtersRef; // filters keep their state in slots, not in the stream
    this.phase = 'bound';
    this.bound = true;
    this.authDeadline = 0;
    await this.broker.sessions.replace(old, this);
    old.retire();
    if (this.opts.keepaliveIntervalMs > 0)
      this.nextKeepalive = Date.now() + this.opts.keepaliveIntervalMs;
  }

  /**
   * This freshly authenticated stream goes on with a session another cluster
   * node handed over (stream management resumption there [XEP-0198 5]): its
   * address and presence state, bound here without a presence broadcast
   * (contacts never saw it go). A stale local session of that full address is
   * replaced.
   */
  async adopt(s: {
    address: Address;
    priority: number;
    available: boolean;
    presence?: Envelope;
    interested: boolean;
    directed?: Set<string>;
  }): Promise<void> {
    this.address = s.address;
    this.priority = s.priority;
    this.available = s.available;
    this.presence = s.presence;
    this.interested = s.interested;
    this.directed = s.directed;
    this.phase = 'bound';
    this.bound = true;
    this.authDeadline = 0;
    await this.broker.sessions.bind(this);
    if (this.opts.keepaliveIntervalMs > 0)
      this.nextKeepalive = Date.now() + this.opts.keepaliveIntervalMs;
  }

  /**
   * The session moved to another node (resumed there [XEP-0198 5]): close the
   * transport if it is still attached, then unbind as 'session-moved' (no
   * unavailable presence). Resolves once the cluster registry forgot it here.
   */
  async handOff(): Promise<void> {
    const reason = closeReason('session-moved', 'resumed on another node');
    this.keeper = undefined;
    const wasBound = this.bound;
    this.bound = false; // finish() must not unbind: done here, awaited
    if (this.phase === 'detached') this.finish(reason);
    else this.close(reason);
    if (wasBound) await this.broker.sessions.unbind(this, reason);
  }

  /** Taken over by another stream: close the transport (if any) without unbinding. */
  private retire(): void {
    const wasLive = this.phase !== 'detached' && this.phase !== 'closed';
    this.bound = false;
    this.keeper = undefined;
    if (wasLive) this.close(closeReason('session-taken-over', 'resumed on another stream'));
    this.phase = 'closed';
  }

  private touch(): void {
    this.lastActivity = Date.now();
  }

  /** Created on first use: most idle sessions never log, and a child logger per session costs memory. */
  private get log(): Logger {
    return (this.logger ??= this.broker.log.child({
      conn: this.id,
      ip: this.transportRef.remoteAddress,
    }));
  }

  /** Called by the shared sweep: authentication and idle timeouts, whitespace keepalive. */
  checkDeadlines(now: number): void {
    if (this.phase === 'closed') return;
    if (this.authDeadline && now > this.authDeadline)
      return this.close(closeReason('auth-timeout', 'not authenticated in time'));
    if (this.opts.idleTimeoutMs > 0 && now - this.lastActivity > this.opts.idleTimeoutMs)
      return this.close(closeReason('idle-timeout', 'no traffic'));
    if (now - this.lastActivity >= RELEASE_PARSER_MS) this.parser.release();
    if (this.nextKeepalive && now >= this.nextKeepalive) {
      this.nextKeepalive = now + this.opts.keepaliveIntervalMs;
      this.transportRef.keepalive(); // whitespace keepalive [RFC6120 4.6.1]
    }
  }

  private newParser(): void {
    this.parser = new StreamParser(this, {
      maxStanzaSize: this.opts.maxStanzaSize,
      maxDepth: this.opts.maxDepth,
    });
  }

  // ---- StreamParserEvents ----

  streamOpened(name: string, uri: string, attrs: Record<string, string>): void {
    if (this.tlsRequested) return this.injected('<stream>');
    this.enqueue(() => this.onOpen(name, uri, attrs));
  }

  stanzaParsed(el: Element): void {
    // [RFC6120 5.4.3.3] anything after <starttls/> in the same cleartext read is an injection
    if (this.tlsRequested) return this.injected('<stanza>');
    if (
      el.name === 'starttls' &&
      el.attrs.xmlns === NS_TLS &&
      !this.transportRef.secure &&
      this.transportRef.canStartTls
    )
      this.tlsRequested = true;
    this.enqueue(() => this.onElement(el));
  }

  streamClosed(): void {
    if (this.tlsRequested) return this.injected('</stream>');
    this.enqueue(async () => this.onStreamEnd());
  }

  parseFailed(condition: ParseFailure, text: string): void {
    this.log.info({ condition, text: snippet(text) }, 'bad xml from client');
    this.close(closeReason(condition, text));
  }

  /**
   * Handle stanzas strictly in order, even when a step is asynchronous. A step
   * parsed by a parser that a stream restart (STARTTLS, SASL success) has since
   * replaced is dropped: nothing read before a restart belongs to the new
   * stream [RFC6120 5.4.3.3, 6.4.6].
   */
  private enqueue(fn: () => Promise<void> | void): void {
    const parser = this.parser;
    this.pending++;
    // The step is an unnamed argument, not a named const: the loader's keepNames would wrap a named
    // closure in a defineProperty call for every stanza (1.8 % of the chat's main thread).
    this.queue = this.queue
      .then(() => (parser === this.parser && this.phase !== 'closed' ? fn() : undefined))
      .then(this.stepDone, (err: unknown) => {
        this.log.error({ err }, 'stanza handling failed');
        this.close(closeReason('internal-error'));
        this.stepDone();
      });
  }

  private sendHeader(attrs?: Record<string, string>): void {
    this.headerSent = true;
    const to = attrs?.from && Address.tryParse(attrs.from) ? attrs.from : undefined;
    // [RFC6120 4.7] the response header: our domain, a fresh id, version 1.0
    this.transportRef.openStream({
      id: randomBytes(8).toString('hex'),
      from: this.broker.domain,
      to,
    });
  }

  private async onOpen(name: string, uri: string, attrs: Record<string, string>): Promise<void> {
    this.sendHeader(attrs);
    // [RFC6120 4.9.3.10] wrong root namespace; [4.9.3.2] the stream prefix must be bound to the streams namespace
    if (uri !== NS_STREAM || !/^(?:[^:]+:)?stream$/.test(name))
      return this.close(
        closeReason('invalid-namespace', 'expected a stream in http://etherx.jabber.org/streams'),
      );
    if (attrs.xmlns !== NS_CLIENT)
      return this.close(
        closeReason('invalid-namespace', 'content namespace must be jabber:client'),
      ); // [RFC6120 4.8.2]
    const version = attrs.version;
    const major = version ? Number(version.split('.')[0]) : 0;
    if (!version || !/^\d+\.\d+$/.test(version) || major !== 1)
      return this.close(closeReason('unsupported-version', 'version 1.0 required')); // [RFC6120 4.9.3.25]
    const to =
      attrs.to !== undefined ? Address.tryParse(attrs.to) : Address.of('', this.broker.domain);
    if (!to || !to.isDomain || to.domain !== this.broker.domain)
      return this.close(closeReason('host-unknown', 'this server does not serve that domain')); // [RFC6120 4.9.3.6]
    if (this.phase === 'header') this.phase = this.mustStartTls() ? 'tls' : 'auth';
    await this.sendFeatures();
  }

  private mustStartTls(): boolean {
    return this.opts.requireTls && !this.transportRef.secure && this.transportRef.canStartTls;
  }

  private async sendFeatures(): Promise<void> {
    let f = '<stream:features>';
    if (!this.authenticated) {
      const secure = this.transportRef.secure;
      if (!secure && this.transportRef.canStartTls) {
        f += `<starttls xmlns='${NS_TLS}'>${this.opts.requireTls ? '<required/>' : ''}</starttls>`;
      }
      if (!this.mustStartTls()) {
        // [RFC6120 5.3.1] with TLS mandatory, nothing but STARTTLS is offered before it
        f += `<mechanisms xmlns='${NS_SASL}'>${offeredMechanisms(secure)
          .map((m) => `<mechanism>${m}</mechanism>`)
          .join('')}</mechanisms>`;
        // Modules' features before authentication (XEP-0077 <register/>): features.ts
        const hooks = xmppHooks(this.broker);
        if (hooks.has('stream:features:unauthenticated'))
          f += (await hooks.fold('stream:features:unauthenticated', [], this)).join('');
        if (this.phase === 'closed') return;
      }
    } else {
      f += `<bind xmlns='${NS_BIND}'/>`; // [RFC6120 7]
      // Modules add theirs (rosterver, legacy session, stream management, CSI): features.ts
      const hooks = xmppHooks(this.broker);
      if (hooks.has('stream:features'))
        f += (await hooks.fold('stream:features', [], this)).join('');
      if (this.phase === 'closed') return;
    }
    this.send(`${f}</stream:features>`);
  }

  private async onStreamEnd(): Promise<void> {
    if (this.pipe?.depth) await this.pipe.idle;
    this.keeper = undefined; // a graceful close ends the session: nothing to resume [XEP-0198 5]
    // [RFC6120 4.4] answer the closing tag with ours, then close
    this.close(closeReason('client-closed'));
  }

  private async onElement(el: Element): Promise<void> {
    if (this.phase === 'closed') return;
    this.broker.metrics.traffic('xmpp', 'in');
    const ns = el.attrs.xmlns;
    if (this.phase === 'tls') {
      if (el.name === 'starttls' && ns === NS_TLS) return this.startTls();
      if (el.name === 'auth' && ns === NS_SASL)
        return this.saslOutcome(
          this.saslNegotiation.failure('encryption-required', 'STARTTLS first'),
        ); // [RFC6120 6.5.4]
      return this.close(closeReason('not-authorized', 'STARTTLS required'));
    }
    if (this.phase === 'auth') {
      if (el.name === 'starttls' && ns === NS_TLS) {
        if (this.transportRef.secure || !this.transportRef.canStartTls) {
          this.send(`<failure xmlns='${NS_TLS}'/>`); // [RFC6120 5.4.2.2]
          return this.close(closeReason('protocol-error', 'TLS not available'));
        }
        return this.startTls();
      }
      if (ns === NS_SASL) return this.sasl(el);
      // A module's pre-authentication IQ (XEP-0077 registration), else [RFC6120 4.9.3.12]
      if (el.name === 'iq' && ns === NS_CLIENT && (await handlePreAuthIq(this.broker, this, el)))
        return;
      return this.close(closeReason('not-authorized', 'authenticate first')); // [RFC6120 4.9.3.12]
    }
    if (this.phase === 'bind') {
      if (el.name === 'iq' && ns === NS_CLIENT) return this.bindIq(el);
      const nonza = nonzaRegistry(this.broker).lookup('bind', el); // e.g. resumption [XEP-0198 5]
      if (nonza) return nonza(this, el);
      return this.close(closeReason('not-authorized', 'bind a resource first'));
    }
    if (this.phase === 'bound') return this.stanza(el);
  }

  private async startTls(): Promise<void> {
    if (this.closing || this.phase === 'closed') return;
    this.send(`<proceed xmlns='${NS_TLS}'/>`); // [RFC6120 5.4.2.3]
    // [RFC6120 5.4.3.3] nothing of the cleartext stream survives: a fresh parser before the handshake, so no byte read before it can reach the TLS stream
    this.newParser();
    try {
      await this.transportRef.startTls();
    } catch (err) {
      this.log.info({ err }, 'TLS negotiation failed');
      return this.finish(closeReason('socket-error', 'TLS negotiation failed'));
    }
    // [RFC6120 5.4.3.3] a fresh stream over TLS
    this.tlsRequested = false;
    this.phase = 'auth';
    this.headerSent = false;
  }

  private get saslNegotiation(): SaslNegotiation {
    return (this.saslRef ??= new SaslNegotiation(this.broker, this.opts.maxAuthAttempts));
  }

  private async sasl(el: Element): Promise<void> {
    const outcome = await this.saslNegotiation.handle(el, this.transportRef);
    if (this.phase === 'closed') return;
    this.saslOutcome(outcome);
  }

  /** Send what SASL answered and move on: restart the stream after success [RFC6120 6.4.6], close after too many failures [6.4.5]. */
  private saslOutcome(outcome: SaslOutcome): void {
    if (this.phase === 'closed') return;
    this.send(outcome.xml);
    if (outcome.kind === 'failure' && outcome.tooMany)
      this.close(closeReason('policy-violation', 'too many failed authentication attempts'));
    if (outcome.kind !== 'success') return;
    this.username = outcome.username;
    this.authenticated = true;
    this.saslRef = undefined;
    this.phase = 'bind';
    this.headerSent = false;
    this.newParser();
  }

  private async bindIq(el: Element): Promise<void> {
    const r = reserveResource(this.broker, el, this.username);
    if ('error' in r)
      return this.send(
        errorReply(
          el,
          r.error,
          this.broker.domain,
          Address.of(this.username, this.broker.domain).toString(),
        ),
      );
    this.address = r.full;
    this.phase = 'bound';
    this.bound = true;
    this.authDeadline = 0;
    await this.broker.sessions.bind(this);
    this.send(bindResultXml(el.attrs.id!, r.full));
    if (this.opts.keepaliveIntervalMs > 0)
      this.nextKeepalive = Date.now() + this.opts.keepaliveIntervalMs;
  }

  private async stanza(el: Element): Promise<void> {
    const ns = el.attrs.xmlns;
    if (ns !== NS_CLIENT || (el.name !== 'message' && el.name !== 'presence' && el.name !== 'iq')) {
      // a module's stream-level element (XEP-0198, XEP-0352); XEP-0198's acks run beside the messages in flight
      const nonza = ns !== NS_CLIENT ? nonzaRegistry(this.broker).entry('bound', el) : undefined;
      if (this.pipe?.depth && !nonza?.beside) await this.pipe.idle;
      if (nonza) return nonza.handler(this, el);
      return this.close(closeReason('unsupported-stanza-type', `<${el.name}/> is not a stanza`)); // [RFC6120 4.9.3.24]
    }
    // Anything but the next message waits for the messages in flight [RFC6120 10.1].
    if (this.pipe?.depth && el.name !== 'message') await this.pipe.idle;
    if (this.filtersRef?.in.size && this.filtersRef.in.run(el) === null) return; // Prosody's stanzas/in
    const from = el.attrs.from;
    if (from !== undefined) {
      // [RFC6120 8.1.2.1] a from other than the session's own is spoofing: invalid-from
      const a = Address.tryParse(from);
      if (!a || !(a.equals(this.address) || a.equals(this.address.bare())))
        return this.close(closeReason('invalid-from', 'from does not match the session'));
    }
    let env: Envelope;
    try {
      env = toEnvelope(
        el,
        this.address,
        el.name === 'presence' && el.attrs.to === undefined ? this.address : this.address.bare(),
      );
    } catch (err) {
      if (err instanceof BrokerError) {
        if (this.pipe?.depth) await this.pipe.idle;
        return this.replyError(el, err);
      }
      throw err;
    }
    if (el.name === 'message') {
      if (el.attrs.to === undefined) env.to = this.address.bare(); // [RFC6120 10.3.1] no to: the account
      await this.routeMessage(el, env);
      return;
    }
    try {
      if (el.name === 'iq') return await handleIq(this.broker, this, el, env);
      return await this.broker.presence.fromSession(this, env);
    } catch (err) {
      if (err instanceof BrokerError) return this.replyError(el, err);
      throw err;
    }
  }

  /**
   * A message to the router, pipelined (OriginPipeline, Router.route): the
   * next stanza is taken as soon as this one's archive append has been asked
   * for, so the records of a burst go to the store together, while delivery
   * and errors still follow the order sent [RFC6120 10.1].
   */
  private routeMessage(el: Element, env: Envelope): Promise<void> {
    const { next } = (this.pipe ??= new OriginPipeline()).pipelined((ord) =>
      this.broker.router.route(env, this, ord).catch((err: unknown) => {
        if (err instanceof BrokerError) return this.replyError(el, err);
        this.log.error({ err }, 'stanza handling failed');
        this.close(closeReason('internal-error'));
      }),
    );
    return next;
  }

  /** Answer a stanza with an error, never an error with an error [RFC6120 8.3.1]. */
  replyError(el: Element, err: BrokerError): void {
    if (el.attrs.type === 'error') return;
    if (el.name === 'iq' && el.attrs.type === 'result') return;
    this.sendStanza(errorReply(el, err, this.broker.domain, this.address.toString()));
  }
}
