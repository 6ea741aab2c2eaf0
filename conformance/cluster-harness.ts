// The load-test side of the cluster suites (conformance/cross/cluster-drain.test.ts):
// a harness whose nodes can be drained with see-other-host (cluster.advertise),
// senders that count what the server acknowledged, and receivers (XMPP and MQTT)
// that count what arrived, by message id, across reconnections. The plain
// cluster setup is conformance/cluster-helpers.ts.
import assert from 'node:assert/strict';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { adminRequest } from '../bin/admin.ts';
import { isMessage, ping, presence, runCli, stopAllClients, xml, xmppClient } from './helpers.ts';
import type { Element, TestClient } from './helpers.ts';
import {
  collect,
  endAllMqtt,
  mqttConnect,
  startMqttNode,
  type MqttTestNode,
} from './mqtt-helpers.ts';
import { startRedis, type TestRedis } from './redis-server.ts';
import { eventually } from './cluster-helpers.ts';

export { eventually };

export const PW = 'pw-cluster';

export type ClusterStatusView = {
  connected: boolean;
  nodes: {
    id: string;
    sessions: number;
    state: string;
    lastBeatAgoMs: number;
    version: string;
    advertise?: { xmpp?: string };
  }[];
};

export interface ClusterOptions {
  heartbeatMs: number;
  drainGraceMs?: number;
  /** `cluster.advertise.xmpp: 127.0.0.1` (each node fills in its own port): drains redirect with see-other-host */
  advertise?: boolean;
  /** `cluster.deathReplaySeconds` (the node's default when absent) */
  deathReplaySeconds?: number;
}

export const chat = (to: string, body: string, id?: string) =>
  xml('message', { to, type: 'chat', id }, xml('body', {}, body));

/**
 * Nodes of one cluster: call `setUp()` in `before` and `tearDown()` in
 * `after`; `start(id)` starts (or `nodes[id].restart()` restarts) a node.
 */
export class ClusterHarness {
  redis!: TestRedis;
  readonly nodes: Record<string, MqttTestNode> = {};
  readonly tag = Math.random().toString(36).slice(2, 8);
  constructor(readonly opts: ClusterOptions) {}

  async setUp(ids: string[]): Promise<void> {
    // appendfsync always: what the test wrote before it kills Redis is on disk (everysec may lose the last second).
    this.redis = await startRedis({ appendfsync: 'always' });
    await Promise.all(ids.map((id) => this.start(id)));
  }

  /**
   * The mocha hooks of a suite on these nodes: start them before, end every
   * client after each test, stop them and Redis after.
   */
  hooks(ids: string[]): void {
    const setUp = () => this.setUp(ids);
    before(async function () {
      this.timeout(120_000);
      await setUp();
    });
    afterEach(async () => {
      await endAllMqtt();
      await stopAllClients();
    });
    after(() => this.tearDown());
  }

  async tearDown(): Promise<void> {
    for (const n of Object.values(this.nodes)) await n.dispose();
    await this.redis?.dispose();
  }

  /**
   * Top-level keys after startMqttNode's `mqtt:` block (its YAML is appended
   * as given): the node's id, the shared store and the cluster.
   */
  yaml(id: string): string {
    const { heartbeatMs, drainGraceMs = 300, advertise, deathReplaySeconds } = this.opts;
    let adv = advertise ? ', advertise: { xmpp: "127.0.0.1" }' : '';
    if (deathReplaySeconds !== undefined) adv += `, deathReplaySeconds: ${deathReplaySeconds}`;
    return [
      // under startMqttNode's `mqtt:`: aedes' heartbeat, whose sweep fires the wills of silent brokers every 4 beats
      '  heartbeatIntervalMs: 200',
      `nodeId: ${id}`,
      `storage: { backend: redis, url: "${this.redis.url}", prefix: "s${this.tag}:" }`,
      `cluster: { redis: "${this.redis.url}", prefix: c${this.tag}, heartbeatMs: ${heartbeatMs}, drainGraceMs: ${drainGraceMs}${adv} }`,
      '',
    ].join('\n');
  }

  async start(id: string): Promise<MqttTestNode> {
    return (this.nodes[id] = await startMqttNode(this.yaml(id)));
  }

  /** Log in over XMPP, send initial presence, wait for the server. */
  async login(node: string, username: string, resource: string): Promise<TestClient> {
    const c = await xmppClient({
      port: this.nodes[node].ports.xmpp,
      username,
      password: PW,
      resource,
    });
    await c.send(presence());
    await ping(c);
    return c;
  }

  cli(node: string, ...args: string[]) {
    return runCli(['--data-dir', this.nodes[node].dataDir, '--json', ...args]);
  }

  async readyz(node: string): Promise<number> {
    return (await fetch(`http://127.0.0.1:${this.nodes[node].ports.http}/readyz`)).status;
  }

  /** `parley cluster status --json` (the CLI, a process each time) */
  async statusByCli(node: string): Promise<ClusterStatusView> {
    const r = await this.cli(node, 'cluster', 'status');
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ClusterStatusView;
  }

  /** the same answer straight from the admin socket, for polling */
  async clusterStatus(node: string): Promise<ClusterStatusView> {
    const r = await adminRequest(path.join(this.nodes[node].dataDir, 'admin.sock'), {
      cmd: 'cluster.status',
    });
    assert.ok(r?.ok, JSON.stringify(r));
    return r.result as ClusterStatusView;
  }

  /** Wait until `node` lists exactly `ids` as live. */
  async membersAre(node: string, ids: string[], timeout = 15_000): Promise<void> {
    await eventually(
      async () =>
        assert.deepEqual((await this.clusterStatus(node)).nodes.map((n) => n.id).sort(), ids),
      timeout,
    );
  }
}

// ------------------------------------------------------------- load tests ---

/** Ids received by one recipient, in arrival order, duplicates included. */
export class Inbox {
  readonly ids: string[] = [];
  /** arrivals that were not the first of their id */
  duplicates = 0;
  /** of those, arrivals in the same session (stream, connection) as an earlier copy */
  sameSessionDuplicates = 0;
  /** of those, the ones where neither copy was delay-stamped: the same message live twice */
  liveTwice = 0;
  private readonly seen = new Set<string>();
  /** this session's ids, and whether the first copy was delay-stamped */
  private session = new Map<string, boolean>();

  /** ids that arrived delay-stamped: from offline storage or replayed [XEP-0203] */
  readonly delayed = new Set<string>();

  add(id: string | undefined, delayed = false): void {
    if (!id) return;
    if (delayed) this.delayed.add(id);
    if (this.seen.has(id)) this.duplicates++;
    else this.seen.add(id);
    const first = this.session.get(id);
    if (first === undefined) this.session.set(id, delayed);
    else {
      this.sameSessionDuplicates++;
      if (!first && !delayed) this.liveTwice++;
    }
    this.ids.push(id);
  }

  /** A new session of the recipient begins (a new stream, a new connection). */
  newSession(): void {
    this.session = new Map();
  }

  has(id: string): boolean {
    return this.seen.has(id);
  }

  /** Of `expected`, the ids that never arrived. */
  missing(expected: Iterable<string>): string[] {
    return [...expected].filter((id) => !this.seen.has(id));
  }
}

/** A chat message from the sender's run: its id names the sender and the number (`<prefix>-<n>`). */
const isLoadMessage = (prefix: string) => (el: Element) =>
  isMessage({ type: 'chat' })(el) && (el.attrs.id ?? '').startsWith(`${prefix}-`);

/**
 * An XMPP recipient that counts message ids. It follows a see-other-host
 * (@xmpp/client reconnects to the named host by itself) and sends initial
 * presence again on every new session, so offline messages are flushed to it.
 */
export function xmppInbox(
  c: TestClient,
  prefix: string,
  into?: Inbox & { sessions: number },
): Inbox & { sessions: number } {
  const inbox = into ?? Object.assign(new Inbox(), { sessions: 0 });
  // what arrived since login (offline messages right after the initial presence), then the rest
  inbox.sessions++;
  inbox.newSession();
  const take = (el: Element) => {
    if (isLoadMessage(prefix)(el))
      inbox.add(el.attrs.id, el.getChild('delay', 'urn:xmpp:delay') !== undefined);
  };
  for (const el of c.received) take(el);
  c.xmpp.on('stanza', take);
  c.xmpp.on('online', () => {
    inbox.sessions++;
    inbox.newSession();
    void c.send(presence()).catch(() => {});
  });
  return inbox;
}

/**
 * An MQTT recipient with a persistent session (clean: false, QoS 1 on its
 * chat topic), counting message ids. `reconnect(port)` opens a new
 * connection with the same client id: the session (subscription, QoS 1
 * messages not acknowledged) is in Redis, so any node resumes it.
 */
export class MqttInbox extends Inbox {
  client!: MqttClient;
  closed!: Promise<void>;
  connections = 0;
  constructor(
    readonly user: string,
    readonly clientId: string,
    readonly prefix: string,
  ) {
    super();
  }

  async connect(port: number): Promise<void> {
    const c = await mqttConnect(port, {
      username: this.user,
      password: PW,
      clientId: this.clientId,
      clean: false,
      reconnectPeriod: 0,
    });
    this.connections++;
    this.newSession();
    this.client = c;
    this.closed = new Promise((r) => c.once('close', () => r()));
    // messages parsed in the CONNACK's turn are kept by mqttConnect: take them first
    for (const p of collect(c, `chat/${this.user}`).splice(0)) this.take(p);
    c.on('message', (topic, payload) => {
      if (topic === `chat/${this.user}`) this.take(payload.toString());
    });
    if (this.connections === 1) await c.subscribeAsync(`chat/${this.user}`, { qos: 1 });
  }

  private take(payload: string): void {
    const { id, delayed } = JSON.parse(payload) as { id?: string; delayed?: boolean };
    if (id?.startsWith(`${this.prefix}-`)) this.add(id, delayed === true);
  }
}

/**
 * An XMPP sender: sends `<prefix>-<n>` to each recipient in turn, in batches
 * of `pingEvery` each followed by a ping: a message counts as acknowledged
 * once a ping sent after it is answered (the server handles a stream's
 * stanzas in order and stores a chat message before it answers the next
 * stanza, as XEP-0198's h does). A batch not acknowledged is sent again once
 * the client is online again. Runs until `stop()`; resolves with the
 * acknowledged ids per recipient.
 */
export function xmppSender(
  c: TestClient,
  prefix: string,
  to: string[],
  pingEvery = 5,
  /** false: a cut stream ends the sender (its node died), what was not acknowledged is not counted */
  follow = true,
): {
  stop(): Promise<Map<string, string[]>>;
  sent: () => number;
  resent: () => number;
  acked: (to: string) => number;
} {
  const acked = new Map<string, string[]>(to.map((t) => [t, []]));
  let pending: [string, string][] = [];
  let resent = 0;
  let running = true;
  let n = 0;
  const online = () =>
    c.xmpp.status === 'online'
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`${prefix}: not online again`)), 30_000);
          c.xmpp.once('online', () => (clearTimeout(t), resolve()));
        });
  // A batch whose ping did not come back (the stream was redirected or cut) is sent again once the
  // client is online again, on whichever node: a client resending what was not acknowledged.
  const batch = async () => {
    for (;;) {
      try {
        for (const [t, id] of pending) await c.send(chat(t, `load ${id}`, id));
        await ping(c);
        for (const [t, i] of pending) acked.get(t)!.push(i);
        pending = [];
        return;
      } catch {
        if (!follow) {
          running = false;
          pending = [];
          return;
        }
        resent++;
        await online();
      }
    }
  };
  const loop = (async () => {
    while (running) {
      const target = to[n % to.length];
      pending.push([target, `${prefix}-${n++}`]);
      if (pending.length >= pingEvery) await batch();
    }
    if (pending.length) await batch();
  })();
  return {
    sent: () => n,
    resent: () => resent,
    acked: (to) => acked.get(to)?.length ?? 0,
    async stop() {
      running = false;
      await loop;
      return acked;
    },
  };
}
