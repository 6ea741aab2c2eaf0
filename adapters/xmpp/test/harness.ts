/**
 * In-memory wire harness for the XMPP adapter (aedes `test/helper.js` style):
 * a real Broker over MemoryStorage and the single-node cluster, real
 * XmppConnections, and a fake Transport per client that records every byte the
 * server writes and lets the test push bytes in. No socket, no TLS: `secure`
 * is true so SASL PLAIN and SCRAM are offered without STARTTLS.
 */
import assert from 'node:assert/strict';
import xmlLib, { type Element } from '@xmpp/xml';
import { SaxesParser } from 'saxes';
import { Broker, type BrokerLimits } from '../../../broker/broker.ts';
import type { CloseReason } from '../../../broker/errors.ts';
import offline from '../../../broker/modules/offline.ts';
import { LocalBus, LocalRegistry } from '../../../cluster/local.ts';
import { MemoryStorage } from '../../../storage/memory.ts';
import type { Storage } from '../../../storage/types.ts';
import { XmppConnection, type Transport } from '../connection.ts';
import { xmppModules } from '../index.ts';
import { defaultXmppOptions, type XmppOptions } from '../options.ts';

export const DOMAIN = 'localhost';
export const NS_CLIENT = 'jabber:client';
export const NS_STREAM = 'http://etherx.jabber.org/streams';
export const NS_STREAMS_ERR = 'urn:ietf:params:xml:ns:xmpp-streams';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';

/** The stream header a well-behaved client sends [RFC6120 4.7]. */
export const HEADER = `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' to='${DOMAIN}' version='1.0'>`;

/** ltx's streaming parser (the one xmpp.js clients use); the local typings omit it. */
interface LtxParser {
  on(event: 'element', fn: (el: Element) => void): void;
  on(event: 'start' | 'end', fn: (el: Element) => void): void;
  on(event: 'error', fn: (err: Error) => void): void;
  write(data: string): void;
}
const ClientParser = (xmlLib as unknown as { Parser: new () => LtxParser }).Parser;

let ipCounter = 0;

/** A Transport that records writes; nothing is ever buffered. */
export class FakeTransport implements Transport {
  readonly kind = 'memory';
  readonly remoteAddress: string;
  secure = true;
  readonly canStartTls = false;
  /** everything the server wrote, in order */
  readonly writes: string[] = [];
  ended = false;
  /** what bufferedAmount() reports, to simulate a slow reader */
  buffered = 0;
  /** the connection asked to stop reading (backpressure, rate limit) */
  paused = false;
  private readonly onWrite: () => void;

  constructor(onWrite: () => void, remoteAddress?: string) {
    this.onWrite = onWrite;
    this.remoteAddress =
      remoteAddress ?? `10.0.${Math.floor(++ipCounter / 250)}.${ipCounter % 250}`;
  }

  write(data: string): void {
    // Writes after end() are kept: expectStreamError() fails on anything after </stream:stream>.
    this.writes.push(data);
    this.onWrite();
  }

  openStream(a: { id: string; from: string; to?: string }): void {
    const to = a.to ? ` to='${a.to}'` : '';
    this.write(
      `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='${a.id}' from='${a.from}'${to} version='1.0' xml:lang='en'>`,
    );
  }

  closeStream(errorXml?: string): void {
    this.write(`${errorXml ?? ''}</stream:stream>`);
  }

  keepalive(): void {
    this.write(' ');
  }

  bufferedAmount(): number {
    return this.buffered;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  startTls(): Promise<void> {
    return Promise.reject(new Error('no TLS in memory'));
  }

  end(): void {
    this.ended = true;
    this.onWrite();
  }
}

type Matcher = RegExp | ((text: string) => boolean);

/** One client connection: push XML in, wait for what comes out. */
export class Client {
  readonly conn: XmppConnection;
  readonly transport: FakeTransport;
  /** offset in output() up to which expect() has consumed */
  private cursor = 0;
  private waiters: (() => void)[] = [];
  private closedFlag = false;

  constructor(harness: Harness, opts: { remoteAddress?: string; secure?: boolean } = {}) {
    this.transport = new FakeTransport(() => this.wake(), opts.remoteAddress);
    if (opts.secure !== undefined) this.transport.secure = opts.secure;
    this.conn = new XmppConnection(harness.broker, this.transport, harness.xmppOptions, () => {
      this.closedFlag = true;
      this.wake();
    });
  }

  /** Everything written so far. */
  output(): string {
    return this.transport.writes.join('');
  }

  /** Output not yet consumed by expect(). */
  pending(): string {
    return this.output().slice(this.cursor);
  }

  /** Push bytes or text into the connection, as the socket would. */
  send(data: string | Buffer): void {
    this.conn.data(data);
  }

  /**
   * Wait until unconsumed output matches; consume up to the end of the match
   * (regex) or all of it (predicate). Returns the matched text.
   */
  async expect(matcher: Matcher, timeout = 2000): Promise<string> {
    const deadline = Date.now() + timeout;
    for (;;) {
      const rest = this.pending();
      if (matcher instanceof RegExp) {
        const m = matcher.exec(rest);
        if (m) {
          this.cursor += m.index + m[0].length;
          return m[0];
        }
      } else if (matcher(rest)) {
        this.cursor += rest.length;
        return rest;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new assert.AssertionError({
          message: `timed out waiting for ${String(matcher)}; unconsumed output:\n${rest || '(none)'}`,
          actual: rest,
          expected: String(matcher),
          operator: 'expect',
        });
      }
      await this.waitWrite(left);
    }
  }

  /** Wait for the next complete top-level element whose raw text matches, parsed. */
  async expectStanza(matcher: RegExp, timeout = 2000): Promise<Element> {
    const text = await this.expect(matcher, timeout);
    return parseOne(text);
  }

  /** Assert that nothing is written for `ms`. */
  async silence(ms = 100): Promise<void> {
    const before = this.output().length;
    await new Promise((r) => setTimeout(r, ms));
    assert.equal(this.output().slice(before), '', 'expected no output');
  }

  /** Skip everything written so far. */
  drain(): void {
    this.cursor = this.output().length;
  }

  /** Wait until the connection closed; its typed close reason. */
  async closed(timeout = 2000): Promise<CloseReason> {
    const deadline = Date.now() + timeout;
    while (!this.closedFlag) {
      const left = deadline - Date.now();
      if (left <= 0)
        assert.fail(`connection still open after ${timeout} ms; output:\n${this.output()}`);
      await this.waitWrite(left);
    }
    assert.ok(this.conn.closeReason, 'closed connection has a closeReason');
    return this.conn.closeReason;
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** Send the stream header and wait for the features [RFC6120 4.3]. */
  async open(header = HEADER): Promise<string> {
    this.send(header);
    return this.expect(/<stream:features>[\s\S]*?<\/stream:features>/);
  }

  /** PLAIN, stream restart, bind; returns the full JID the server assigned. */
  async login(user: string, password: string, resource?: string): Promise<string> {
    await this.open();
    const b64 = Buffer.from(`\0${user}\0${password}`).toString('base64');
    this.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${b64}</auth>`);
    await this.expect(new RegExp(`<success xmlns='${NS_SASL}'[^>]*?(?:/>|>[^<]*</success>)`));
    await this.open(); // the stream restart after SASL success [RFC6120 6.4.6]
    return this.bind(resource);
  }

  /** On a restarted, authenticated stream: bind a resource [RFC6120 7]. */
  async bind(resource?: string): Promise<string> {
    const res = resource === undefined ? '' : `<resource>${resource}</resource>`;
    this.send(`<iq type='set' id='bind1'><bind xmlns='${NS_BIND}'>${res}</bind></iq>`);
    const text = await this.expect(/<iq [^>]*id='bind1'[\s\S]*?<\/iq>/);
    const el = parseOne(text);
    assert.equal(el.attrs.type, 'result', `bind failed: ${text}`);
    const jid = el.getChild('bind', NS_BIND)?.getChildText('jid');
    assert.ok(jid, `no jid in ${text}`);
    return jid;
  }

  /** A round trip through the server: everything sent before it has been processed. */
  async ping(id = `sync-${Math.random().toString(36).slice(2)}`): Promise<void> {
    this.send(`<iq type='get' id='${id}' to='${DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await this.expect(new RegExp(`<iq [^>]*id='${id}'[^>]*/>`));
  }

  /** Send available presence and wait until the server processed it. */
  async available(extra = ''): Promise<void> {
    this.send(`<presence>${extra}</presence>`);
    await this.ping();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private waitWrite(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.waiters.push(done);
    });
  }
}

export interface HarnessOptions {
  xmpp?: Partial<XmppOptions>;
  limits?: Partial<BrokerLimits>;
  /** accounts to create: username → password */
  users?: Record<string, string>;
  /** the store (default: a fresh MemoryStorage); the harness opens it, the broker closes it */
  storage?: Storage;
}

/** One broker with the XMPP modules loaded, and the clients connected to it. */
export class Harness {
  readonly broker: Broker;
  readonly xmppOptions: XmppOptions;
  readonly clients: Client[] = [];

  private constructor(broker: Broker, xmppOptions: XmppOptions) {
    this.broker = broker;
    this.xmppOptions = xmppOptions;
  }

  static async start(opts: HarnessOptions = {}): Promise<Harness> {
    const broker = new Broker({
      domain: DOMAIN,
      storage: opts.storage ?? new MemoryStorage(),
      cluster: { bus: new LocalBus('test-node'), registry: new LocalRegistry() },
      // Modules off by default stay off (proxy65 opens a listener of its own on a fixed port).
      modules: [
        { def: offline },
        ...xmppModules.filter((def) => def.enabledByDefault !== false).map((def) => ({ def })),
      ],
      // Cheap key derivation and no login slow-down, so tests stay fast.
      limits: { scramIterations: 64, authFreeFailures: 1000, ...opts.limits },
    });
    await broker.start();
    for (const [user, pw] of Object.entries(
      opts.users ?? { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw' },
    )) {
      await broker.accounts.create(user, pw);
    }
    const xmppOptions: XmppOptions = {
      ...defaultXmppOptions,
      tcp: null,
      directTls: null,
      keepaliveIntervalMs: 0,
      idleTimeoutMs: 0,
      ...opts.xmpp,
    };
    return new Harness(broker, xmppOptions);
  }

  connect(opts: { remoteAddress?: string; secure?: boolean } = {}): Client {
    const c = new Client(this, opts);
    this.clients.push(c);
    return c;
  }

  /** A connected, authenticated and bound client. */
  async user(
    user: string,
    password: string,
    resource?: string,
  ): Promise<{ client: Client; jid: string }> {
    const client = this.connect();
    const jid = await client.login(user, password, resource);
    return { client, jid };
  }

  async stop(): Promise<void> {
    for (const c of this.clients) if (!c.isClosed) c.conn.transportClosed('client-closed');
    await this.broker.stop();
  }
}

/** Parse one XML fragment (a stanza as written on the wire). */
export function parseOne(text: string): Element {
  const parser = new ClientParser();
  const elements: Element[] = [];
  let error: Error | undefined;
  parser.on('element', (el) => elements.push(el));
  parser.on('error', (err) => (error = err));
  parser.write(`<wrap>${text}</wrap>`);
  if (error) throw error;
  assert.equal(elements.length, 1, `expected one element in ${text}`);
  return elements[0];
}

/**
 * Assert that `text` (what a client received) is namespace-well-formed XML as a
 * strict, namespace-aware client parser sees it; the stream need not be closed.
 */
export function assertWellFormedStream(text: string): void {
  // Each stream restart [RFC6120 4.3.3] starts a new document with its own declaration.
  for (const doc of text.split(/(?=<\?xml )/)) {
    const sax = new SaxesParser({ xmlns: true });
    const errors: string[] = [];
    sax.on('error', (e) => errors.push(e.message));
    sax.write(doc);
    const tail = doc.length > 600 ? `…${doc.slice(-600)}` : doc;
    assert.deepEqual(errors, [], `a client would reject the stream; its last bytes:\n${tail}`);
  }
}

/** The exact error child a stanza error carries: `<error type='…'><cond xmlns='…stanzas'/>`. */
export function stanzaError(el: Element): { type: string; condition: string } {
  const err = el.getChild('error');
  assert.ok(err, `no <error/> in ${el.toString()}`);
  const cond = err
    .getChildElements()
    .find((c) => c.attrs.xmlns === NS_STANZAS && c.name !== 'text');
  assert.ok(cond, `no defined condition in ${el.toString()}`);
  return { type: err.attrs.type, condition: cond.name };
}

/**
 * The stream must end with exactly `<stream:error><cond xmlns='…streams'/>[<text/>]</stream:error></stream:stream>`
 * and nothing after it [RFC6120 4.9.1.1]; the transport is closed.
 */
export async function expectStreamError(client: Client, condition: string): Promise<CloseReason> {
  const reason = await client.closed();
  const out = client.output();
  const at = out.lastIndexOf('<stream:error>');
  assert.notEqual(at, -1, `no stream error; output:\n${out}`);
  const tail = out.slice(at);
  const re = new RegExp(
    `^<stream:error><${condition} xmlns='${NS_STREAMS_ERR}'/>(?:<text xmlns='${NS_STREAMS_ERR}'>[^<]*</text>)?</stream:error></stream:stream>$`,
  );
  assert.match(tail, re);
  assert.equal(client.transport.ended, true, 'transport closed after the stream error');
  assertWellFormedStream(out);
  return reason;
}
