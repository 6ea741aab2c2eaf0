// A minimal hand-written XMPP c2s client for load generation: raw sockets,
// regex framing during login, a `<body>` scanner afterwards. Not a general
// client: it trusts the server and checks only what the benchmark needs.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

export interface XmppLogin {
  host: string;
  port: number;
  domain: string;
  user: string;
  password: string;
  resource: string;
  /** STARTTLS before authenticating */
  tls: boolean;
  mech: 'SCRAM-SHA-1' | 'SCRAM-SHA-256' | 'PLAIN';
  localAddress?: string;
  /** send initial presence (and wait for a ping answer so it is processed) */
  presence: boolean;
  timeoutMs?: number;
}

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';

/** Salted passwords per (hash, password, salt, iterations): clients cache these too, and it keeps PBKDF2 out of the measurement. */
const saltedCache = new Map<string, Buffer>();

function salted(
  hash: 'sha1' | 'sha256',
  password: string,
  salt: string,
  iterations: number,
): Buffer {
  const key = `${hash}\0${password}\0${salt}\0${iterations}`;
  let v = saltedCache.get(key);
  if (!v) {
    v = pbkdf2Sync(
      password,
      Buffer.from(salt, 'base64'),
      iterations,
      hash === 'sha1' ? 20 : 32,
      hash,
    );
    saltedCache.set(key, v);
  }
  return v;
}

export class XmppClient {
  sock: net.Socket;
  private buf = '';
  private waiter?: {
    re: RegExp;
    resolve: (m: RegExpExecArray) => void;
    reject: (e: Error) => void;
  };
  private chat = false;
  /** called with the text of each `<body>` once in chat mode */
  onBody?: (body: string) => void;
  closed = false;
  jid = '';

  private constructor(sock: net.Socket) {
    this.sock = sock;
    this.attach(sock);
  }

  private attach(s: net.Socket): void {
    s.setEncoding('utf8');
    s.on('data', (d: string) => this.data(d));
    s.on('error', (e) => this.fail(e));
    s.on('close', () => {
      this.closed = true;
      this.fail(new Error('connection closed'));
    });
  }

  private fail(e: Error): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(e);
  }

  private data(d: string): void {
    this.buf += d;
    if (this.chat) {
      this.scanBodies();
      if (this.sm) this.answerAckRequests(d);
      return;
    }
    if (this.waiter) this.check();
  }

  /** Stream management [XEP-0198]: messages received since <enabled/>, and the tail of the last chunk (an <r/> split across chunks). */
  private sm?: { received: number; tail: string; sent: number; requestEvery: number };

  /** Enable stream management (no resumption) and wait for <enabled/>; in chat mode, count, answer <r/> and ask for acks. */
  async enableSm(requestEvery: number): Promise<void> {
    this.write(`<enable xmlns='urn:xmpp:sm:3'/>`);
    await this.waitFor(/<enabled [^>]*\/>/, 20_000);
    this.sm = { received: 0, tail: '', sent: 0, requestEvery };
  }

  private answerAckRequests(d: string): void {
    const sm = this.sm!;
    const text = sm.tail + d;
    let n = 0;
    for (let i = text.indexOf('<r xmlns'); i !== -1; i = text.indexOf('<r xmlns', i + 1)) n++;
    sm.tail = text.slice(-8);
    // The server asks every few stanzas; h counts the bodies scanned so far (never more than arrived).
    if (n > 0) this.sock.write(`<a xmlns='urn:xmpp:sm:3' h='${sm.received}'/>`);
  }

  /** A chat stanza out; with stream management, an <r/> after every `requestEvery`. */
  sendChat(stanza: string): void {
    const sm = this.sm;
    if (sm && ++sm.sent % sm.requestEvery === 0)
      this.sock.write(`${stanza}<r xmlns='urn:xmpp:sm:3'/>`);
    else this.sock.write(stanza);
  }

  private scanBodies(): void {
    const b = this.buf;
    let pos = 0;
    for (;;) {
      const i = b.indexOf('<body>', pos);
      if (i === -1) break;
      const j = b.indexOf('</body>', i + 6);
      if (j === -1) {
        pos = i;
        this.buf = b.slice(pos);
        return;
      }
      if (this.sm) this.sm.received++;
      this.onBody?.(b.slice(i + 6, j));
      pos = j + 7;
    }
    // keep a short tail in case '<body>' was split across chunks
    this.buf = b.length - pos > 8 ? b.slice(b.length - 8) : b.slice(pos);
  }

  private check(): void {
    const w = this.waiter;
    if (!w) return;
    if (/<stream:error|<failure/.test(this.buf)) {
      this.waiter = undefined;
      w.reject(new Error(`server refused: ${this.buf.slice(0, 300)}`));
      return;
    }
    const m = w.re.exec(this.buf);
    if (m) {
      this.waiter = undefined;
      this.buf = this.buf.slice(m.index + m[0].length);
      w.resolve(m);
    }
  }

  /** Wait for a regex on what arrived since the last match (before chat mode). */
  waitFor(re: RegExp, ms: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`timeout waiting for ${re} (have ${this.buf.slice(0, 200)})`));
      }, ms);
      this.waiter = {
        re,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
      this.check();
    });
  }

  write(s: string): void {
    this.sock.write(s);
  }

  /** Send an IQ with this id and wait for the answer (result or error) with the same id; returns its XML. */
  async request(stanza: string, id: string, ms = 30_000): Promise<string> {
    this.write(stanza);
    const m = await this.waitFor(
      new RegExp(`<iq[^>]*\\bid=['"]${id}['"][^>]*(?:/>|>[\\s\\S]*?</iq>)`),
      ms,
    );
    return m[0];
  }

  /** Switch to body scanning (after login). */
  chatMode(onBody: (body: string) => void): void {
    this.onBody = onBody;
    this.chat = true;
    this.scanBodies();
  }

  destroy(): void {
    this.sock.destroy();
  }

  /** connect + (STARTTLS) + SASL + bind (+ presence). */
  static async login(o: XmppLogin): Promise<XmppClient> {
    const ms = o.timeoutMs ?? 30_000;
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: o.host, port: o.port, localAddress: o.localAddress });
      s.setNoDelay(true);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    const c = new XmppClient(sock);
    const header = `<?xml version='1.0'?><stream:stream to='${o.domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
    const features = /<\/stream:features>/;
    c.write(header);
    await c.waitFor(features, ms);
    if (o.tls) {
      c.write(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
      await c.waitFor(/<proceed[^>]*\/>/, ms);
      sock.removeAllListeners('data');
      sock.removeAllListeners('close');
      sock.removeAllListeners('error');
      const ts = tls.connect({ socket: sock, rejectUnauthorized: false, servername: o.domain });
      await new Promise<void>((resolve, reject) => {
        ts.once('secureConnect', () => resolve());
        ts.once('error', reject);
      });
      c.sock = ts;
      c.buf = '';
      c.attach(ts);
      c.write(header);
      await c.waitFor(features, ms);
    }
    if (o.mech === 'PLAIN') {
      const ir = Buffer.from(`\0${o.user}\0${o.password}`).toString('base64');
      c.write(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${ir}</auth>`);
      await c.waitFor(/<success[^>]*(\/>|>[^<]*<\/success>)/, ms);
    } else {
      const hash = o.mech === 'SCRAM-SHA-1' ? 'sha1' : 'sha256';
      const cnonce = randomBytes(12).toString('base64');
      const bare = `n=${o.user},r=${cnonce}`;
      c.write(
        `<auth xmlns='${NS_SASL}' mechanism='${o.mech}'>${Buffer.from(`n,,${bare}`).toString('base64')}</auth>`,
      );
      const ch = await c.waitFor(/<challenge[^>]*>([^<]*)<\/challenge>/, ms);
      const serverFirst = Buffer.from(ch[1], 'base64').toString('utf8');
      const a = new Map(serverFirst.split(',').map((p) => [p[0], p.slice(2)] as [string, string]));
      const sp = salted(hash, o.password, a.get('s')!, Number(a.get('i')));
      const clientKey = createHmac(hash, sp).update('Client Key').digest();
      const storedKey = createHash(hash).update(clientKey).digest();
      const withoutProof = `c=biws,r=${a.get('r')}`;
      const sig = createHmac(hash, storedKey)
        .update(`${bare},${serverFirst},${withoutProof}`)
        .digest();
      for (let i = 0; i < sig.length; i++) sig[i] ^= clientKey[i];
      c.write(
        `<response xmlns='${NS_SASL}'>${Buffer.from(`${withoutProof},p=${sig.toString('base64')}`).toString('base64')}</response>`,
      );
      await c.waitFor(/<success[^>]*(\/>|>[^<]*<\/success>)/, ms);
    }
    c.buf = '';
    c.write(header);
    await c.waitFor(features, ms);
    c.write(
      `<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${o.resource}</resource></bind></iq>`,
    );
    const b = await c.waitFor(/<jid>([^<]*)<\/jid>/, ms);
    c.jid = b[1];
    await c.waitFor(/<\/iq>/, ms);
    if (o.presence) {
      c.write(`<presence/><iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>`);
      await c.waitFor(/<iq[^>]*id=['"]p1['"]/, ms);
    }
    c.buf = '';
    return c;
  }
}

/** A chat message to a bare JID; digits and spaces only in the body, so no escaping. */
export function chatStanza(to: string, body: string): string {
  return `<message to='${to}' type='chat'><body>${body}</body></message>`;
}
