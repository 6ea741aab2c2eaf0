// Shared helpers for the black-box conformance suites: a real node in a child
// process, real @xmpp/client sessions, and a raw socket for exact wire bytes.
// Longer than 600 lines on purpose: it is the one import surface every
// conformance suite shares (node, clients, raw wire, SCRAM client, matchers),
// and each part is small; splitting would only scatter the imports.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { client, type Client } from '@xmpp/client';
import { xml, type Element } from '@xmpp/xml';

export { xml, type Element };

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'parley.js');

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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A unique name for an account, so tests never share state by accident. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}

// ---------------------------------------------------------------- node ----

export interface NodePorts {
  /** c2s with STARTTLS */
  xmpp: number;
  /** direct TLS [XEP-0368] */
  xmpps: number;
  /** HTTP: WebSocket, BOSH, /metrics, pages */
  http: number;
  https: number;
}

export interface TestNode {
  ports: NodePorts;
  dataDir: string;
  /** every stdout/stderr line of the current process (for diagnosis) */
  log: string[];
  /** SIGKILL, no shutdown at all */
  kill9(): Promise<void>;
  /** SIGTERM and wait for the process to exit */
  stop(): Promise<void>;
  /** start again on the same data dir (ports may change) */
  restart(): Promise<void>;
  /** `parley user add` through the CLI subprocess */
  addUser(name: string, password: string): Promise<void>;
  /** stop (if running) and delete the data dir when this helper created it */
  dispose(): Promise<void>;
}

export interface StartNodeOptions {
  dataDir?: string;
  /** YAML text; written to <dataDir>/parley.yaml and passed with --config */
  config?: string;
  logLevel?: string;
}

const liveProcesses = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of liveProcesses) p.kill('SIGKILL');
});

function waitExit(proc: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), timeoutMs);
    proc.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export function runCli(
  args: string[],
  timeoutMs = 30_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`parley ${args.join(' ')}: timed out`));
    }, timeoutMs);
    p.on('error', reject);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Spawn `bin/parley.js start` with port 0 everywhere; resolves once "parley node ready" is logged. */
export async function startNode(opts: StartNodeOptions = {}): Promise<TestNode> {
  const ownDir = !opts.dataDir;
  const dataDir = opts.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'parley-conf-'));
  mkdirSync(dataDir, { recursive: true });
  let configFile: string | undefined;
  if (opts.config !== undefined) {
    configFile = path.join(dataDir, 'parley.yaml');
    writeFileSync(configFile, opts.config);
  }
  const baseArgs = [
    '--data-dir',
    dataDir,
    '--domain',
    DOMAIN,
    ...(configFile ? ['--config', configFile] : []),
  ];
  let proc: ChildProcess | undefined;
  const ports: NodePorts = { xmpp: 0, xmpps: 0, http: 0, https: 0 };
  const log: string[] = [];

  const launch = (): Promise<void> =>
    new Promise((resolve, reject) => {
      log.length = 0;
      const p = spawn(
        process.execPath,
        [
          BIN,
          ...baseArgs,
          '--host',
          '127.0.0.1',
          '--xmpp-port',
          '0',
          '--xmpps-port',
          '0',
          '--mqtt-port',
          '0',
          '--mqtts-port',
          '0',
          '--http-port',
          '0',
          '--https-port',
          '0',
          '--log-level',
          opts.logLevel ?? 'info',
          'start',
        ],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      proc = p;
      liveProcesses.add(p);
      let ready = false;
      let buf = '';
      const timer = setTimeout(() => {
        p.kill('SIGKILL');
        reject(new Error(`node not ready in time; log:\n${log.join('\n')}`));
      }, 30_000);
      p.stdout!.setEncoding('utf8');
      p.stdout!.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) !== -1) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          log.push(line);
          if (ready) continue;
          let rec: any;
          try {
            rec = JSON.parse(line);
          } catch {
            continue;
          }
          if (rec.msg === 'parley node ready') {
            ready = true;
            clearTimeout(timer);
            ports.xmpp = rec.xmpp?.tcp;
            ports.xmpps = rec.xmpp?.directTls;
            ports.http = rec.web?.http;
            ports.https = rec.web?.https;
            resolve();
          }
        }
      });
      p.stderr!.setEncoding('utf8');
      p.stderr!.on('data', (d: string) =>
        log.push(
          ...d
            .split('\n')
            .filter(Boolean)
            .map((l) => `stderr: ${l}`),
        ),
      );
      p.once('exit', (code, signal) => {
        liveProcesses.delete(p);
        if (!ready) {
          clearTimeout(timer);
          reject(
            new Error(
              `node exited before ready (code ${code}, signal ${signal}); log:\n${log.join('\n')}`,
            ),
          );
        }
      });
    });

  const stop = async (): Promise<void> => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGTERM');
    if (!(await waitExit(p, 10_000))) {
      p.kill('SIGKILL');
      await waitExit(p, 5_000);
    }
  };

  await launch();
  return {
    ports,
    dataDir,
    log,
    async kill9() {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      p.kill('SIGKILL');
      await waitExit(p, 5_000);
    },
    stop,
    async restart() {
      await stop();
      await launch();
    },
    async addUser(name: string, password: string) {
      const r = await runCli([...baseArgs, 'user', 'add', name, password]);
      if (r.code !== 0)
        throw new Error(`user add ${name} failed (${r.code}): ${r.stderr}${r.stdout}`);
    },
    async dispose() {
      await stop();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- SCRAM ---

type ScramHash = 'SHA-1' | 'SHA-256';
const nodeHash = (h: ScramHash) => (h === 'SHA-1' ? 'sha1' : 'sha256');

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
    const salted = pbkdf2Sync(
      Buffer.from(this.password.normalize('NFKC')),
      salt,
      iterations,
      this.hash === 'SHA-1' ? 20 : 32,
      h,
    );
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

/**
 * A SCRAM mechanism in the shape the `saslmechanisms` factory of @xmpp/client
 * expects (the library ships SCRAM-SHA-1 and PLAIN only).
 */
function scramMechanism(hash: ScramHash, onCreate: (m: { scram?: ScramClient }) => void) {
  function Mechanism(this: { scram?: ScramClient; serverFirst?: string; stage: string }) {
    this.stage = 'first';
    onCreate(this);
  }
  Mechanism.prototype.name = `SCRAM-${hash}`;
  Mechanism.prototype.clientFirst = true;
  Mechanism.prototype.response = function (
    this: any,
    cred: { username: string; password: string },
  ): string {
    if (this.stage === 'first') {
      this.scram = new ScramClient(hash, cred.username, cred.password);
      onCreate(this);
      this.stage = 'final';
      return this.scram.clientFirst();
    }
    return this.scram.clientFinal(this.serverFirst);
  };
  Mechanism.prototype.challenge = function (this: any, chal: string) {
    this.serverFirst = Buffer.from(chal, 'latin1').toString('utf8');
    return this;
  };
  return Mechanism;
}

// ---------------------------------------------------------- @xmpp/client ---

export type Pred = (el: Element) => boolean;

export interface ClientOptions {
  port: number;
  username: string;
  password: string;
  /** requested resource; absent: the server generates one */
  resource?: string;
  /** force a SASL mechanism: SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN */
  mechanism?: 'SCRAM-SHA-256' | 'SCRAM-SHA-1' | 'PLAIN';
  /** connect with direct TLS [XEP-0368] (port is then the xmpps port) */
  directTls?: boolean;
  /** a whole service URL instead (e.g. `ws://127.0.0.1:5280/xmpp-websocket`); port is then ignored */
  service?: string;
  timeoutMs?: number;
}

export interface TestClient {
  xmpp: Client;
  /** full JID after bind */
  jid: string;
  bare: string;
  /** every element received since the socket opened, in order */
  received: Element[];
  /** every element sent by the library */
  sent: Element[];
  errors: Error[];
  /** the SCRAM exchange when SCRAM-SHA-256 was used */
  scram?: ScramClient;
  start(): Promise<void>;
  /** resolves with (and consumes) the first not yet consumed element matching pred */
  waitFor(pred: Pred, timeoutMs?: number, what?: string): Promise<Element>;
  /** waits ms and fails if a not yet consumed element matches */
  expectNone(pred: Pred, ms?: number, what?: string): Promise<void>;
  /** forget everything not yet consumed */
  drain(): void;
  send(el: Element): Promise<void>;
  /** send an iq (id added if missing) and wait for its result or error */
  request(el: Element, timeoutMs?: number): Promise<Element>;
  /** close the stream cleanly */
  stop(): Promise<void>;
  /** drop the TCP connection without closing the stream */
  drop(): void;
  /** resolves once the socket closed */
  closed: Promise<void>;
}

const openClients = new Set<TestClient>();

// The node's certificate is self-signed; @xmpp/client has no TLS option, so
// NODE_TLS_REJECT_UNAUTHORIZED=0 is set only while clients connect.
let insecureDepth = 0;
let savedTlsEnv: string | undefined;
async function withInsecureTls<T>(fn: () => Promise<T>): Promise<T> {
  if (insecureDepth++ === 0) {
    savedTlsEnv = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  }
  try {
    return await fn();
  } finally {
    if (--insecureDepth === 0) {
      if (savedTlsEnv === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = savedTlsEnv;
    }
  }
}

let idCounter = 0;
export const nextId = (prefix = 'id') =>
  `${prefix}-${++idCounter}-${randomBytes(2).toString('hex')}`;

/** An @xmpp/client session, not started yet (for tests where login must fail). */
export function createClient(opts: ClientOptions): TestClient {
  const scheme = opts.directTls ? 'xmpps' : 'xmpp';
  const mechanism = opts.mechanism;
  const xmpp = client({
    service: opts.service ?? `${scheme}://127.0.0.1:${opts.port}`,
    domain: DOMAIN,
    resource: opts.resource,
    timeout: opts.timeoutMs ?? 5000,
    credentials: async (
      authenticate: (c: unknown, m: string) => Promise<void>,
      mechanisms: string[],
    ) => {
      const m = mechanism ?? mechanisms[0];
      if (!mechanisms.includes(m))
        throw new Error(
          `mechanism ${m} not offered; offered and supported: ${mechanisms.join(' ')}`,
        );
      await authenticate({ username: opts.username, password: opts.password }, m);
    },
  });
  xmpp.reconnect.stop(); // a kicked session must stay kicked
  const tc = {} as TestClient;
  // Add SCRAM-SHA-256 after the library's own mechanisms (its default choice stays SCRAM-SHA-1).
  xmpp.saslFactory._mechs.push({
    name: 'SCRAM-SHA-256',
    mech: scramMechanism('SHA-256', (m) => {
      if (m.scram) tc.scram = m.scram;
    }),
  });
  // Answer roster pushes like a real client [RFC6121 2.1.6].
  xmpp.iqCallee.set(NS_ROSTER, 'query', () => true);

  const received: Element[] = [];
  const inbox: Element[] = [];
  const waiters: { pred: Pred; resolve: (el: Element) => void }[] = [];
  let rawSocket: net.Socket | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));

  xmpp.on('element', (el: Element) => {
    received.push(el);
    const i = waiters.findIndex((w) => w.pred(el));
    if (i !== -1) waiters.splice(i, 1)[0].resolve(el);
    else inbox.push(el);
  });
  xmpp.on('send', (el: Element) => tc.sent.push(el));
  xmpp.on('error', (err: Error) => tc.errors.push(err));
  xmpp.on('status', (status: string) => {
    if (status === 'connect' && xmpp.socket instanceof net.Socket) rawSocket = xmpp.socket;
    if (status === 'disconnect') resolveClosed();
  });

  Object.assign(tc, {
    xmpp,
    jid: '',
    bare: `${opts.username}@${DOMAIN}`,
    received,
    sent: [],
    errors: [],
    closed,
    async start() {
      openClients.add(tc);
      await withInsecureTls(() => xmpp.start());
      tc.jid = xmpp.jid!.toString();
      tc.bare = xmpp.jid!.bare().toString();
    },
    waitFor(pred: Pred, timeoutMs = 3000, what = 'element'): Promise<Element> {
      const i = inbox.findIndex(pred);
      if (i !== -1) return Promise.resolve(inbox.splice(i, 1)[0]);
      return new Promise((resolve, reject) => {
        const w = {
          pred,
          resolve: (el: Element) => {
            clearTimeout(t);
            resolve(el);
          },
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          const recent = inbox
            .slice(-8)
            .map((e) => e.toString())
            .join('\n  ');
          reject(
            new Error(
              `${tc.jid || opts.username}: no ${what} within ${timeoutMs} ms; unconsumed:\n  ${recent || '(none)'}`,
            ),
          );
        }, timeoutMs);
        waiters.push(w);
      });
    },
    async expectNone(pred: Pred, ms = 400, what = 'element') {
      await sleep(ms);
      const hit = inbox.find(pred);
      if (hit) throw new Error(`${tc.jid || opts.username}: unexpected ${what}: ${hit.toString()}`);
    },
    drain() {
      inbox.length = 0;
    },
    async send(el: Element) {
      await xmpp.send(el);
    },
    async request(el: Element, timeoutMs = 3000) {
      el.attrs.id ??= nextId('iq');
      const id = el.attrs.id;
      const reply = tc.waitFor(
        (e) =>
          e.name === 'iq' &&
          e.attrs.id === id &&
          (e.attrs.type === 'result' || e.attrs.type === 'error'),
        timeoutMs,
        `reply to iq ${id}`,
      );
      await xmpp.send(el);
      return reply;
    },
    async stop() {
      openClients.delete(tc);
      if (xmpp.status === 'offline' || xmpp.status === 'disconnect') return;
      await Promise.race([xmpp.stop().catch(() => {}), sleep(3000)]);
      tc.drop();
    },
    drop() {
      openClients.delete(tc);
      const s = xmpp.socket?.socket ?? xmpp.socket;
      if (s && typeof s.destroy === 'function') s.destroy();
      else if (s && typeof s.terminate === 'function') s.terminate(); // a `ws` WebSocket
      rawSocket?.destroy();
    },
  });
  return tc;
}

/** Log in with @xmpp/client (STARTTLS or direct TLS, SASL, bind). */
export async function xmppClient(opts: ClientOptions): Promise<TestClient> {
  const tc = createClient(opts);
  try {
    await tc.start();
  } catch (err) {
    tc.drop();
    throw err;
  }
  return tc;
}

/** Stop every client still open; call from afterEach/after hooks. */
export async function stopAllClients(): Promise<void> {
  const all = [...openClients];
  openClients.clear();
  await Promise.all(all.map((c) => c.stop().catch(() => c.drop())));
  for (const c of all) c.drop();
}

// ---------------------------------------------------------- predicates ---

type AttrSpec = Record<string, string | undefined | RegExp>;

function attrsMatch(el: Element, attrs: AttrSpec): boolean {
  for (const [k, v] of Object.entries(attrs)) {
    const actual = el.attrs[k];
    if (v === undefined) {
      if (actual !== undefined) return false;
    } else if (v instanceof RegExp) {
      if (actual === undefined || !v.test(actual)) return false;
    } else if (actual !== v) return false;
  }
  return true;
}

/** A stanza of this name whose attributes equal attrs (undefined = must be absent). */
export const isStanza =
  (name: 'message' | 'presence' | 'iq', attrs: AttrSpec = {}): Pred =>
  (el) =>
    el.name === name && attrsMatch(el, attrs);

export const isPresence = (attrs: AttrSpec = {}) => isStanza('presence', attrs);
export const isMessage = (attrs: AttrSpec = {}) => isStanza('message', attrs);

/** A roster push [RFC6121 2.1.6] carrying the item for jid. */
export const isRosterPush =
  (jid?: string): Pred =>
  (el) => {
    if (el.name !== 'iq' || el.attrs.type !== 'set') return false;
    const q = el.getChild('query', NS_ROSTER);
    if (!q) return false;
    return jid === undefined || q.getChildren('item').some((i) => i.attrs.jid === jid);
  };

/** The single roster item of a push or result. */
export function rosterItem(el: Element, jid: string): Element | undefined {
  return el
    .getChild('query', NS_ROSTER)
    ?.getChildren('item')
    .find((i) => i.attrs.jid === jid);
}

/** The defined condition of a stanza error child, with its type. */
export function stanzaError(el: Element): { type?: string; condition?: string } {
  const err = el.getChild('error');
  if (!err) return {};
  const cond = err.getChildElements().find((c) => c.getNS() === NS_STANZAS && c.name !== 'text');
  return { type: err.attrs.type, condition: cond?.name };
}

export const isStreamError =
  (condition?: string): Pred =>
  (el) =>
    el.is('error', NS_STREAM) &&
    (condition === undefined || el.getChild(condition, NS_STREAMS_ERR) !== undefined);

/** Initial presence, with optional priority/show/status. */
export function presence(
  opts: { priority?: number; show?: string; status?: string; to?: string; type?: string } = {},
): Element {
  const p = xml('presence', { to: opts.to, type: opts.type });
  if (opts.show) p.append(xml('show', {}, opts.show));
  if (opts.status) p.append(xml('status', {}, opts.status));
  if (opts.priority !== undefined) p.append(xml('priority', {}, String(opts.priority)));
  return p;
}

export const rosterGet = (ver?: string) =>
  xml('iq', { type: 'get' }, xml('query', { xmlns: NS_ROSTER, ver }));

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

  private constructor(sock: net.Socket) {
    this.sock = sock;
    this.attach(sock);
  }

  static connect(port: number, opts: { directTls?: boolean } = {}): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const sock = opts.directTls
        ? tls.connect({ host: '127.0.0.1', port, servername: DOMAIN, rejectUnauthorized: false })
        : net.connect({ host: '127.0.0.1', port });
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

  /** STARTTLS [RFC6120 5.4]: request, wait for proceed, upgrade in place. */
  async startTls(): Promise<void> {
    this.send(`<starttls xmlns='${NS_TLS}'/>`);
    await this.waitFor(/<proceed[^>]*\/>/);
    const raw = this.sock;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    const secure = tls.connect({ socket: raw, servername: DOMAIN, rejectUnauthorized: false });
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
}

const openRaw = new Set<RawConn>();

/** Destroy every raw connection still open; call from afterEach/after hooks. */
export function closeAllRaw(): void {
  for (const c of [...openRaw]) c.destroy();
}

/** A raw connection through STARTTLS, SASL and bind; returns it ready for stanzas. */
export async function rawLogin(
  port: number,
  username: string,
  password: string,
  mechanism: 'PLAIN' | 'SCRAM-SHA-1' | 'SCRAM-SHA-256' = 'PLAIN',
  resource = 'raw',
): Promise<RawConn> {
  const c = await RawConn.connect(port);
  await c.openStream();
  await c.startTls();
  await c.openStream();
  const { outcome } = await c.auth(mechanism, username, password);
  if (!outcome.includes('<success')) throw new Error(`login failed: ${outcome}`);
  await c.openStream();
  c.send(
    `<iq type='set' id='bind1'><bind xmlns='${NS_BIND}'><resource>${resource}</resource></bind></iq>`,
  );
  await c.waitFor(/<\/iq>/);
  return c;
}

/** A round trip to the server: every stanza sent before has been processed when it resolves [XEP-0199]. */
export async function ping(c: TestClient): Promise<void> {
  const r = await c.request(
    xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })),
  );
  if (r.attrs.type !== 'result') throw new Error(`ping failed: ${r.toString()}`);
}

export { sleep };

/**
 * Make a and b mutually subscribed through the protocol itself (subscribe /
 * subscribed both ways, RFC 6121 3.1), waiting for the server after each step.
 */
export async function befriend(a: TestClient, b: TestClient): Promise<void> {
  await a.send(xml('presence', { to: b.bare, type: 'subscribe' }));
  await ping(a);
  await b.send(xml('presence', { to: a.bare, type: 'subscribed' }));
  await ping(b);
  await b.send(xml('presence', { to: a.bare, type: 'subscribe' }));
  await ping(b);
  await a.send(xml('presence', { to: b.bare, type: 'subscribed' }));
  await ping(a);
  const r = await a.request(rosterGet());
  const item = rosterItem(r, b.bare);
  if (item?.attrs.subscription !== 'both')
    throw new Error(`befriend ${a.bare} and ${b.bare} failed: ${r.toString()}`);
}
