// The wire-level tools of the conformance suites: protocol constants, a
// SCRAM client on node:crypto, and a raw socket speaking XML by hand for
// assertions on exact bytes. Re-exported by helpers.ts.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { testCa } from './test-ca.ts';
import { Element } from '@xmpp/xml';
import { SaxesParser } from 'saxes';

export const DOMAIN = 'localhost';
export const NS_CLIENT = 'jabber:client';
export const NS_STREAM = 'http://etherx.jabber.org/streams';
export const NS_STREAMS_ERR = 'urn:ietf:params:xml:ns:xmpp-streams';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
export const NS_ROSTER = 'jabber:iq:roster';
export const NS_DELAY = 'urn:xmpp:delay';

// ---------------------------------------------------------------- SCRAM ---

export type ScramHash = 'SHA-1' | 'SHA-256';
const nodeHash = (h: ScramHash) => (h === 'SHA-1' ? 'sha1' : 'sha256');

/** Salted passwords already derived: hash, iterations, salt, password → key. */
const saltedMemo = new Map<string, Buffer>();

/** The client side of SCRAM [RFC5802] with node:crypto, no channel binding. */
export class ScramClient {
  readonly cnonce = randomBytes(18).toString('base64');
  private clientFirstBare = '';
  private expectedServerSignature = '';

  constructor(
    readonly hash: ScramHash,
    readonly username: string,
    readonly password: string,
  ) {}

  clientFirst(): string {
    this.clientFirstBare = `n=${this.username.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${this.cnonce}`;
    return `n,,${this.clientFirstBare}`;
  }

  /** Given server-first-message, the client-final-message. Throws if the server nonce does not extend ours. */
  clientFinal(serverFirst: string): string {
    const attrs = new Map(
      serverFirst.split(',').map((p) => [p[0], p.slice(2)] as [string, string]),
    );
    const nonce = attrs.get('r') ?? '';
    if (!nonce.startsWith(this.cnonce))
      throw new Error(`server nonce ${nonce} does not start with the client nonce`);
    const salt = Buffer.from(attrs.get('s') ?? '', 'base64');
    const iterations = Number(attrs.get('i'));
    const h = nodeHash(this.hash);
    // Many logins of one account (thousands of occupants) derive the same key: once
    const memo = `${h} ${iterations} ${salt.toString('base64')} ${this.password}`;
    let salted = saltedMemo.get(memo);
    if (!salted) {
      salted = pbkdf2Sync(
        Buffer.from(this.password.normalize('NFKC')),
        salt,
        iterations,
        this.hash === 'SHA-1' ? 20 : 32,
        h,
      );
      saltedMemo.set(memo, salted);
    }
    const clientKey = createHmac(h, salted).update('Client Key').digest();
    const storedKey = createHash(h).update(clientKey).digest();
    const withoutProof = `c=${Buffer.from('n,,').toString('base64')},r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const signature = createHmac(h, storedKey).update(authMessage).digest();
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i] ^ signature[i];
    const serverKey = createHmac(h, salted).update('Server Key').digest();
    this.expectedServerSignature = createHmac(h, serverKey).update(authMessage).digest('base64');
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** True when server-final-message carries the server signature we expect [RFC5802 3]. */
  verifyServerFinal(serverFinal: string): boolean {
    return (
      this.expectedServerSignature !== '' && serverFinal === `v=${this.expectedServerSignature}`
    );
  }
}

/** Parse one element strictly (a BOSH response, an IQ read off a raw stream) into ltx Elements (qualified names and declarations kept). */
export function parseStrict(text: string): Element {
  const sax = new SaxesParser({ xmlns: true });
  const stack: Element[] = [];
  let root: Element | undefined;
  sax.on('error', (err) => {
    throw new Error(`response is not namespace-well-formed XML (${err.message}): ${text}`);
  });
  sax.on('opentag', (tag) => {
    const attrs = Object.fromEntries(Object.entries(tag.attributes).map(([k, a]) => [k, a.value]));
    const el = new Element(tag.name, attrs);
    if (stack.length) stack[stack.length - 1].cnode(el);
    else root = el;
    stack.push(el);
  });
  sax.on('text', (t) => {
    if (stack.length) stack[stack.length - 1].t(t);
  });
  sax.on('closetag', () => void stack.pop());
  sax.write(text).close();
  if (!root) throw new Error(`no element in response: ${text}`);
  return root;
}

// --------------------------------------------------------------- raw ------

/** A plain socket speaking XML by hand, for assertions on exact wire bytes. */
export class RawConn {
  /** everything received, decoded as UTF-8 */
  text = '';
  private pos = 0;
  private sock: net.Socket;
  private listeners: (() => void)[] = [];
  private closedFlag = false;
  private closeWaiters: (() => void)[] = [];

  /** the TCP socket under everything (STARTTLS keeps it; undefined with direct TLS) */
  private readonly tcp?: net.Socket;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    if (!(sock instanceof tls.TLSSocket)) this.tcp = sock;
    this.attach(sock);
  }

  /**
   * directTls: verified against the suite's test CA (conformance/test-ca.ts)
   * for DOMAIN; `tls` adds or overrides TLS options (ca, ciphers, …).
   */
  static async connect(
    port: number,
    opts: { directTls?: boolean; tls?: tls.ConnectionOptions; localAddress?: string } = {},
  ): Promise<RawConn> {
    const ca = opts.directTls ? await testCa() : undefined;
    // localAddress: another loopback source (127.0.0.2…) for per-address limits
    const localAddress = opts.localAddress;
    return new Promise((resolve, reject) => {
      const sock = opts.directTls
        ? tls.connect({
            host: '127.0.0.1',
            port,
            servername: DOMAIN,
            ca,
            ...opts.tls,
            ...(localAddress ? { localAddress } : {}),
          } as tls.ConnectionOptions)
        : net.connect({ host: '127.0.0.1', port, localAddress });
      sock.once(opts.directTls ? 'secureConnect' : 'connect', () => {
        sock.off('error', reject);
        const c = new RawConn(sock);
        openRaw.add(c);
        resolve(c);
      });
      sock.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** The socket data flows on now: the TLS socket after STARTTLS or with direct TLS. */
  get socket(): net.Socket {
    return this.sock;
  }

  private attach(sock: net.Socket): void {
    const onData = (d: Buffer) => {
      this.text += d.toString('utf8');
      for (const l of this.listeners.splice(0)) l();
    };
    const onClose = () => {
      if (sock !== this.sock) return;
      this.closedFlag = true;
      for (const l of this.listeners.splice(0)) l();
      for (const w of this.closeWaiters.splice(0)) w();
    };
    sock.on('data', onData);
    sock.on('close', onClose);
    sock.on('error', () => {});
  }

  send(data: string): void {
    this.sock.write(data);
  }

  /** Wait until the unread text matches re; returns the text read up to the end of the match. */
  waitFor(re: RegExp, timeoutMs = 3000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const rest = this.text.slice(this.pos);
        const m = re.exec(rest);
        if (m) {
          clearTimeout(t);
          const end = m.index + m[0].length;
          this.pos += end;
          resolve(rest.slice(0, end));
          return;
        }
        if (this.closedFlag) {
          clearTimeout(t);
          reject(new Error(`connection closed before ${re} matched; unread: ${rest}`));
          return;
        }
        this.listeners.push(check);
      };
      const t = setTimeout(() => {
        const i = this.listeners.indexOf(check);
        if (i !== -1) this.listeners.splice(i, 1);
        reject(new Error(`no ${re} within ${timeoutMs} ms; unread: ${this.text.slice(this.pos)}`));
      }, timeoutMs);
      check();
    });
  }

  /** Everything not read yet. */
  unread(): string {
    return this.text.slice(this.pos);
  }

  /** Send a stream header and return everything up to the end of the stream features. */
  openStream(to = DOMAIN): Promise<string> {
    this.send(
      `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' to='${to}' version='1.0'>`,
    );
    return this.waitFor(/<\/stream:features>|<stream:features\/>/);
  }

  /**
   * STARTTLS [RFC6120 5.4]: request, wait for proceed, upgrade in place,
   * verifying the certificate against the suite's test CA for DOMAIN;
   * `opts` adds or overrides TLS options (ca, ciphers, …).
   */
  async startTls(opts: tls.ConnectionOptions = {}): Promise<void> {
    const ca = await testCa();
    this.send(`<starttls xmlns='${NS_TLS}'/>`);
    await this.waitFor(/<proceed[^>]*\/>/);
    const raw = this.sock;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    const secure = tls.connect({ socket: raw, servername: DOMAIN, ca, ...opts });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.sock = secure;
    this.attach(secure);
  }

  /** SASL with PLAIN or SCRAM; returns the <success/> or <failure/> element text. */
  async auth(
    mechanism: 'PLAIN' | 'SCRAM-SHA-1' | 'SCRAM-SHA-256',
    username: string,
    password: string,
  ): Promise<{ outcome: string; scram?: ScramClient }> {
    if (mechanism === 'PLAIN') {
      this.send(
        `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0${username}\0${password}`).toString('base64')}</auth>`,
      );
      return {
        outcome: await this.waitFor(
          /<success[^>]*(\/>|>[^<]*<\/success>)|<failure[\s\S]*?<\/failure>/,
        ),
      };
    }
    const scram = new ScramClient(
      mechanism === 'SCRAM-SHA-1' ? 'SHA-1' : 'SHA-256',
      username,
      password,
    );
    this.send(
      `<auth xmlns='${NS_SASL}' mechanism='${mechanism}'>${Buffer.from(scram.clientFirst()).toString('base64')}</auth>`,
    );
    const first = await this.waitFor(
      /<challenge[^>]*>([^<]*)<\/challenge>|<failure[\s\S]*?<\/failure>/,
    );
    const challenge = /<challenge[^>]*>([^<]*)<\/challenge>/.exec(first);
    if (!challenge) return { outcome: first, scram };
    this.send(
      `<response xmlns='${NS_SASL}'>${Buffer.from(scram.clientFinal(Buffer.from(challenge[1], 'base64').toString('utf8'))).toString('base64')}</response>`,
    );
    return {
      outcome: await this.waitFor(
        /<success[^>]*(\/>|>[^<]*<\/success>)|<failure[\s\S]*?<\/failure>/,
      ),
      scram,
    };
  }

  private iqSeq = 0;

  /** Send an IQ get/set (`payload` as XML text) and return its answer, parsed. */
  async iq(type: 'get' | 'set', payload: string, timeoutMs = 10_000): Promise<Element> {
    const id = `raw-iq-${++this.iqSeq}`;
    this.send(`<iq type='${type}' id='${id}'>${payload}</iq>`);
    const text = await this.waitFor(
      new RegExp(`<iq[^>]*id=['"]${id}['"][^>]*(/>|>[\\s\\S]*?</iq>)`),
      timeoutMs,
    );
    return parseStrict(text.slice(text.lastIndexOf('<iq')));
  }

  /** Resolves when the server closed the connection. */
  waitClosed(timeoutMs = 3000): Promise<void> {
    if (this.closedFlag) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`connection still open after ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.closeWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  destroy(): void {
    openRaw.delete(this);
    this.sock.destroy();
  }

  /**
   * Cut the TCP connection with a reset (RST), as the kernel does when a client
   * closes a socket with data it has not read: the server sees an error
   * (ECONNRESET) and then the close. Not with direct TLS.
   */
  reset(): void {
    if (!this.tcp) throw new Error('reset() needs a TCP connection (not direct TLS)');
    openRaw.delete(this);
    this.tcp.resetAndDestroy();
  }
}

const openRaw = new Set<RawConn>();

/** Destroy every raw connection still open; call from afterEach/after hooks. */
export function closeAllRaw(): void {
  for (const c of [...openRaw]) c.destroy();
}

/**
 * A raw connection through STARTTLS, SASL and bind; returns it ready for stanzas.
 * `tls: false` skips STARTTLS (a node with `xmpp.requireTls: false`, for many cheap logins).
 */
export async function rawLogin(
  port: number,
  username: string,
  password: string,
  mechanism: 'PLAIN' | 'SCRAM-SHA-1' | 'SCRAM-SHA-256' = 'PLAIN',
  resource = 'raw',
  opts: { tls?: boolean } = {},
): Promise<RawConn> {
  const c = await RawConn.connect(port);
  await c.openStream();
  if (opts.tls !== false) {
    await c.startTls();
    await c.openStream();
  }
  const { outcome } = await c.auth(mechanism, username, password);
  if (!outcome.includes('<success')) throw new Error(`login failed: ${outcome}`);
  await c.openStream();
  c.send(
    `<iq type='set' id='bind1'><bind xmlns='${NS_BIND}'><resource>${resource}</resource></bind></iq>`,
  );
  await c.waitFor(/<\/iq>/);
  return c;
}

/** A raw stream through STARTTLS, not authenticated (from `localAddress`); the features offered after TLS. */
export async function rawUnauthenticated(
  port: number,
  localAddress?: string,
): Promise<{ c: RawConn; features: string }> {
  const c = await RawConn.connect(port, { localAddress });
  await c.openStream();
  await c.startTls();
  const features = await c.openStream();
  return { c, features };
}
