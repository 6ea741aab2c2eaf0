// A minimal STUN/TURN client over UDP (RFC 8489, RFC 8656) and a coturn
// started on loopback for a test: enough to check that TURN credentials
// Parley hands out (XEP-0215) are accepted by a real TURN server.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const MAGIC = 0x2112a442;
const ATTR = {
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  REALM: 0x0014,
  NONCE: 0x0015,
  XOR_RELAYED_ADDRESS: 0x0016,
  REQUESTED_TRANSPORT: 0x0019,
} as const;
export const STUN = {
  BINDING: 0x0001,
  BINDING_OK: 0x0101,
  ALLOCATE: 0x0003,
  ALLOCATE_OK: 0x0103,
  ALLOCATE_ERROR: 0x0113,
} as const;

export interface StunMessage {
  type: number;
  attrs: Map<number, Buffer>;
  /** ERROR-CODE as a number (401, 438…), when present */
  error?: number;
}

function attr(type: number, value: Buffer): Buffer {
  const pad = (4 - (value.length % 4)) % 4;
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(value.length, 2);
  return Buffer.concat([h, value, Buffer.alloc(pad)]);
}

/** A request; with `auth`, USERNAME, REALM, NONCE and a long-term MESSAGE-INTEGRITY [RFC8489 9.2, 14.5]. */
export function encode(
  type: number,
  attrs: Buffer[],
  auth?: { username: string; password: string; realm: string; nonce: string },
): Buffer {
  const body = [...attrs];
  if (auth)
    body.push(
      attr(ATTR.USERNAME, Buffer.from(auth.username)),
      attr(ATTR.REALM, Buffer.from(auth.realm)),
      attr(ATTR.NONCE, Buffer.from(auth.nonce)),
    );
  let payload = Buffer.concat(body);
  const header = Buffer.alloc(20);
  header.writeUInt16BE(type, 0);
  header.writeUInt32BE(MAGIC, 4);
  randomBytes(12).copy(header, 8);
  if (auth) {
    // the length counts the MESSAGE-INTEGRITY attribute (24 bytes) that follows [RFC8489 14.5]
    header.writeUInt16BE(payload.length + 24, 2);
    const key = createHash('md5')
      .update(`${auth.username}:${auth.realm}:${auth.password}`)
      .digest();
    const mac = createHmac('sha1', key)
      .update(Buffer.concat([header, payload]))
      .digest();
    payload = Buffer.concat([payload, attr(ATTR.MESSAGE_INTEGRITY, mac)]);
  }
  header.writeUInt16BE(payload.length, 2);
  return Buffer.concat([header, payload]);
}

export function decode(buf: Buffer): StunMessage {
  const type = buf.readUInt16BE(0);
  const len = buf.readUInt16BE(2);
  const attrs = new Map<number, Buffer>();
  for (let off = 20; off + 4 <= 20 + len;) {
    const t = buf.readUInt16BE(off);
    const l = buf.readUInt16BE(off + 2);
    attrs.set(t, buf.subarray(off + 4, off + 4 + l));
    off += 4 + l + ((4 - (l % 4)) % 4);
  }
  const e = attrs.get(ATTR.ERROR_CODE);
  return { type, attrs, error: e ? (e[2] & 7) * 100 + e[3] : undefined };
}

/** A UDP socket for STUN transactions: one 5-tuple, as a TURN allocation needs [RFC8656 2.2]. */
export class StunSocket {
  private readonly sock = dgram.createSocket('udp4');
  private readonly waiting = new Map<string, (m: StunMessage) => void>();
  private readonly port: number;

  constructor(port: number) {
    this.port = port;
    this.sock.on('message', (b) => {
      if (b.length < 20) return;
      const key = b.subarray(8, 20).toString('hex');
      this.waiting.get(key)?.(decode(b));
    });
    this.sock.on('error', () => {});
  }

  /** One request, one answer (retransmitted every 250 ms, up to `timeoutMs`). */
  request(msg: Buffer, timeoutMs = 5000): Promise<StunMessage> {
    const key = msg.subarray(8, 20).toString('hex');
    return new Promise((resolve, reject) => {
      const send = () => this.sock.send(msg, this.port, '127.0.0.1');
      const done = (err?: Error, m?: StunMessage) => {
        clearInterval(resend);
        clearTimeout(timer);
        this.waiting.delete(key);
        if (err) reject(err);
        else resolve(m!);
      };
      this.waiting.set(key, (m) => done(undefined, m));
      const resend = setInterval(send, 250);
      const timer = setTimeout(
        () => done(new Error(`no STUN answer from 127.0.0.1:${this.port}`)),
        timeoutMs,
      );
      send();
    });
  }

  close(): void {
    this.sock.close();
  }
}

/**
 * A TURN Allocate (UDP relay) with long-term credentials from one socket:
 * the unauthenticated request gets 401 with REALM and NONCE, the second
 * carries MESSAGE-INTEGRITY [RFC8656 7.2, RFC8489 9.2.2]. Returns the final answer.
 */
export async function allocate(
  port: number,
  username: string,
  password: string,
): Promise<StunMessage> {
  const s = new StunSocket(port);
  try {
    const transport = attr(ATTR.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])); // UDP
    const first = await s.request(encode(STUN.ALLOCATE, [transport]));
    if (first.error !== 401)
      throw new Error(
        `expected 401 to an unauthenticated Allocate, got type ${first.type.toString(16)} error ${first.error}`,
      );
    const realm = first.attrs.get(ATTR.REALM)!.toString();
    const nonce = first.attrs.get(ATTR.NONCE)!.toString();
    return await s.request(
      encode(STUN.ALLOCATE, [transport], { username, password, realm, nonce }),
    );
  } finally {
    s.close();
  }
}

/** A STUN Binding request [RFC8489 3]; resolves with the answer. */
export async function binding(port: number, timeoutMs = 5000): Promise<StunMessage> {
  const s = new StunSocket(port);
  try {
    return await s.request(encode(STUN.BINDING, []), timeoutMs);
  } finally {
    s.close();
  }
}

/** The relayed port in an Allocate success (XOR-RELAYED-ADDRESS), if any. */
export function relayedPort(m: StunMessage): number | undefined {
  const a = m.attrs.get(ATTR.XOR_RELAYED_ADDRESS);
  return a ? a.readUInt16BE(2) ^ (MAGIC >>> 16) : undefined;
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface Coturn {
  port: number;
  stop(): Promise<void>;
}

/**
 * Debian's coturn on 127.0.0.1 with the TURN REST API scheme
 * (`use-auth-secret`, `static-auth-secret`), no TLS, no CLI, its own
 * database and pid file in a temporary directory; ready once it answers a
 * STUN Binding request.
 */
export async function startCoturn(secret: string, realm = 'parley.test'): Promise<Coturn> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-coturn-'));
  let proc: ChildProcess | undefined;
  let port = 0;
  const log: string[] = [];
  for (let attempt = 0; attempt < 3 && !proc; attempt++) {
    port = await freeUdpPort();
    const p = spawn(
      'turnserver',
      [
        '-n',
        '--listening-ip=127.0.0.1',
        `--listening-port=${port}`,
        '--relay-ip=127.0.0.1',
        '--use-auth-secret',
        `--static-auth-secret=${secret}`,
        `--realm=${realm}`,
        '--no-tls',
        '--no-dtls',
        '--no-cli',
        '--no-tcp-relay',
        `--userdb=${path.join(dir, 'turndb')}`,
        `--pidfile=${path.join(dir, 'turnserver.pid')}`,
        '--log-file=stdout',
        '--simple-log',
        '--min-port=40000',
        '--max-port=40999',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    p.stdout!.on('data', (d) => log.push(String(d)));
    p.stderr!.on('data', (d) => log.push(String(d)));
    try {
      const deadline = Date.now() + 10_000;
      for (;;) {
        if (p.exitCode !== null)
          throw new Error(`turnserver exited (${p.exitCode}):\n${log.join('')}`);
        try {
          const r = await binding(port, 500);
          if (r.type === STUN.BINDING_OK) break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
        }
      }
      proc = p;
    } catch (err) {
      p.kill('SIGKILL');
      if (attempt === 2) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  return {
    port,
    async stop() {
      const p = proc!;
      if (p.exitCode === null && p.signalCode === null) {
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGTERM');
        const t = setTimeout(() => p.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
