import net from 'node:net';
import tls from 'node:tls';
import { escapeXML } from '@xmpp/xml';
import { closeReason, type Broker, type CloseReason } from '../../broker/index.ts';
import { NS_CLIENT, NS_STREAM } from './parser.ts';
import type { WebSocket } from 'ws';
import { XmppConnection, type Transport } from './connection.ts';
import { translateFrame, WebSocketTransport } from './websocket.ts';
import { defaultXmppOptions, type XmppOptions } from './options.ts';
import { listen } from '../listen.ts';

/**
 * The connection each socket feeds. The socket listeners are shared by every
 * socket (EventEmitter calls them with the socket as `this`) instead of
 * closures per connection.
 */
const connOf = new WeakMap<net.Socket, XmppConnection>();

function onData(this: net.Socket, d: Buffer): void {
  connOf.get(this)?.data(d);
}

function onError(this: net.Socket): void {
  connOf.get(this)?.transportClosed('socket-error');
}

function onClose(this: net.Socket): void {
  connOf.get(this)?.transportClosed('client-closed');
}

/** A WebSocket frame carrying a TCP-style stream header or footer instead of the RFC 7395 framing. */
const RAW_STREAM_FRAME = /^\s*<\/?stream:stream[\s>/]/;

/** A TCP socket as an XMPP transport, with in-place STARTTLS. */
class SocketTransport implements Transport {
  kind: string;
  secure: boolean;
  readonly remoteAddress: string;
  private sock: net.Socket;
  private readonly currentContext: () => tls.SecureContext | undefined;
  private corked = false;
  private paused = false;

  private readonly handshakeTimeoutMs: number;

  /** currentContext: the server's context when the upgrade happens (a reloaded certificate applies to the next STARTTLS) */
  constructor(
    sock: net.Socket,
    secure: boolean,
    currentContext: () => tls.SecureContext | undefined,
    handshakeTimeoutMs: number,
  ) {
    this.sock = sock;
    this.secure = secure;
    this.kind = secure ? 'tls' : 'tcp';
    this.remoteAddress = sock.remoteAddress ?? 'unknown';
    this.currentContext = currentContext;
    this.handshakeTimeoutMs = handshakeTimeoutMs;
  }

  private get secureContext(): tls.SecureContext | undefined {
    return this.currentContext();
  }

  get canStartTls(): boolean {
    return !this.secure && !!this.secureContext;
  }

  write(data: string): void {
    if (this.sock.destroyed) return;
    if (!this.corked) {
      // Hold the socket for the rest of this tick: several stanzas to one
      // client go out in one system call (bufferedAmount still counts them).
      this.corked = true;
      const sock = this.sock;
      sock.cork();
      process.nextTick(() => {
        this.corked = false;
        sock.uncork();
      });
    }
    this.sock.write(data);
  }

  openStream(a: { id: string; from: string; to?: string }): void {
    const to = a.to ? ` to='${escapeXML(a.to)}'` : '';
    this.write(
      `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' id='${a.id}' from='${escapeXML(a.from)}'${to} version='1.0' xml:lang='en'>`,
    );
  }

  closeStream(errorXml?: string): void {
    this.write(`${errorXml ?? ''}</stream:stream>`);
  }

  keepalive(): void {
    this.write(' ');
  }

  bufferedAmount(): number {
    return this.sock.writableLength;
  }

  pause(): void {
    this.paused = true;
    this.sock.pause();
  }

  resume(): void {
    this.paused = false;
    this.sock.resume();
  }

  end(waitForPeer = false): void {
    if (waitForPeer && !this.sock.readableEnded && !this.sock.destroyed) {
      // [RFC6120 4.4] our </stream:stream> is out; the client's comes next, then we close TCP. A client
      // that acts on the error (see-other-host) writes its closing tag, which a socket already ended refuses.
      let done = false;
      const close = () => !done && ((done = true), this.end());
      this.sock.once('end', close);
      this.sock.once('close', close);
      setTimeout(close, 2000).unref();
      this.resume();
      return;
    }
    this.sock.end();
    // Do not wait forever for a peer that never closes its side.
    setTimeout(() => this.sock.destroy(), 2000).unref();
  }

  async startTls(): Promise<void> {
    const raw = this.sock;
    raw.removeAllListeners('data');
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: this.secureContext });
    await new Promise<void>((resolve, reject) => {
      // A half-done handshake holds a socket and TLS state: bounded like direct TLS (option tlsHandshakeTimeoutMs).
      const timer = setTimeout(() => {
        reject(new Error('TLS handshake timed out'));
        secure.destroy();
      }, this.handshakeTimeoutMs);
      secure.once('secure', () => {
        clearTimeout(timer);
        this.sock = secure;
        this.secure = true;
        this.kind = 'starttls';
        resolve();
      });
      secure.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    // The TLS socket carries the data from now on; the raw one still reports the close.
    connOf.set(secure, connOf.get(raw)!);
    secure.on('data', onData);
    secure.on('error', onError);
    if (this.paused) secure.pause();
  }
}

/** The XMPP client listeners: TCP 5222 (STARTTLS) and direct TLS 5223 [XEP-0368]. */
export class XmppServer {
  readonly opts: XmppOptions;
  private readonly broker: Broker;
  /** A failed accept (EMFILE…): logged and counted; the listener keeps accepting. */
  private readonly acceptFailed = (err: Error): void => {
    this.broker.log.error({ err }, 'accept failed');
    this.broker.metrics.error('accept', err.message);
  };
  private readonly servers: net.Server[] = [];
  private readonly conns = new Set<XmppConnection>();
  /** TCP sockets per address, on both listeners, counted at accept (before any TLS handshake) */
  private readonly perIp = new Map<string, number>();
  /** TCP sockets open on both listeners, handshakes included */
  private sockets = 0;
  /** connections over WebSocket and BOSH (not in `sockets`) */
  private others = 0;
  private ctx?: tls.SecureContext;
  private readonly currentContext = (): tls.SecureContext | undefined => this.ctx;
  /** bound ports, after start() */
  readonly ports: { tcp?: number; directTls?: number } = {};

  constructor(broker: Broker, opts: Partial<XmppOptions> = {}) {
    this.broker = broker;
    this.opts = { ...defaultXmppOptions, ...opts };
    if (this.opts.tls) this.ctx = tls.createSecureContext(this.opts.tls);
  }

  async start(): Promise<void> {
    const { tcp, directTls } = this.opts;
    if (tcp) {
      const srv = net.createServer((s) => {
        if (this.admit(s)) this.accept(s, false);
        else this.refuse(s);
      });
      this.ports.tcp = await listen(srv, tcp.host, tcp.port, this.acceptFailed);
      this.servers.push(srv);
    }
    if (directTls && this.ctx) {
      // tls.createServer ignores `secureContext`; key and cert must be passed themselves.
      // handshakeTimeout: a half-done handshake is closed after tlsHandshakeTimeoutMs (Node's default is 120 s)
      const srv = tls.createServer(
        { ...this.opts.tls, handshakeTimeout: this.opts.tlsHandshakeTimeoutMs },
        (s) => this.accept(s, true),
      );
      // Counted at accept, before the handshake: a handshake costs memory and CPU, so the limits apply to it.
      srv.on('connection', (raw: net.Socket) => {
        if (this.admit(raw)) return;
        this.broker.log.info(
          { ip: raw.remoteAddress },
          'direct TLS connection refused: too many connections',
        );
        raw.destroy(); // no stream error can be sent before TLS
      });
      srv.on('tlsClientError', (err, s) => {
        this.broker.log.debug({ err: err.message }, 'direct TLS handshake failed');
        s.destroy(); // a handshake timeout only reports: with this listener Node leaves the socket open
      });
      this.ports.directTls = await listen(srv, directTls.host, directTls.port, this.acceptFailed);
      this.servers.push(srv);
    }
  }

  /**
   * New certificate or TLS policy (reload, SIGHUP): the next handshakes,
   * direct TLS and STARTTLS alike, use it; established sessions keep theirs.
   */
  setTls(options: tls.SecureContextOptions): void {
    this.ctx = tls.createSecureContext(options);
    this.opts.tls = options;
    for (const srv of this.servers) if (srv instanceof tls.Server) srv.setSecureContext(options);
  }

  /**
   * Close every stream and stop listening. `redirect` (a draining cluster
   * node) names, per connection, where its client should go instead:
   * see-other-host on TCP and TLS [RFC6120 4.9.3.19], see-other-uri on
   * WebSocket [RFC7395 3.6.1]; undefined keeps system-shutdown.
   */
  async stop(redirect?: (transport: string) => CloseReason | undefined): Promise<void> {
    for (const c of [...this.conns])
      c.close(redirect?.(c.transport) ?? closeReason('system-shutdown'));
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers.length = 0;
  }

  connectionCount(): number {
    return this.conns.size;
  }

  /**
   * A connection over a transport its caller drives (BOSH [XEP-0206]),
   * counted and closed with the others; the caller applied its per-IP limit.
   */
  acceptTransport(transport: Transport): XmppConnection {
    const conn = new XmppConnection(this.broker, transport, this.opts, this.forgetOther);
    this.conns.add(conn);
    this.others++;
    if (this.total() > this.opts.maxConnections)
      conn.close(closeReason('policy-violation', 'too many connections'));
    return conn;
  }

  /** XMPP over WebSocket [RFC7395]; the web listener has already applied its per-IP limit. */
  acceptWebSocket(ws: WebSocket, info: { ip: string; secure: boolean }): void {
    const transport = new WebSocketTransport(ws, info.ip, info.secure);
    const conn = new XmppConnection(this.broker, transport, this.opts, this.forgetOther);
    this.conns.add(conn);
    this.others++;
    ws.on('message', (data, isBinary) => {
      // [RFC7395 3.2] text frames only
      if (isBinary) return conn.close(closeReason('not-well-formed', 'binary frames are not XMPP'));
      const frame = data.toString(); // ws has refused invalid UTF-8 in text frames already (close 1007)
      // [RFC7395 3.3.2] the stream is opened with <open/> and closed with <close/>, never a raw stream header or footer
      if (RAW_STREAM_FRAME.test(frame))
        return conn.close(
          closeReason(
            'invalid-namespace',
            'use <open/> and <close/> of urn:ietf:params:xml:ns:xmpp-framing',
          ),
        );
      conn.data(translateFrame(frame));
    });
    ws.on('close', () => conn.transportClosed('client-closed'));
    ws.on('error', () => conn.transportClosed('socket-error'));
    if (this.total() > this.opts.maxConnections)
      conn.close(closeReason('policy-violation', 'too many connections'));
  }

  /** Every XMPP connection and TCP socket, a TLS handshake in progress included (limit maxConnections). */
  private total(): number {
    return this.sockets + this.others;
  }

  private readonly forgetOther = (c: XmppConnection): void => {
    this.conns.delete(c);
    this.others--;
  };

  /** One callback for every TCP connection, not a closure each; the socket's slot is released when it closes (forgetSocket). */
  private readonly forgetTcp = (c: XmppConnection): void => {
    this.conns.delete(c);
  };

  /**
   * A TCP socket accepted on either listener, counted at once, before any TLS
   * handshake (direct TLS or STARTTLS), until it closes: limits
   * maxConnectionsPerIp and maxConnections. False when over a limit.
   */
  private admit(raw: net.Socket): boolean {
    const ip = raw.remoteAddress ?? 'unknown';
    this.sockets++;
    this.perIp.set(ip, (this.perIp.get(ip) ?? 0) + 1);
    raw.once('close', () => {
      this.sockets--;
      const n = (this.perIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, n);
    });
    return (
      this.total() <= this.opts.maxConnections &&
      (this.perIp.get(ip) ?? 0) <= this.opts.maxConnectionsPerIp
    );
  }

  /** Over a limit on the plain listener: the stream error can still be sent in the clear. */
  private refuse(sock: net.Socket): void {
    const conn = this.accept(sock, false);
    conn.close(closeReason('policy-violation', 'too many connections')); // limits: maxConnections, maxConnectionsPerIp
  }

  private accept(sock: net.Socket, secure: boolean): XmppConnection {
    sock.setNoDelay(true);
    const transport = new SocketTransport(
      sock,
      secure,
      this.currentContext,
      this.opts.tlsHandshakeTimeoutMs,
    );
    const conn = new XmppConnection(this.broker, transport, this.opts, this.forgetTcp);
    this.conns.add(conn);
    connOf.set(sock, conn);
    sock.on('data', onData);
    sock.on('error', onError);
    sock.on('close', onClose);
    return conn;
  }
}
