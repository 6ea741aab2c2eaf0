import { closeReason, type CloseKind, type CloseReason, type Logger } from '../../broker/index.ts';
import { BoshTransport, type BoshSink } from './bosh-transport.ts';
import {
  bodyXml,
  LEGACY_STATUS,
  streamHeader,
  terminateXml,
  type BoshRequest,
  type Reply,
  type TerminalCondition,
} from './bosh-wire.ts';
import { NS_SASL } from './ns.ts';

/** Responses kept for retransmission when the client acknowledges [XEP-0124 §14.3]; without acks, 'requests' of them. */
const MAX_UNACKED = 32;

/** What a session needs of its XMPP connection (XmppConnection; a fake in unit tests). */
export interface BoshStream {
  data(text: string): void;
  close(reason: CloseReason): void;
}

/** Negotiated at session creation [XEP-0124 §7]; times in seconds. */
export interface BoshSessionParams {
  sid: string;
  /** rid of the session creation request */
  rid: number;
  wait: number;
  hold: number;
  requests: number;
  polling: number;
  inactivity: number;
  ver: string;
  /** the client sent no 'ver': binding errors go out as HTTP codes [XEP-0124 §17.1] */
  legacy: boolean;
  contentType: string;
  /** the client said ack='1' [XEP-0124 §9.2] */
  clientAcks: boolean;
  maxRequestsPerSecond: number;
  domain: string;
  to: string;
  lang?: string;
  from?: string;
  xmppVersion: string;
  ip: string;
  secure: boolean;
  log: Logger;
  /** the XMPP side is over (release the per-IP slot) */
  onClosed(s: BoshSession): void;
  /** the sid must no longer be found */
  onForget(s: BoshSession): void;
}

/** A request processed and waiting for its response. */
interface Held {
  rid: number;
  reply: Reply;
  creation?: boolean;
  /** answer at the next flush even with nothing to say (polling sessions, reports) */
  now?: boolean;
  report?: { report: number; time: number };
  timer?: NodeJS.Timeout;
}

/** A request received ahead of a missing lower rid [XEP-0124 §14.2]. */
interface Early {
  body: BoshRequest;
  reply: Reply;
  timer: NodeJS.Timeout;
}

/**
 * One BOSH session [XEP-0124]: orders requests by rid, holds up to 'hold' of
 * them for output, answers after 'wait', resends buffered responses for
 * repeated rids, and ends on inactivity, a terminate request, a binding error
 * or the end of its XMPP stream.
 */
export class BoshSession implements BoshSink {
  readonly sid: string;
  readonly transport: BoshTransport;
  authid = '';
  queuedChars = 0;
  private readonly p: BoshSessionParams;
  private conn?: BoshStream;
  /** highest rid processed; every lower one was processed too */
  private lastRid: number;
  private lastAnswered = 0;
  private lastAnswerEmpty = false;
  private readonly held: Held[] = [];
  private readonly early = new Map<number, Early>();
  private readonly sent = new Map<number, { xml: string; at: number }>();
  private queue: string[] = [];
  private restartExpected = false;
  private terminating = false;
  private streamError?: string;
  private over = false;
  /** the terminal body for the next request, when nothing was held as the stream ended */
  private final?: { xml: string; status: number };
  private flushQueued = false;
  private inactivityTimer?: NodeJS.Timeout;
  private readonly arrivals: number[] = [];
  private lastEmptyPollAt?: number;
  /** the connection is over its inbound bounds: requests wait (unanswered, in `early`) instead of being forwarded */
  private inputPaused = false;

  constructor(p: BoshSessionParams, creation: Reply) {
    this.p = p;
    this.sid = p.sid;
    this.lastRid = p.rid;
    this.transport = new BoshTransport(this, p.ip, p.secure);
    // The creation response waits for the stream features [XEP-0206 §4].
    this.hold({ rid: p.rid, reply: creation, creation: true, now: p.hold === 0 });
  }

  /** Connect the XMPP stream and open it with a synthetic header [XEP-0206 §3]. */
  attach(conn: BoshStream): void {
    this.conn = conn;
    if (!this.over)
      conn.data(
        streamHeader({
          to: this.p.to,
          version: this.p.xmppVersion,
          lang: this.p.lang,
          from: this.p.from,
        }),
      );
  }

  /** A request naming this session's sid. */
  request(body: BoshRequest, reply: Reply): void {
    if (this.final) {
      reply(this.final.xml, this.final.status, this.p.contentType); // the end of the stream, told once
      this.forget();
      return;
    }
    if (this.over)
      return reply(
        terminateXml('item-not-found'),
        this.status('item-not-found'),
        this.p.contentType,
      );
    clearTimeout(this.inactivityTimer);
    const now = Date.now();
    this.arrivals.push(now);
    while (this.arrivals[0] <= now - 1000) this.arrivals.shift();
    // [XEP-0124 §11, §14.3] a limit on the frequency of requests, repeats included
    if (this.arrivals.length > this.p.maxRequestsPerSecond)
      return this.abort('policy-violation', 'too many requests per second', reply);
    const rid = body.rid;
    if (rid <= this.lastRid) this.repeat(rid, reply);
    else this.fresh(body, reply);
    if (!this.over && this.held.length === 0 && this.early.size === 0) this.idle();
  }

  private fresh(body: BoshRequest, reply: Reply): void {
    const rid = body.rid;
    const extra = body.terminate ? 1 : 0; // [XEP-0124 §11] one more request is allowed to terminate
    // [XEP-0124 §14.2] a rid beyond the window ends the session
    if (rid > this.lastRid + this.p.requests + extra)
      return this.abort('item-not-found', `rid ${rid} beyond the window`, reply);
    const dup = this.early.get(rid);
    if (dup) {
      // [XEP-0124 §14.3] received but not yet answered: answer the old copy with a recoverable error
      dup.reply(bodyXml({ type: 'error' }), 200, this.p.contentType);
      dup.reply = reply;
      return;
    }
    // [XEP-0124 §11] more simultaneous requests than 'requests'
    if (this.held.length + this.early.size + 1 > this.p.requests + extra)
      return this.abort('policy-violation', 'too many simultaneous requests', reply);
    const timer = setTimeout(() => this.gapTimeout(), this.p.wait * 1000);
    timer.unref?.();
    this.early.set(rid, { body, reply, timer });
    this.drainEarly();
  }

  /**
   * [XEP-0124 §14.2] forward payloads and answer in rid order, whatever the
   * arrival order. While the connection is paused (too much unhandled input,
   * or over its rate) requests stay here unanswered: a client has at most
   * 'requests' of them open [XEP-0124 §11], so it is held back, and after
   * 'wait' seconds gets the recoverable error that makes it resend [XEP-0124 §17.3].
   */
  private drainEarly(): void {
    for (
      let next = this.early.get(this.lastRid + 1);
      next && !this.over && !this.inputPaused;
      next = this.early.get(this.lastRid + 1)
    ) {
      clearTimeout(next.timer);
      this.early.delete(next.body.rid);
      this.process(next.body, next.reply);
    }
  }

  pauseInput(): void {
    this.inputPaused = true;
  }

  resumeInput(): void {
    if (!this.inputPaused) return;
    this.inputPaused = false;
    this.drainEarly();
  }

  /** A rid already seen [XEP-0124 §14.3]. */
  private repeat(rid: number, reply: Reply): void {
    const h = this.held.find((x) => x.rid === rid);
    if (h) {
      // still held: the old copy gets a recoverable error, the new one the future answer
      h.reply(bodyXml({ type: 'error' }), 200, this.p.contentType);
      h.reply = reply;
      return;
    }
    const s = this.sent.get(rid);
    if (s) return reply(s.xml, 200, this.p.contentType); // the buffered copy of the original answer
    this.abort('item-not-found', `no buffered response for rid ${rid}`, reply);
  }

  /** A missing rid never came: the client resends what got this recoverable error [XEP-0124 §17.3]. */
  private gapTimeout(): void {
    for (const e of this.early.values()) {
      clearTimeout(e.timer);
      e.reply(bodyXml({ type: 'error' }), 200, this.p.contentType);
    }
    this.early.clear();
    if (!this.over && this.held.length === 0) this.idle();
  }

  /** The next request in rid order. */
  private process(body: BoshRequest, reply: Reply): void {
    this.lastRid = body.rid;
    const req: Held = { rid: body.rid, reply };
    this.acknowledged(body, req);
    if (this.pollingTooOften(body))
      return this.abort('policy-violation', 'polling too frequently', reply);
    const conn = this.conn!;
    conn.data(''); // a request is traffic: an idle-timeout must not end a client that polls
    this.hold(req);
    if (body.failure) return conn.close(closeReason(body.failure.condition, body.failure.text)); // as on TCP
    if (body.terminate) {
      // [XEP-0124 §13] forward the payloads, then end the stream; the answer goes out when it has ended
      this.terminating = true;
      if (this.restartExpected) return conn.close(closeReason('client-closed'));
      return conn.data(`${body.payloads.join('')}</stream:stream>`);
    }
    if (body.restart) {
      // [XEP-0206 §5] only after SASL success; payloads of a restart request are ignored
      if (!this.restartExpected) return this.abort('bad-request', 'no stream restart expected');
      this.restartExpected = false;
      const a = body.attrs;
      return conn.data(
        streamHeader({
          to: a.to ?? this.p.to,
          version: this.p.xmppVersion,
          lang: a['xml:lang'] ?? this.p.lang,
          from: a.from,
        }),
      );
    }
    if (body.payloads.length) conn.data(body.payloads.join(''));
  }

  /** The client's response acknowledgements [XEP-0124 §9.2]. */
  private acknowledged(body: BoshRequest, req: Held): void {
    // With acks on, a request without one acknowledges every earlier response.
    const ack = body.ack ?? (this.p.clientAcks ? body.rid - 1 : undefined);
    if (ack === undefined || ack >= body.rid) return;
    for (const r of this.sent.keys()) if (r <= ack) this.sent.delete(r);
    if (body.ack !== undefined && ack < this.lastAnswered) {
      // a response went missing: report it at once so the client can ask again
      const s = this.sent.get(ack + 1);
      if (s) req.report = { report: ack + 1, time: Date.now() - s.at };
    }
  }

  /** [XEP-0124 §12] two empty polls closer than 'polling' seconds, the first answered empty. */
  private pollingTooOften(body: BoshRequest): boolean {
    if (this.p.hold > 0 || this.p.polling <= 0) return false;
    const empty = body.payloads.length === 0 && !body.restart && !body.terminate;
    const now = Date.now();
    const prev = this.lastEmptyPollAt;
    this.lastEmptyPollAt = empty ? now : undefined;
    return (
      empty && prev !== undefined && this.lastAnswerEmpty && now - prev < this.p.polling * 1000
    );
  }

  private hold(req: Held): void {
    this.held.push(req);
    req.timer = setTimeout(() => this.waitElapsed(req), this.p.wait * 1000); // [XEP-0124 §8] never longer than 'wait'
    req.timer.unref?.();
    if (this.p.hold === 0 || req.report) req.now = true;
    // [XEP-0124 §8] no more than 'hold' requests waiting: the oldest is answered at once (§4: roles switch)
    while (this.held.length > Math.max(this.p.hold, 1)) this.answer(this.held.shift()!);
    if (req.now || this.queue.length) this.scheduleFlush();
  }

  private waitElapsed(req: Held): void {
    // Answer in rid order: everything older than req first [XEP-0124 §14.2].
    while (!this.over && this.held.includes(req)) this.answer(this.held.shift()!);
  }

  /** Output from the connection. */
  output(data: string): void {
    if (this.over) return;
    // [XEP-0206 §5] after <success/> the client must ask for a restart; XmppConnection writes it exactly so
    if (data.startsWith(`<success xmlns='${NS_SASL}'`)) this.restartExpected = true;
    this.queue.push(data);
    this.queuedChars += data.length;
    this.scheduleFlush();
  }

  /** Writes of one tick go out in one response. */
  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      if (this.over || this.terminating) return;
      while (this.held.length && (this.queue.length || this.held[0].now))
        this.answer(this.held.shift()!);
    });
  }

  private take(): string[] {
    const q = this.queue;
    this.queue = [];
    this.queuedChars = 0;
    return q;
  }

  private answer(req: Held): void {
    clearTimeout(req.timer);
    const payloads = this.take();
    const p = this.p;
    const a: Record<string, string | number> = req.creation
      ? // [XEP-0124 §7.2, XEP-0206 §4] the session creation response
        {
          sid: p.sid,
          wait: p.wait,
          hold: p.hold,
          requests: p.requests,
          polling: p.polling,
          inactivity: p.inactivity,
          ver: p.ver,
          from: p.domain,
          authid: this.authid,
          ack: p.rid,
          'xmpp:version': '1.0',
          'xmpp:restartlogic': 'true',
        }
      : {};
    // [XEP-0124 §9.1] acknowledge requests received beyond the one answered
    if (!req.creation && this.lastRid > req.rid) a.ack = this.lastRid;
    if (req.report) Object.assign(a, req.report);
    const xml = bodyXml(a, payloads);
    this.sent.set(req.rid, { xml, at: Date.now() }); // [XEP-0124 §14.3] for a repeated rid
    const cap = p.clientAcks ? MAX_UNACKED : p.requests;
    for (const r of this.sent.keys()) if (this.sent.size > cap) this.sent.delete(r);
    this.lastAnswered = Math.max(this.lastAnswered, req.rid);
    this.lastAnswerEmpty = payloads.length === 0;
    req.reply(xml, 200, p.contentType);
    if (!this.over && this.held.length === 0 && this.early.size === 0) this.idle();
  }

  /** [XEP-0124 §10] nothing held: the client must come back within 'inactivity' seconds. */
  private idle(): void {
    clearTimeout(this.inactivityTimer);
    this.inactivityTimer = setTimeout(() => {
      if (this.final) return this.forget();
      if (this.over) return;
      // The client is gone: end without telling it; later requests find no session.
      this.p.log.debug({ sid: this.sid }, 'BOSH session inactive');
      this.end();
      this.forget();
      this.conn?.close(closeReason('idle-timeout', 'BOSH client inactive'));
    }, this.p.inactivity * 1000);
    this.inactivityTimer.unref?.();
  }

  streamClosing(errorXml?: string): void {
    if (!this.over) this.streamError = errorXml;
  }

  /** The XMPP stream ended: a stream error becomes remote-stream-error [XEP-0206 §6]. */
  streamEnded(): void {
    if (this.over) return;
    const err = this.streamError;
    if (err) this.queue.push(err);
    this.finish(err ? 'remote-stream-error' : undefined);
  }

  /** A binding error [XEP-0124 §17.2]: the session ends, every open request (and `current`) is told. */
  abort(condition: TerminalCondition, text: string, current?: Reply): void {
    if (this.over) {
      current?.(terminateXml(condition), this.status(condition), this.p.contentType);
      return this.forget();
    }
    this.p.log.info({ sid: this.sid, condition, text }, 'BOSH session terminated');
    const xml = this.finish(condition);
    current?.(xml, this.status(condition), this.p.contentType);
    if (current && this.final) this.forget(); // told now, not on the next request
    const kinds: Partial<Record<TerminalCondition, CloseKind>> = {
      'policy-violation': 'policy-violation',
      'bad-request': 'bad-format',
      'system-shutdown': 'system-shutdown',
    };
    this.conn?.close(closeReason(kinds[condition] ?? 'protocol-error', text));
  }

  /** End the session; the oldest open request gets the terminal body [XEP-0124 §13]. */
  private finish(condition?: TerminalCondition): string {
    this.end();
    const xml = terminateXml(condition, this.take());
    const status = this.status(condition);
    const open: Reply[] = this.held.map((h) => (clearTimeout(h.timer), h.reply));
    for (const e of [...this.early.values()].sort((x, y) => x.body.rid - y.body.rid)) {
      clearTimeout(e.timer);
      open.push(e.reply);
    }
    this.held.length = 0;
    this.early.clear();
    if (open.length === 0) {
      this.final = { xml, status };
      this.idle(); // kept for one inactivity period
      return xml;
    }
    // A clean end: the other open requests get an empty body; an error: all of them get it.
    open.forEach((r, i) =>
      r(
        i === 0 || condition ? xml : bodyXml({}),
        i === 0 || condition ? status : 200,
        this.p.contentType,
      ),
    );
    this.forget();
    return xml;
  }

  private end(): void {
    if (this.over) return;
    this.over = true;
    this.p.onClosed(this);
  }

  private forget(): void {
    clearTimeout(this.inactivityTimer);
    this.final = undefined;
    this.p.onForget(this);
  }

  private status(condition?: TerminalCondition): number {
    return (this.p.legacy && condition && LEGACY_STATUS[condition]) || 200;
  }
}
