import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import tls, { TLSSocket, type SecureContextOptions } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Broker } from '../../broker/index.ts';
import { defaultWebOptions, type WebOptions } from './options.ts';
import { listen } from '../listen.ts';

/**
 * True when the request came in over TLS. Decided by the socket alone, never
 * by the request: an absolute-form target `https://host/path` sent to the
 * plain port is still plain HTTP [RFC9112 3.2.2].
 */
export function isSecure(req: http.IncomingMessage): boolean {
  return req.socket instanceof TLSSocket;
}

/** A Host header value: IP-literal, IPv4 or reg-name, optional port [RFC9110 7.2, RFC3986 3.2.2]. */
const HOST_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::\d{0,5})?$/;

/**
 * The request's URL, or undefined when the request is malformed (then 400).
 * Its scheme is the socket's ({@link isSecure}); its host is the checked Host
 * header. Of an absolute-form target only the path and query are used.
 */
export function requestUrl(req: http.IncomingMessage): URL | undefined {
  const host = req.headers.host;
  // [RFC9112 3.2] a Host with an invalid value gets 400 (Node already answers 400 to a missing or repeated one)
  if (host !== undefined && !HOST_RE.test(host)) return undefined;
  const target = req.url ?? '/';
  let pathAndQuery: string;
  if (target.startsWith('/'))
    pathAndQuery = target; // origin-form; `//x` stays a path, never an authority
  else if (/^https?:\/\//i.test(target)) {
    // absolute-form [RFC9112 3.2.2]: accepted, but its scheme and authority decide nothing
    try {
      const u = new URL(target);
      pathAndQuery = u.pathname + u.search;
    } catch {
      return undefined;
    }
  } else return undefined; // authority-form and asterisk-form are not served here [RFC9112 3.2.3, 3.2.4]
  try {
    return new URL(`${isSecure(req) ? 'https' : 'http'}://${host || 'localhost'}${pathAndQuery}`);
  } catch {
    return undefined;
  }
}

/** Status for an HTTP parse error Node reports on `clientError`. */
function clientErrorStatus(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return '431 Request Header Fields Too Large';
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return '413 Payload Too Large';
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return '408 Request Timeout';
    default:
      return '400 Bad Request';
  }
}

/** An HTTP route handler; return false to fall through to 404. */
export type RouteHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
) => void | boolean | Promise<void | boolean>;

/** What a protocol adapter gets for an accepted WebSocket. */
export interface WebSocketInfo {
  ip: string;
  secure: boolean;
  origin?: string;
  /** the HTTP request of the upgrade */
  req: http.IncomingMessage;
}

export type WebSocketHandler = (ws: WebSocket, info: WebSocketInfo) => void;

/** Which listener a route is served on: the HTTP(S) ones, or the separate `web.metrics` one. */
export type Listener = 'main' | 'metrics';

/**
 * One HTTP(S) listener for everything web: WebSocket upgrades chosen by
 * `Sec-WebSocket-Protocol` (xmpp [RFC7395], mqtt), BOSH, health, metrics and
 * the pages. Protocol adapters register handlers; this file knows no
 * protocol.
 */
export class WebServer {
  readonly opts: WebOptions;
  readonly ports: { http?: number; https?: number; metrics?: number } = {};
  private readonly broker: Broker;
  private readonly routes: { prefix: string; handler: RouteHandler; listener: Listener }[] = [];
  private readonly protocols = new Map<string, WebSocketHandler>();
  private readonly servers: net.Server[] = [];
  private readonly wss: WebSocketServer;
  private readonly perIp = new Map<string, number>();
  private readonly stopHooks: (() => void)[] = [];
  /** open sockets of every listener, in total and by address (accept-time caps) */
  private socketCount = 0;
  private readonly socketsPerIp = new Map<string, number>();
  /** sockets that have not sent a whole request header yet, with their deadline */
  private readonly firstRequest = new Map<net.Socket, NodeJS.Timeout>();

  constructor(broker: Broker, opts: Partial<WebOptions> = {}) {
    this.broker = broker;
    this.opts = { ...defaultWebOptions, ...opts };
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.opts.maxMessageSize,
      // [RFC7395 3.1] the server picks a subprotocol it supports, or none (then the client must close)
      handleProtocols: (protocols) => {
        for (const p of protocols) if (this.protocols.has(p)) return p;
        return false;
      },
    });
  }

  /**
   * Serve requests whose path starts with `prefix` (longest prefix first), on
   * the HTTP(S) listeners or, with `listener: 'metrics'`, on `web.metrics`.
   */
  route(prefix: string, handler: RouteHandler, listener: Listener = 'main'): void {
    this.routes.push({ prefix, handler, listener });
    this.routes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** Accept WebSockets that negotiate this subprotocol. */
  protocol(name: string, handler: WebSocketHandler): void {
    this.protocols.set(name, handler);
  }

  /** Run `fn` when the listener stops (timers of the routes' own). */
  onStop(fn: () => void): void {
    this.stopHooks.push(fn);
  }

  /** Count a connection against the per-IP limit; false when over it. */
  acquire(ip: string): boolean {
    const n = this.perIp.get(ip) ?? 0;
    if (n >= this.opts.maxConnectionsPerIp) return false;
    this.perIp.set(ip, n + 1);
    return true;
  }

  release(ip: string): void {
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, n);
  }

  async start(): Promise<void> {
    if (this.opts.http) {
      const srv = http.createServer(this.httpOptions(), (req, res) =>
        this.request(req, res, 'main'),
      );
      srv.on('upgrade', (req, sock, head) => this.upgrade(req, sock as net.Socket, head));
      this.guard(srv);
      this.ports.http = await listen(srv, this.opts.http.host, this.opts.http.port);
      this.servers.push(srv);
    }
    if (this.opts.https && this.opts.tls) {
      const srv = https.createServer(
        // [issue 20] a handshake that does not finish in time is dropped (Node's default is 120 s)
        {
          ...this.opts.tls,
          ...this.httpOptions(),
          handshakeTimeout: this.opts.tlsHandshakeTimeoutMs,
        },
        (req, res) => this.request(req, res, 'main'),
      );
      srv.on('upgrade', (req, sock, head) => this.upgrade(req, sock as net.Socket, head));
      this.guard(srv);
      this.ports.https = await listen(srv, this.opts.https.host, this.opts.https.port);
      this.servers.push(srv);
    }
    if (this.opts.metrics) {
      // Only the routes registered for this listener (/metrics, /healthz, /readyz); no upgrades.
      const srv = http.createServer(this.httpOptions(), (req, res) =>
        this.request(req, res, 'metrics'),
      );
      srv.on('upgrade', (_req, sock) => this.refuse(sock as net.Socket, '404 Not Found'));
      this.guard(srv);
      this.ports.metrics = await listen(srv, this.opts.metrics.host, this.opts.metrics.port);
      this.servers.push(srv);
    }
  }

  /** Time limits of every HTTP listener (docs/configuration.md `web.*TimeoutMs`). */
  private httpOptions(): http.ServerOptions {
    return {
      headersTimeout: this.opts.headersTimeoutMs,
      requestTimeout: this.opts.requestTimeoutMs,
      keepAliveTimeout: this.opts.keepAliveTimeoutMs,
      // How often Node checks the two timeouts above; its default (30 s) would let them run late by that much.
      connectionsCheckingInterval: Math.max(
        100,
        Math.min(
          5000,
          Math.floor(
            Math.min(this.opts.headersTimeoutMs, this.opts.requestTimeoutMs || Infinity) / 4,
          ),
        ),
      ),
      requireHostHeader: true, // [RFC9112 3.2] an HTTP/1.1 request without Host gets 400
    };
  }

  /**
   * What every listener needs so that no client can take the process down or
   * hold its file descriptors: the socket caps at accept, a 400 for what
   * Node's parser refuses, and an `error` listener for accept failures.
   */
  private guard(srv: net.Server): void {
    // Before Node's own listeners: a refused socket is closed before any HTTP or TLS work.
    srv.prependListener('connection', (sock: net.Socket) => {
      if (this.admit(sock) && !(srv instanceof https.Server)) this.awaitFirstRequest(sock);
    });
    // Over TLS the wait for the first request starts once the handshake is done (that has its own limit).
    if (srv instanceof https.Server)
      srv.on('secureConnection', (sock: net.Socket) => this.awaitFirstRequest(sock));
    srv.on('request', (req: http.IncomingMessage) => this.firstRequestSeen(req.socket));
    srv.on('upgrade', (req: http.IncomingMessage) => this.firstRequestSeen(req.socket));
    srv.on('clientError', (err: NodeJS.ErrnoException, sock: net.Socket) => {
      if (
        err.code !== 'ECONNRESET' &&
        sock.writable &&
        !(sock as { _httpMessage?: http.ServerResponse })._httpMessage?.headersSent
      ) {
        sock.end(
          `HTTP/1.1 ${clientErrorStatus(err)}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
        );
      }
      sock.destroy();
    });
    // Without a listener, a failed accept (EMFILE) would be an uncaught 'error' event.
    srv.on('error', (err) => {
      this.broker.log.warn({ err }, 'http listener error');
      this.broker.metrics.error('http', `listener: ${err.message}`);
    });
  }

  /**
   * Node's `headersTimeout` starts at a request's first byte, so a socket
   * that never sends one would stay open for good: it gets the same limit
   * from the connection (or the end of its TLS handshake) to its first request.
   */
  private awaitFirstRequest(sock: net.Socket): void {
    const t = setTimeout(() => {
      this.firstRequest.delete(sock);
      if (sock.destroyed) return;
      if (sock.writable)
        sock.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      setTimeout(() => sock.destroy(), 1000).unref();
    }, this.opts.headersTimeoutMs);
    t.unref();
    this.firstRequest.set(sock, t);
    sock.once('close', () => this.firstRequestSeen(sock));
  }

  private firstRequestSeen(sock: net.Socket): void {
    const t = this.firstRequest.get(sock);
    if (t === undefined) return;
    clearTimeout(t);
    this.firstRequest.delete(sock);
  }

  /** Count an accepted socket against `maxSockets` and `maxSocketsPerIp`; over either it is closed at once. */
  private admit(sock: net.Socket): boolean {
    const ip = sock.remoteAddress;
    const n = ip === undefined ? 0 : (this.socketsPerIp.get(ip) ?? 0);
    if (
      ip === undefined ||
      this.socketCount >= this.opts.maxSockets ||
      n >= this.opts.maxSocketsPerIp
    ) {
      this.broker.metrics.closed('http', 'connection-limit');
      sock.destroy();
      return false;
    }
    this.socketCount++;
    this.socketsPerIp.set(ip, n + 1);
    sock.once('close', () => {
      this.socketCount--;
      const left = (this.socketsPerIp.get(ip) ?? 1) - 1;
      if (left <= 0) this.socketsPerIp.delete(ip);
      else this.socketsPerIp.set(ip, left);
    });
    return true;
  }

  /** Open HTTP(S) sockets now (WebSockets included). */
  get sockets(): number {
    return this.socketCount;
  }

  /** New certificate or TLS policy (reload, SIGHUP) for the next HTTPS handshakes; open connections keep theirs. */
  setTls(options: SecureContextOptions): void {
    this.opts.tls = options;
    for (const srv of this.servers) if (srv instanceof tls.Server) srv.setSecureContext(options);
  }

  async stop(): Promise<void> {
    for (const fn of this.stopHooks.splice(0)) fn();
    for (const ws of this.wss.clients) ws.close(1001, 'server shutting down');
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((r) => {
            (s as http.Server).closeAllConnections?.();
            s.close(() => r());
          }),
      ),
    );
    this.servers.length = 0;
  }

  /** Never rejects: a handler that throws gets 500, a malformed request 400. */
  private async request(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    listener: Listener,
  ): Promise<void> {
    let url: URL | undefined;
    try {
      url = requestUrl(req);
      if (!url) {
        this.broker.metrics.closed('http', 'bad-request');
        res
          .writeHead(400, { 'content-type': 'text/plain', connection: 'close' })
          .end('bad request\n');
        return;
      }
      for (const r of this.routes) {
        if (r.listener !== listener) continue;
        if (
          url.pathname === r.prefix ||
          url.pathname.startsWith(r.prefix.endsWith('/') ? r.prefix : `${r.prefix}/`)
        ) {
          const handled = await r.handler(req, res, url);
          if (handled !== false) return;
        }
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    } catch (err) {
      const path = (url?.pathname ?? '').slice(0, 100);
      this.broker.log.error({ err, path }, 'http handler failed');
      this.broker.metrics.error('http', `${path}: ${(err as Error)?.message ?? String(err)}`);
      try {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      } catch {
        res.destroy();
      }
    }
  }

  /** Answer an upgrade request with a status and close; the socket is no longer Node's HTTP socket here. */
  private refuse(sock: net.Socket, status: string): void {
    sock.on('error', () => {}); // after 'upgrade' Node leaves the socket without an error listener
    if (sock.writable)
      sock.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    sock.destroySoon?.();
  }

  private upgrade(req: http.IncomingMessage, sock: net.Socket, head: Buffer): void {
    // After 'upgrade' Node removes its own error listener: a reset now would be an uncaught 'error'.
    sock.on('error', () => {});
    try {
      this.upgradeChecked(req, sock, head);
    } catch (err) {
      this.broker.log.error({ err }, 'websocket upgrade failed');
      this.broker.metrics.error('http', `upgrade: ${(err as Error)?.message ?? String(err)}`);
      sock.destroy();
    }
  }

  private upgradeChecked(req: http.IncomingMessage, sock: net.Socket, head: Buffer): void {
    const ip = sock.remoteAddress ?? 'unknown';
    const secure = isSecure(req);
    const origin = req.headers.origin;
    if (!requestUrl(req)) return this.refuse(sock, '400 Bad Request');
    // [RFC6455 10.2] a browser's page from an origin not listed does not get a WebSocket; non-browser clients send no Origin
    if (
      origin !== undefined &&
      this.opts.allowedOrigins.length > 0 &&
      !this.opts.allowedOrigins.includes(origin)
    )
      return this.refuse(sock, '403 Forbidden');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (!offered.some((p) => this.protocols.has(p))) {
      // [RFC7395 3.1] no supported subprotocol: refuse the handshake
      return this.refuse(sock, '400 Bad Request');
    }
    if (!this.acquire(ip)) return this.refuse(sock, '429 Too Many Requests');
    this.wss.handleUpgrade(req, sock, head, (ws) => {
      ws.once('close', () => this.release(ip));
      // A handler adds its own; this one only keeps a stray 'error' from being uncaught.
      ws.on('error', () => {});
      const handler = this.protocols.get(ws.protocol);
      if (!handler) return ws.close(1002, 'no supported subprotocol');
      this.keepAlive(ws);
      try {
        handler(ws, { ip, secure, origin, req });
      } catch (err) {
        this.broker.log.error({ err }, 'websocket handler failed');
        this.broker.metrics.error('http', `websocket: ${(err as Error)?.message ?? String(err)}`);
        ws.terminate();
      }
    });
  }

  /** Ping idle clients; close those that stay silent past the idle timeout. */
  private keepAlive(ws: WebSocket): void {
    let last = Date.now();
    const touch = () => (last = Date.now());
    ws.on('message', touch);
    ws.on('pong', touch);
    if (this.opts.pingIntervalMs <= 0 && this.opts.idleTimeoutMs <= 0) return;
    const every = Math.max(
      1000,
      Math.min(this.opts.pingIntervalMs || Infinity, this.opts.idleTimeoutMs || Infinity),
    );
    const t = setInterval(() => {
      try {
        if (this.opts.idleTimeoutMs > 0 && Date.now() - last > this.opts.idleTimeoutMs) {
          ws.close(1000, 'idle timeout');
          return;
        }
        if (this.opts.pingIntervalMs > 0 && ws.readyState === ws.OPEN) ws.ping();
      } catch {
        ws.terminate();
      }
    }, every);
    t.unref();
    ws.once('close', () => clearInterval(t));
  }
}
