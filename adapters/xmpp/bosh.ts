import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { TLSSocket } from 'node:tls';
import type { Broker, Logger } from '../../broker/index.ts';
import { BoshSession, type BoshStream } from './bosh-session.ts';
import {
  BOSH_VERSION,
  DEFAULT_CONTENT_TYPE,
  LEGACY_STATUS,
  lowerVersion,
  parseRequest,
  terminateXml,
  uintAttr,
  xboshAttr,
  type BoshRequest,
  type Reply,
  type TerminalCondition,
} from './bosh-wire.ts';
import type { Transport } from './connection.ts';
import type { XmppOptions } from './options.ts';

/** BOSH limits (config `web.bosh.*`, `web.maxBodySize`, `web.allowedOrigins`); times in seconds. */
export interface BoshOptions {
  /** the longest a request is held; a client asking more gets this [XEP-0124 §7.2 'wait'] */
  maxWait: number;
  /** the most requests held at once [XEP-0124 §7.2 'hold'] */
  maxHold: number;
  /** no request for this long ends the session [XEP-0124 §10] */
  inactivity: number;
  /** requests per second per session, repeats included; more ends it with policy-violation */
  maxRequestsPerSecond: number;
  /** the shortest interval between empty polls of a polling session (hold 0) [XEP-0124 §12]; 0 = no limit */
  polling: number;
  /** the largest request body, bytes; larger → HTTP 413 */
  maxBodySize: number;
  /** Origin values allowed (CORS); empty = any */
  allowedOrigins: string[];
  /** a request body must be read within this after its headers, ms; then HTTP 408 and policy-violation */
  bodyTimeoutMs: number;
}

export const defaultBoshOptions: BoshOptions = {
  maxWait: 60,
  maxHold: 1,
  inactivity: 60,
  maxRequestsPerSecond: 20,
  polling: 2,
  maxBodySize: 512 * 1024,
  allowedOrigins: [],
  bodyTimeoutMs: 10_000,
};

/** Per-IP accounting shared with the WebSocket transports (WebServer.acquire/release). */
export interface IpLimiter {
  acquire(ip: string): boolean;
  release(ip: string): void;
}

/** What the service needs of the XMPP listener: its options and a way to run a connection over a transport. */
export interface XmppAcceptor {
  readonly opts: XmppOptions;
  acceptTransport(transport: Transport): BoshStream;
}

/**
 * XMPP over BOSH [XEP-0206, XEP-0124] at one HTTP path: each session is an
 * XmppConnection over a BoshTransport, fed a synthetic stream header at
 * creation and on restart, then the payloads of each `<body/>` in rid order,
 * so SASL, binding and every limit of the TCP path apply unchanged.
 */
export class BoshService {
  readonly opts: BoshOptions;
  private readonly broker: Broker;
  private readonly xmpp: XmppAcceptor;
  private readonly limiter?: IpLimiter;
  private readonly log: Logger;
  private readonly sessions = new Map<string, BoshSession>();

  constructor(
    broker: Broker,
    xmpp: XmppAcceptor,
    opts: Partial<BoshOptions> = {},
    limiter?: IpLimiter,
  ) {
    this.broker = broker;
    this.xmpp = xmpp;
    this.opts = { ...defaultBoshOptions, ...opts };
    this.limiter = limiter;
    this.log = broker.log.child({ transport: 'bosh' });
  }

  /** A route handler: `web.route('/http-bind', (req, res, url) => bosh.handle(req, res, url))`. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, _url?: URL): Promise<void> {
    const origin = req.headers.origin;
    const allowed = this.opts.allowedOrigins;
    if (origin && allowed.length > 0 && !allowed.includes(origin)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('origin not allowed\n');
      return;
    }
    // CORS, so a page from another origin can use the endpoint; with a list set only its origins are echoed, never '*'
    const cors: Record<string, string> = origin
      ? { 'access-control-allow-origin': allowed.length ? origin : '*', vary: 'Origin' }
      : {};
    if (req.method === 'OPTIONS') {
      res
        .writeHead(204, {
          ...cors,
          'access-control-allow-methods': 'POST, OPTIONS',
          'access-control-allow-headers': 'Content-Type',
          'access-control-max-age': '86400',
        })
        .end();
      return;
    }
    if (req.method !== 'POST') {
      // [XEP-0124 §5] clients MUST POST
      res
        .writeHead(405, { ...cors, allow: 'POST, OPTIONS', 'content-type': 'text/plain' })
        .end('BOSH endpoint (XEP-0206): POST a <body/>\n');
      return;
    }
    // Called later by the session (from its timers): it must never throw out of them.
    const reply: Reply = (xml, status, contentType) => {
      if (res.writableEnded || res.destroyed || res.headersSent) return; // the client went away: the response stays buffered for a repeat
      try {
        res
          .writeHead(status, {
            ...cors,
            'content-type': contentType,
            'content-length': Buffer.byteLength(xml),
            'cache-control': 'no-store',
          })
          .end(xml);
      } catch (err) {
        this.log.warn({ err }, 'BOSH reply failed');
        res.destroy();
      }
    };
    const body = await readBody(req, this.opts.maxBodySize, this.opts.bodyTimeoutMs);
    if (body === undefined) return; // aborted
    if (body.cut) {
      // The body was cut: its session cannot go on with a hole in its rid sequence.
      const tooLarge = body.cut === 'too-large';
      this.log.info(
        {
          ip: req.socket.remoteAddress,
          limit: tooLarge ? this.opts.maxBodySize : this.opts.bodyTimeoutMs,
        },
        tooLarge ? 'BOSH body too large' : 'BOSH body too slow',
      );
      const cut: Reply = (xml, _status, contentType) => {
        if (res.headersSent || res.destroyed) return;
        res.once('finish', () => req.destroy());
        res
          .writeHead(tooLarge ? 413 : 408, {
            ...cors,
            'content-type': contentType,
            connection: 'close',
          })
          .end(xml);
      };
      const sid = /\bsid=(["'])([^"']+)\1/.exec(body.text)?.[2];
      const session = sid !== undefined ? this.sessions.get(sid) : undefined;
      const text = tooLarge ? 'request body too large' : 'request body not received in time';
      // [XEP-0124 §17.2 policy-violation] with 413 / 408 [RFC9110 15.5.14, 15.5.9]
      if (session) session.abort('policy-violation', text, cut);
      else cut(terminateXml('policy-violation'), tooLarge ? 413 : 408, DEFAULT_CONTENT_TYPE);
      return;
    }
    if (body.badUtf8) {
      // [XEP-0124 §17.2 bad-request] a body that is not UTF-8 [XEP-0124 §5] [RFC6120 11.6]; its session cannot go on
      this.log.info({ ip: req.socket.remoteAddress }, 'BOSH body is not UTF-8');
      const sid = /\bsid=(["'])([^"']+)\1/.exec(body.text)?.[2];
      const session = sid !== undefined ? this.sessions.get(sid) : undefined;
      if (session) return session.abort('bad-request', 'request body is not UTF-8', reply);
      return reply(terminateXml('bad-request'), 400, DEFAULT_CONTENT_TYPE);
    }
    // TLS is the socket's, never the request target's scheme: PLAIN is offered only over a real TLS socket [RFC6120 6.4.1]
    this.dispatch(
      body.text,
      req.socket.remoteAddress ?? 'unknown',
      req.socket instanceof TLSSocket,
      reply,
    );
  }

  /** End every session (the listener stops) [XEP-0124 §17.2 system-shutdown]. */
  close(): void {
    for (const s of [...this.sessions.values()]) s.abort('system-shutdown', 'server shutting down');
    this.sessions.clear();
  }

  private dispatch(text: string, ip: string, secure: boolean, reply: Reply): void {
    const parsed = parseRequest(text, {
      maxStanzaSize: this.xmpp.opts.maxStanzaSize,
      maxDepth: this.xmpp.opts.maxDepth,
    });
    if (!parsed.ok) {
      this.log.info({ ip, text: parsed.text }, 'bad BOSH request');
      const session =
        parsed.attrs?.sid !== undefined ? this.sessions.get(parsed.attrs.sid) : undefined;
      if (session) return session.abort('bad-request', parsed.text, reply);
      // [XEP-0124 §17.1, §17.2] bad-request; 400 when we cannot tell a legacy client from a new one
      const legacy = parsed.attrs?.ver === undefined;
      return reply(terminateXml('bad-request'), legacy ? 400 : 200, DEFAULT_CONTENT_TYPE);
    }
    const body = parsed.body;
    if (body.sid === undefined) return this.create(body, ip, secure, reply);
    const session = this.sessions.get(body.sid);
    // [XEP-0124 §17.2 item-not-found (1)] an unknown or ended session
    if (!session) return reply(terminateXml('item-not-found'), 200, DEFAULT_CONTENT_TYPE);
    session.request(body, reply);
  }

  /** The session creation request [XEP-0124 §7.1, XEP-0206 §3]. */
  private create(body: BoshRequest, ip: string, secure: boolean, reply: Reply): void {
    const a = body.attrs;
    const legacy = a.ver === undefined;
    const refuse = (condition: TerminalCondition, text: string): void => {
      this.log.info({ ip, condition, text }, 'BOSH session refused');
      reply(
        terminateXml(condition),
        (legacy && LEGACY_STATUS[condition]) || 200,
        DEFAULT_CONTENT_TYPE,
      );
    };
    const domain = this.broker.domain;
    const to = a.to ?? domain; // [XEP-0124 §7.1] 'to' SHOULD be there; one domain is served, so it may be left out
    if (to.toLowerCase() !== domain.toLowerCase())
      return refuse('host-unknown', `${to} is not served here`); // [XEP-0124 §17.2]
    const wantWait = a.wait === undefined ? this.opts.maxWait : uintAttr(a.wait);
    const wantHold = a.hold === undefined ? 1 : uintAttr(a.hold);
    if (wantWait === undefined || wantHold === undefined)
      return refuse('bad-request', "'wait' and 'hold' must be integers");
    if (body.terminate) return refuse('bad-request', 'terminate without a session');
    if (this.limiter && !this.limiter.acquire(ip))
      return refuse('policy-violation', 'too many connections from this address');
    const wait = Math.min(wantWait, this.opts.maxWait); // [XEP-0124 §7.2] never more than asked
    const hold = Math.min(wantHold, this.opts.maxHold); // [XEP-0124 §7.2] MUST NOT be greater than asked
    const polling = this.opts.polling;
    // [XEP-0124 §12] a polling session gets more inactivity time than its polling interval
    const inactivity = this.opts.inactivity + (hold === 0 || wait === 0 ? polling + 1 : 0);
    const content =
      a.content && /^[\x20-\x7e]{1,200}$/.test(a.content) ? a.content : DEFAULT_CONTENT_TYPE; // [XEP-0124 §7.1 'content']
    const sid = randomBytes(16).toString('hex'); // [XEP-0124 §7.2, §19] opaque and unpredictable
    let released = false;
    const session = new BoshSession(
      {
        sid,
        rid: body.rid,
        wait,
        hold,
        requests: hold + 1, // [XEP-0124 §7.2] RECOMMENDED: one more than hold
        polling,
        inactivity,
        ver: legacy ? BOSH_VERSION : lowerVersion(a.ver, BOSH_VERSION),
        legacy,
        contentType: content,
        clientAcks: a.ack === '1',
        maxRequestsPerSecond: this.opts.maxRequestsPerSecond,
        domain,
        to,
        lang: a['xml:lang'],
        from: a.from,
        // COMPAT: old clients leave out xmpp:version [XEP-0206 §3 SHOULD]; the server speaks 1.0 only
        xmppVersion: xboshAttr(a, 'version') ?? '1.0',
        ip,
        secure,
        log: this.log,
        onClosed: () => {
          if (released) return;
          released = true;
          this.limiter?.release(ip);
        },
        onForget: (s) => {
          if (this.sessions.get(s.sid) === s) this.sessions.delete(s.sid);
        },
      },
      reply,
    );
    this.sessions.set(sid, session);
    this.log.debug({ sid, ip, wait, hold }, 'BOSH session created');
    session.attach(this.xmpp.acceptTransport(session.transport));
  }
}

type Body = { text: string; cut?: 'too-large' | 'too-slow'; badUtf8?: boolean };

/**
 * The request body, at most `limit` bytes, read within `timeoutMs`;
 * undefined if the client went away. A cut body keeps its first bytes: they
 * name the session to end.
 */
function readBody(
  req: http.IncomingMessage,
  limit: number,
  timeoutMs: number,
): Promise<Body | undefined> {
  return new Promise((resolve) => {
    const declaredTooLarge = Number(req.headers['content-length']) > limit;
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const head = () => Buffer.concat(chunks).toString('utf8', 0, Math.min(size, 4096));
    // A body dribbled byte by byte would hold the socket and the session's request slot.
    const timer =
      timeoutMs > 0
        ? setTimeout(() => finish({ text: head(), cut: 'too-slow' }), timeoutMs)
        : undefined;
    const finish = (v: Body | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(v);
    };
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      chunks.push(c);
      if (declaredTooLarge || size > limit) finish({ text: head(), cut: 'too-large' });
    });
    // [XEP-0124 §5] Content-Type is ignored; the body is UTF-8
    req.on('end', () => {
      const buf = Buffer.concat(chunks);
      // Invalid UTF-8 is refused, not turned into U+FFFD and delivered [RFC6120 11.6]
      finish({ text: buf.toString('utf8'), badUtf8: !isUtf8(buf) });
    });
    req.on('close', () => finish(undefined));
    req.on('error', () => finish(undefined));
  });
}
