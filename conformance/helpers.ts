// Just over 600 lines: the node launcher (startNode: config, TLS from the test CA, ports from the log,
// kill/restart) and the client helpers every suite imports from here. Next split: startNode into node.ts.
// Shared helpers for the black-box conformance suites: a real node in a child
// process, real @xmpp/client sessions and stanza matchers. The wire-level
// tools (constants, SCRAM client, raw socket) live in wire.ts and are
// re-exported here, so suites import from one place.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import { client, type Client } from '@xmpp/client';
import XmppTlsSocket from '@xmpp/tls/lib/Socket.js';
import { xml, type Element } from '@xmpp/xml';
import { BIN, ROOT, ZERO_PORTS } from './node-args.ts';
import { testCaIfReady, testPki } from './test-ca.ts';

export { xml, type Element };

export * from './wire.ts';
export * from './matchers.ts';
export { issueLeaf, otherCa, testCa, testPki } from './test-ca.ts';
import { rosterGet, rosterItem, type Pred } from './matchers.ts';
import { DOMAIN, NS_ROSTER, ScramClient, type ScramHash } from './wire.ts';

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
  /** pid of the current node process (undefined before the first start) */
  readonly pid: number | undefined;
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
  /** `--log-level`; null: no flag (the config file's log.level applies) */
  logLevel?: string | null;
  /** run through this command instead of `node bin/parley.js` (e.g. ['taskset', '-c', '0', 'bin/parley']) */
  launcher?: string[];
  env?: Record<string, string>;
  /**
   * Put the suite's test certificate (signed by the test CA every client of
   * the suite trusts, conformance/test-ca.ts) into `<dataDir>/tls/` unless
   * one is there. Default true; false lets the node generate its own.
   */
  seedTls?: boolean;
}

/** The suite's certificate into `<dataDir>/tls/`, as the node would have written its own. */
async function seedTestCertificate(dataDir: string): Promise<void> {
  const dir = path.join(dataDir, 'tls');
  if (existsSync(path.join(dir, 'cert.pem')) && existsSync(path.join(dir, 'key.pem'))) return;
  const { ca, leaf } = await testPki();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(dir, 'key.pem'), leaf.key, { mode: 0o600 });
  writeFileSync(path.join(dir, 'cert.pem'), leaf.cert, { mode: 0o600 });
  writeFileSync(path.join(dir, 'ca.pem'), ca.cert, { mode: 0o600 });
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
  opts: { env?: Record<string, string>; input?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    if (opts.input !== undefined) p.stdin!.end(opts.input);
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += d));
    p.stderr!.on('data', (d) => (stderr += d));
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
  // 0700: the node refuses a data directory others can write in (bin/datadir.ts)
  if (opts.config !== undefined || opts.seedTls !== false)
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  let configFile: string | undefined;
  if (opts.config !== undefined) {
    configFile = path.join(dataDir, 'parley.yaml');
    writeFileSync(configFile, opts.config);
  }
  if (opts.seedTls !== false) await seedTestCertificate(dataDir);
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
      const [cmd, ...pre] = opts.launcher ?? [process.execPath, BIN];
      const p = spawn(
        cmd,
        [
          ...pre,
          ...baseArgs,
          '--host',
          '127.0.0.1',
          ...ZERO_PORTS,
          ...(opts.logLevel === null ? [] : ['--log-level', opts.logLevel ?? 'info']),
          'start',
        ],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } },
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
    get pid() {
      return proc?.pid;
    },
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
      // the password through the environment, as docs/configuration.md advises (no warning, not in ps)
      const r = await runCli([...baseArgs, 'user', 'add', name], 30_000, {
        env: { PARLEY_PASSWORD: password },
      });
      if (r.code !== 0)
        throw new Error(`user add ${name} failed (${r.code}): ${r.stderr}${r.stdout}`);
    },
    async dispose() {
      await stop();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
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
  /** the account's domain when not the suite's (federation tests run nodes for other domains) */
  domain?: string;
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

// @xmpp/client takes no TLS options: every TLS socket it makes (direct TLS,
// and the STARTTLS upgrade of @xmpp/starttls) comes from @xmpp/tls's
// Socket.connect(options), which calls tls.connect(options). Give those the
// suite's test CA (conformance/test-ca.ts) when the caller gave no `ca`:
// verification stays on, the name is checked, and only the test CA is
// trusted, so a node serving any other certificate fails the login.
const xmppTlsConnect = XmppTlsSocket.prototype.connect;
XmppTlsSocket.prototype.connect = function (this: XmppTlsSocket, options: tls.ConnectionOptions) {
  const ca = testCaIfReady();
  return xmppTlsConnect.call(this, ca && options.ca === undefined ? { ...options, ca } : options);
};

let idCounter = 0;
export const nextId = (prefix = 'id') =>
  `${prefix}-${++idCounter}-${randomBytes(2).toString('hex')}`;

/** An @xmpp/client session, not started yet (for tests where login must fail). */
export function createClient(opts: ClientOptions): TestClient {
  const scheme = opts.directTls ? 'xmpps' : 'xmpp';
  const mechanism = opts.mechanism;
  const xmpp = client({
    service: opts.service ?? `${scheme}://127.0.0.1:${opts.port}`,
    domain: opts.domain ?? DOMAIN,
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
    bare: `${opts.username}@${opts.domain ?? DOMAIN}`,
    received,
    sent: [],
    errors: [],
    closed,
    async start() {
      openClients.add(tc);
      await xmpp.start();
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

/** A round trip to the server: every stanza sent before has been processed when it resolves [XEP-0199]. */
export async function ping(c: TestClient): Promise<void> {
  const r = await c.request(
    xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })),
  );
  if (r.attrs.type !== 'result') throw new Error(`ping failed: ${r.toString()}`);
}

export { sleep };

/**
 * A new user of `node` asks the node's version [XEP-0092], and /healthz is
 * fetched: asserts both say `version`; returns the /healthz response.
 */
export async function assertReportsVersion(
  node: TestNode,
  version: string,
  resource: string,
): Promise<Response> {
  const user = uniqueName('ver');
  await node.addUser(user, 'pw');
  const c = await xmppClient({ port: node.ports.xmpp, username: user, password: 'pw', resource });
  const r = await c.request(
    xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: 'jabber:iq:version' })),
  );
  assert.equal(r.getChild('query')?.getChildText('version'), version, r.toString());
  const h = await fetch(`http://127.0.0.1:${node.ports.http}/healthz`);
  assert.equal(h.headers.get('x-parley-version'), version);
  return h;
}

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

/**
 * A setup step: log users a and b of `node` in (resource `setup`), make them
 * mutual contacts with befriend, and stop every client again.
 */
export async function makeFriends(
  node: TestNode,
  a: string,
  b: string,
  password: string,
): Promise<void> {
  const login = (username: string) =>
    xmppClient({ port: node.ports.xmpp, username, password, resource: 'setup' });
  const ca = await login(a);
  const cb = await login(b);
  await befriend(ca, cb);
  await stopAllClients();
}

/** A disco#info or disco#items query [XEP-0030 3.1, 4.1] from `c` to `to` (at `node`): the result's <query/>. */
export async function disco(
  c: TestClient,
  kind: 'info' | 'items',
  to: string,
  node?: string,
): Promise<Element> {
  const xmlns = `http://jabber.org/protocol/disco#${kind}`;
  const res = await c.request(
    xml('iq', { type: 'get', to }, xml('query', node === undefined ? { xmlns } : { xmlns, node })),
  );
  return res.getChild('query', xmlns)!;
}
