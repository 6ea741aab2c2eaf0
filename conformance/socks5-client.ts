// A SOCKS5 client as XEP-0065 uses it (RFC 1928: no authentication,
// CONNECT to a DOMAINNAME that is the SHA-1 of sid + requester + target),
// and a byte reader for asserting on what a raw socket receives.
import { createHash } from 'node:crypto';
import net from 'node:net';

/** DST.ADDR of XEP-0065: SHA-1(sid + requester full JID + target full JID), hex. */
export function streamHash(sid: string, requester: string, target: string): string {
  return createHash('sha1').update(`${sid}${requester}${target}`).digest('hex');
}

/** Reads exact byte counts from a socket; `closed` resolves when it closes. */
export class ByteReader {
  readonly sock: net.Socket;
  private buf = Buffer.alloc(0);
  private waiter?: () => void;
  ended = false;
  readonly closed: Promise<void>;

  constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
    sock.on('error', () => {});
    this.closed = new Promise((r) =>
      sock.once('close', () => {
        this.ended = true;
        this.waiter?.();
        r();
      }),
    );
  }

  /** Exactly n bytes; rejects when the socket closes first or after timeoutMs. */
  async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`socket closed after ${this.buf.length} of ${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out with ${this.buf.length} of ${n} bytes`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
      this.waiter = undefined;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Everything until the socket closes (bytes seen so far included). */
  async rest(timeoutMs = 10_000): Promise<Buffer> {
    await Promise.race([
      this.closed,
      new Promise((_, rej) => setTimeout(() => rej(new Error('socket still open')), timeoutMs)),
    ]);
    const out = this.buf;
    this.buf = Buffer.alloc(0);
    return out;
  }
}

export async function tcpConnect(port: number): Promise<ByteReader> {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  sock.setNoDelay(true);
  return new ByteReader(sock);
}

/** Greeting (no authentication) and CONNECT with `hash` [RFC1928 3, 4]; returns the reader and the reply code. */
export async function socksConnect(
  port: number,
  hash: string,
  dstPort = 0,
): Promise<{ r: ByteReader; code: number }> {
  const r = await tcpConnect(port);
  r.sock.write(Buffer.from([5, 1, 0]));
  const method = await r.read(2);
  if (method[0] !== 5 || method[1] !== 0) throw new Error(`method reply ${method.toString('hex')}`);
  const addr = Buffer.from(hash, 'latin1');
  r.sock.write(
    Buffer.concat([
      Buffer.from([5, 1, 0, 3, addr.length]),
      addr,
      Buffer.from([dstPort >> 8, dstPort & 255]),
    ]),
  );
  const head = await r.read(5);
  if (head[1] !== 0) return { r, code: head[1] };
  await r.read(head[4] + 2); // BND.ADDR, BND.PORT
  return { r, code: 0 };
}
