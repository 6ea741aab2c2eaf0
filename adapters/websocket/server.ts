import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import tls, { type SecureContextOptions } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Broker } from '../../broker/index.ts';
import { defaultWebOptions, type WebOptions } from './options.ts';
import { listen } from '../listen.ts';

/** An HTTP route handler; return false to fall through to 404. */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void | boolean | Promise<void | boolean>;

/** What a protocol adapter gets for an accepted WebSocket. */
export interface WebSocketInfo {
  ip: string;
  secure: boolean;
  origin?: string;
  /** the HTTP request of the upgrade */
  req: http.IncomingMessage;
}

export type WebSocketHandler = (ws: WebSocket, info: WebSocketInfo) => void;

/**
 * One HTTP(S) listener for everything web: WebSocket upgrades chosen by
 * `Sec-WebSocket-Protocol` (xmpp [RFC7395], mqtt), BOSH, health, metrics and
 * the pages. Protocol adapters register handlers; this file knows no
 * protocol.
 */
export class WebServer {
  readonly opts: WebOptions;
  readonly ports: { http?: number; https?: number } = {};
  private readonly broker: Broker;
  private readonly routes: { prefix: string; handler: RouteHandler }[] = [];
  private readonly protocols = new Map<string, WebSocketHandler>();
  private readonly servers: net.Server[] = [];
  private readonly wss: WebSocketServer;
  private readonly perIp = new Map<string, number>();
  private readonly stopHooks: (() => void)[] = [];

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

  /** Serve requests whose path starts with `prefix` (longest prefix first). */
  route(prefix: string, handler: RouteHandler): void {
    this.routes.push({ prefix, handler });
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
      const srv = http.createServer((req, res) => this.request(req, res, false));
      srv.on('upgrade', (req, sock, head) => this.upgrade(req, sock as net.Socket, head, false));
      this.ports.http = await listen(srv, this.opts.http.host, this.opts.http.port);
      this.servers.push(srv);
    }
    if (this.opts.https && this.opts.tls) {
      const srv = https.createServer({ ...this.opts.tls }, (req, res) => this.request(req, res, true));
      srv.on('upgrade', (req, sock, head) => this.upgrade(req, sock as net.Socket, head, true));
      this.ports.https = await listen(srv, this.opts.https.host, this.opts.https.port);
      this.servers.push(srv);
    }
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

  private async request(req: http.IncomingMessage, res: http.ServerResponse, secure: boolean): Promise<void> {
    const url = new URL(req.url ?? '/', `${secure ? 'https' : 'http'}://${req.headers.host ?? 'localhost'}`);
    try {
      for (const r of this.routes) {
        if (url.pathname === r.prefix || url.pathname.startsWith(r.prefix.endsWith('/') ? r.prefix : `${r.prefix}/`)) {
          const handled = await r.handler(req, res, url);
          if (handled !== false) return;
        }
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    } catch (err) {
      this.broker.log.error({ err, path: url.pathname }, 'http handler failed');
      this.broker.metrics.error('http', `${url.pathname.slice(0, 100)}: ${(err as Error)?.message ?? String(err)}`);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    }
  }

  private upgrade(req: http.IncomingMessage, sock: net.Socket, head: Buffer, secure: boolean): void {
    const ip = sock.remoteAddress ?? 'unknown';
    const origin = req.headers.origin;
    const reject = (status: number, text: string) => {
      sock.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (origin && this.opts.allowedOrigins.length > 0 && !this.opts.allowedOrigins.includes(origin)) return reject(403, 'Forbidden');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (!offered.some((p) => this.protocols.has(p))) {
      // [RFC7395 3.1] no supported subprotocol: refuse the handshake
      return reject(400, 'Bad Request');
    }
    if (!this.acquire(ip)) return reject(429, 'Too Many Requests');
    this.wss.handleUpgrade(req, sock, head, (ws) => {
      ws.once('close', () => this.release(ip));
      const handler = this.protocols.get(ws.protocol);
      if (!handler) return ws.close(1002, 'no supported subprotocol');
      this.keepAlive(ws);
      handler(ws, { ip, secure, origin, req });
    });
  }

  /** Ping idle clients; close those that stay silent past the idle timeout. */
  private keepAlive(ws: WebSocket): void {
    let last = Date.now();
    const touch = () => (last = Date.now());
    ws.on('message', touch);
    ws.on('pong', touch);
    if (this.opts.pingIntervalMs <= 0 && this.opts.idleTimeoutMs <= 0) return;
    const every = Math.max(1000, Math.min(this.opts.pingIntervalMs || Infinity, this.opts.idleTimeoutMs || Infinity));
    const t = setInterval(() => {
      if (this.opts.idleTimeoutMs > 0 && Date.now() - last > this.opts.idleTimeoutMs) {
        ws.close(1000, 'idle timeout');
        return;
      }
      if (this.opts.pingIntervalMs > 0) ws.ping();
    }, every);
    t.unref();
    ws.once('close', () => clearInterval(t));
  }
}
