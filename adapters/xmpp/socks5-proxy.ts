import net from 'node:net';

/**
 * The network half of the XEP-0065 proxy (docs/calls.md): a SOCKS5 listener
 * that accepts exactly what XEP-0065 uses of RFC 1928 (no authentication,
 * CONNECT, a DOMAINNAME that is the 40-hex-digit SHA-1 of sid + requester +
 * target), pairs the two connections that present the same hash, and relays
 * bytes between them once the requester activates the stream over XMPP.
 *
 * Every byte here comes from an unauthenticated socket, so everything is
 * bounded: connections per address, connections not yet activated, the time
 * to finish the handshake and to be activated, the bytes read before
 * activation; after activation, streams per user, bytes per stream, a
 * per-user bandwidth and an idle timeout.
 */

export interface Socks5Limits {
  /** the greeting and CONNECT request must be complete within this */
  handshakeTimeoutMs: number;
  /** after its handshake, a connection must be activated within this */
  activationTimeoutMs: number;
  /** an activated stream with no byte either way for this long is closed (0 = never) */
  idleTimeoutMs: number;
  /** open connections from one IP address */
  maxConnectionsPerIp: number;
  /** connections not yet activated, all addresses together */
  maxPending: number;
  /** activated streams one account (the requester) may have at once */
  maxStreamsPerUser: number;
  /** bytes relayed per stream, both directions (0 = unlimited) */
  maxBytesPerStream: number;
  /** bytes per second one account's streams may relay together (0 = unlimited) */
  bandwidthPerUser: number;
}

/** not-found: no connection presented the hash; one-side: only one did */
/** For the metrics: a connection accepted, and one closed with its reason (`refused` at accept: never opened). */
export interface Socks5Events {
  opened(): void;
  closed(reason: string): void;
}

export type ActivateResult = 'ok' | 'not-found' | 'one-side' | 'too-many-streams';

/** Bytes a client may send before its stream is activated (kept, relayed after activation). */
const MAX_EARLY_BYTES = 64 * 1024;
const HASH = /^[0-9a-f]{40}$/;

/** Per-account relaying state: streams and a token bucket of one second. */
interface UserState {
  streams: number;
  tokens: number;
  last: number;
}

class Conn {
  readonly sock: net.Socket;
  hash?: string;
  early: Buffer[] = [];
  earlyBytes = 0;
  peer?: Conn;
  activated = false;
  timer?: NodeJS.Timeout;
  holds = 0;
  /** why it was closed, for the metrics; unset: the client closed it */
  reason?: string;

  constructor(sock: net.Socket) {
    this.sock = sock;
  }

  hold(): void {
    if (this.holds++ === 0) this.sock.pause();
  }

  release(): void {
    if (--this.holds === 0 && !this.sock.destroyed) this.sock.resume();
  }
}

export class Socks5Proxy {
  private readonly limits: Socks5Limits;
  private readonly server: net.Server;
  private readonly conns = new Set<Conn>();
  private readonly perIp = new Map<string, number>();
  /** hash → the connections that presented it, target first */
  private readonly waiting = new Map<string, Conn[]>();
  private readonly users = new Map<string, UserState>();
  private pending = 0;
  private readonly events?: Socks5Events;

  constructor(limits: Socks5Limits, events?: Socks5Events) {
    this.limits = limits;
    this.events = events;
    this.server = net.createServer((sock) => this.accept(sock));
    this.server.on('error', () => {});
  }

  /** Listen; resolves with the port (useful with port 0). */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const c of this.conns) c.sock.destroy();
    await closed;
  }

  /** Connections not activated yet (for tests and status). */
  get pendingCount(): number {
    return this.pending;
  }

  private accept(sock: net.Socket): void {
    const ip = sock.remoteAddress ?? '?';
    const fromIp = this.perIp.get(ip) ?? 0;
    if (fromIp >= this.limits.maxConnectionsPerIp || this.pending >= this.limits.maxPending) {
      this.events?.closed('refused');
      sock.destroy(); // before reading a byte
      return;
    }
    this.events?.opened();
    this.perIp.set(ip, fromIp + 1);
    this.pending++;
    const c = new Conn(sock);
    this.conns.add(c);
    sock.setNoDelay(true);
    c.timer = setTimeout(() => this.kill(c, 'handshake-timeout'), this.limits.handshakeTimeoutMs);
    let buf: Buffer = Buffer.alloc(0);
    let stage: 'greeting' | 'request' | 'done' = 'greeting';
    const onData = (chunk: Buffer) => {
      if (stage === 'done') return; // refused: the handshake timer closes it
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (stage === 'greeting') {
        // [RFC1928 3] VER NMETHODS METHODS…
        if (buf.length < 2) return;
        if (buf[0] !== 5) return this.bad(c);
        const n = buf[1];
        if (n === 0) return this.bad(c);
        if (buf.length < 2 + n) return;
        const methods = buf.subarray(2, 2 + n);
        buf = buf.subarray(2 + n);
        if (!methods.includes(0)) {
          stage = 'done';
          sock.end(Buffer.from([5, 0xff])); // [RFC1928 3] no acceptable method: XEP-0065 uses "no authentication"
          return this.bad(c, false);
        }
        sock.write(Buffer.from([5, 0]));
        stage = 'request';
      }
      // [RFC1928 4] VER CMD RSV ATYP DST.ADDR DST.PORT; [XEP-0065] CONNECT to DOMAINNAME = SHA-1 hex, port 0
      if (buf.length < 5) return;
      if (buf[0] !== 5) return this.bad(c);
      stage = buf[1] !== 1 || buf[3] !== 3 ? 'done' : stage;
      if (buf[1] !== 1) return this.reply(c, 7); // [RFC1928 6] command not supported (UDP ASSOCIATE, BIND)
      if (buf[3] !== 3) return this.reply(c, 8); // [RFC1928 6] address type not supported
      const len = buf[4];
      if (buf.length < 5 + len + 2) return;
      // lenient (docs/leniency.md): the hash in either case, DST.PORT not checked (XEP-0065 says 0)
      const hash = buf
        .subarray(5, 5 + len)
        .toString('latin1')
        .toLowerCase();
      const rest = buf.subarray(5 + len + 2);
      stage = 'done';
      sock.off('data', onData);
      sock.pause();
      if (!HASH.test(hash)) return this.reply(c, 2); // [RFC1928 6] not allowed by ruleset
      const list = this.waiting.get(hash) ?? [];
      if (list.length >= 2) return this.reply(c, 2); // one target, one requester per stream [XEP-0065]
      clearTimeout(c.timer);
      c.hash = hash;
      if (rest.length) this.keepEarly(c, rest);
      list.push(c);
      this.waiting.set(hash, list);
      // [RFC1928 6] succeeded, BND.ADDR echoing the hash as XEP-0065 shows
      const ok = Buffer.alloc(7 + len);
      ok.set([5, 0, 0, 3, len]);
      buf.copy(ok, 5, 5, 5 + len + 2);
      sock.write(ok);
      c.timer = setTimeout(
        () => this.kill(c, 'activation-timeout'),
        this.limits.activationTimeoutMs,
      );
      // bytes before activation are kept (bounded), never relayed early
      sock.on('data', (d: Buffer) => this.keepEarly(c, d));
      sock.resume();
    };
    sock.on('data', onData);
    sock.on('error', () => {});
    sock.on('close', () => this.closed(c, ip));
  }

  private keepEarly(c: Conn, d: Buffer): void {
    c.earlyBytes += d.length;
    if (c.earlyBytes > MAX_EARLY_BYTES) {
      this.kill(c, 'early-bytes');
      return;
    }
    c.early.push(d);
  }

  private kill(c: Conn, reason: string): void {
    c.reason ??= reason;
    c.sock.destroy();
  }

  private bad(c: Conn, destroy = true): void {
    c.reason ??= 'bad-handshake';
    if (destroy) c.sock.destroy();
  }

  /** A SOCKS5 failure reply, then close [RFC1928 6]. */
  private reply(c: Conn, code: number): void {
    c.reason ??= 'refused-request';
    c.sock.end(Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]));
    c.sock.resume(); // read to the client's close; the handshake timer ends it otherwise
  }

  private closed(c: Conn, ip: string): void {
    this.conns.delete(c);
    clearTimeout(c.timer);
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n > 0) this.perIp.set(ip, n);
    else this.perIp.delete(ip);
    if (!c.activated) this.pending--;
    if (c.hash && !c.activated) {
      const list = this.waiting.get(c.hash)?.filter((x) => x !== c);
      if (list?.length) this.waiting.set(c.hash, list);
      else this.waiting.delete(c.hash);
    }
    this.events?.closed(c.reason ?? 'ended');
    if (c.peer) this.kill(c.peer, 'ended'); // one side gone: the stream is over
  }

  /**
   * Relay the two connections that presented `hash` (the target's, then the
   * requester's), on behalf of `user` (the requester's bare JID).
   */
  activate(hash: string, user: string): ActivateResult {
    const list = this.waiting.get(hash);
    if (!list) return 'not-found';
    if (list.length < 2) return 'one-side';
    const u = this.users.get(user) ?? {
      streams: 0,
      tokens: this.limits.bandwidthPerUser,
      last: Date.now(),
    };
    if (u.streams >= this.limits.maxStreamsPerUser) return 'too-many-streams';
    this.waiting.delete(hash);
    u.streams++;
    this.users.set(user, u);
    const [a, b] = list;
    let bytes = 0;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      if (--u.streams === 0) this.users.delete(user);
    };
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      clearTimeout(from.timer);
      from.activated = true;
      this.pending--;
      from.peer = to;
      from.sock.removeAllListeners('data');
      from.sock.on('close', end);
      if (this.limits.idleTimeoutMs > 0) {
        from.sock.setTimeout(this.limits.idleTimeoutMs, () => this.kill(from, 'idle-timeout'));
      }
      const send = (d: Buffer) => {
        bytes += d.length;
        if (this.limits.maxBytesPerStream > 0 && bytes > this.limits.maxBytesPerStream) {
          this.kill(from, 'byte-cap'); // past the stream's byte cap: both sides close
          return;
        }
        if (!to.sock.write(d)) {
          from.hold();
          to.sock.once('drain', () => from.release());
        }
        const wait = this.spend(u, d.length);
        if (wait > 0) {
          from.hold();
          setTimeout(() => from.release(), wait).unref();
        }
      };
      for (const d of from.early) send(d);
      from.early = [];
      from.sock.on('data', send);
    }
    return 'ok';
  }

  /** Take `n` bytes from the user's bucket; the ms to pause when it runs dry. */
  private spend(u: UserState, n: number): number {
    const rate = this.limits.bandwidthPerUser;
    if (rate <= 0) return 0;
    const now = Date.now();
    u.tokens = Math.min(rate, u.tokens + ((now - u.last) * rate) / 1000);
    u.last = now;
    u.tokens -= n;
    return u.tokens < 0 ? Math.ceil((-u.tokens * 1000) / rate) : 0;
  }
}
