// A cluster for black-box tests: `parley start` processes on loopback joined
// by a real redis-server (conformance/redis-server.ts), sharing the Redis
// store, each with its MQTT listeners (docs/cluster.md). Used by the
// conformance/cross/cluster*.test.ts files.
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  ping,
  presence,
  runCli,
  sleep,
  stopAllClients,
  xmppClient,
  type TestClient,
  type TestNode,
} from './helpers.ts';
import { endAllMqtt, startMqttNode, type MqttTestNode } from './mqtt-helpers.ts';
import { startRedis, type TestRedis, type TestRedisOptions } from './redis-server.ts';
import { adminRequest } from '../bin/admin.ts';

export interface ClusterOptions {
  /** cluster.heartbeatMs (short, so that a dead node is found quickly) */
  heartbeatMs?: number;
  /** more YAML under the node's `mqtt:` section (two-space indented lines) */
  mqttYaml?: string[];
  /** more top-level YAML (e.g. a `modules:` section) */
  yaml?: string[];
  redis?: TestRedisOptions;
  /** more keys in the node's `cluster:` mapping, e.g. `advertise: { xmpp: "127.0.0.1" }` */
  cluster?: string;
}

export type ClusterStatusAnswer = {
  connected: boolean;
  nodes: { id: string; sessions: number; state: string; lastBeatAgoMs: number }[];
};

export interface TestCluster {
  redis: TestRedis;
  nodes: Record<string, MqttTestNode>;
  /** random per cluster: the store's and the cluster's prefixes, and names that must not clash */
  tag: string;
  heartbeatMs: number;
  /** start (or add) a node with this id */
  start(id: string): Promise<MqttTestNode>;
  /** an XMPP client on a node, available, its presence through */
  login(node: string, username: string, password: string, resource: string): Promise<TestClient>;
  /** `parley --json …` against a node's data directory (a process each time) */
  cli(node: string, ...args: string[]): ReturnType<typeof runCli>;
  /** HTTP status of a node's /readyz */
  readyz(node: string): Promise<number>;
  /** `cluster.status` straight from a node's admin socket, for polling */
  status(node: string): Promise<ClusterStatusAnswer>;
  /** until every node lists every other node as live (the nodes' own views, from /metrics) */
  converged(): Promise<void>;
  /** stop every node and Redis */
  dispose(): Promise<void>;
}

/** Retry `check` until it passes (or `timeout` ms passed: its last failure is thrown). */
export async function eventually(
  check: () => Promise<void> | void,
  timeout = 10_000,
): Promise<void> {
  const end = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > end) throw err;
      await sleep(100);
    }
  }
}

/**
 * Top-level keys to append after startMqttNode's `mqtt:` block (its YAML is
 * appended as given), for a suite that starts its nodes itself: the node's id,
 * the shared store and the cluster. The store defaults to the cluster's Redis;
 * `storeUrl` puts it on another one (so the cluster's Redis can fail alone).
 */
export function clusterYaml(o: {
  id: string;
  redisUrl: string;
  tag: string;
  heartbeatMs: number;
  storeUrl?: string;
}): string {
  return [
    // under startMqttNode's `mqtt:`: aedes' heartbeat, whose sweep fires the wills of silent brokers every 4 beats
    '  heartbeatIntervalMs: 200',
    `nodeId: ${o.id}`,
    `storage: { backend: redis, url: "${o.storeUrl ?? o.redisUrl}", prefix: "s${o.tag}:" }`,
    `cluster: { redis: "${o.redisUrl}", prefix: c${o.tag}, heartbeatMs: ${o.heartbeatMs}, drainGraceMs: 300 }`,
    '',
  ].join('\n');
}

/** An XMPP session on `node`, available (initial presence sent and handled). */
export async function onlineClient(
  node: TestNode,
  username: string,
  password: string,
  resource: string,
): Promise<TestClient> {
  const c = await xmppClient({ port: node.ports.xmpp, username, password, resource });
  await c.send(presence());
  await ping(c);
  return c;
}

/** The HTTP status of the node's `/readyz`. */
export async function readyz(node: TestNode): Promise<number> {
  return (await fetch(`http://127.0.0.1:${node.ports.http}/readyz`)).status;
}

/** `cluster.status` straight from the admin socket (what `parley cluster status --json` prints), for polling. */
export async function clusterStatus(node: TestNode): Promise<ClusterStatusAnswer> {
  const r = await adminRequest(path.join(node.dataDir, 'admin.sock'), { cmd: 'cluster.status' });
  assert.ok(r?.ok, JSON.stringify(r));
  return r.result as ClusterStatusAnswer;
}

/**
 * Until every node lists all of `nodes` as live in its own view (its last
 * heartbeat, from /metrics), which is what the nodes pick rooms' homes by;
 * the cluster status is read from Redis and may be ahead of it.
 */
export async function converged(nodes: TestNode[]): Promise<void> {
  for (const node of nodes)
    await eventually(async () => {
      const text = await (await fetch(`http://127.0.0.1:${node.ports.http}/metrics`)).text();
      assert.match(text, new RegExp(`^parley_cluster_nodes ${nodes.length}$`, 'm'));
    }, 20_000);
}

/** A Redis and the nodes `ids`, started in parallel. */
export async function startCluster(ids: string[], opts: ClusterOptions = {}): Promise<TestCluster> {
  const redis = await startRedis(opts.redis);
  const tag = Math.random().toString(36).slice(2, 8);
  const heartbeatMs = opts.heartbeatMs ?? 300;
  const nodes: Record<string, MqttTestNode> = {};
  /** Top-level keys after startMqttNode's `mqtt:` block (its YAML is appended as given). */
  const yaml = (id: string) =>
    [
      ...(opts.mqttYaml ?? []),
      `nodeId: ${id}`,
      `storage: { backend: redis, url: "${redis.url}", prefix: "s${tag}:" }`,
      `cluster: { redis: "${redis.url}", prefix: c${tag}, heartbeatMs: ${heartbeatMs}, drainGraceMs: 300${opts.cluster ? `, ${opts.cluster}` : ''} }`,
      ...(opts.yaml ?? []),
      '',
    ].join('\n');
  const cluster: TestCluster = {
    redis,
    nodes,
    tag,
    heartbeatMs,
    start: async (id) => (nodes[id] = await startMqttNode(yaml(id))),
    login: (node, username, password, resource) =>
      onlineClient(nodes[node], username, password, resource),
    cli: (node, ...args) => runCli(['--data-dir', nodes[node].dataDir, '--json', ...args]),
    readyz: (node) => readyz(nodes[node]),
    status: (node) => clusterStatus(nodes[node]),
    converged: () => converged(Object.values(nodes)),
    async dispose() {
      for (const n of Object.values(nodes)) await n.dispose();
      await redis.dispose();
    },
  };
  try {
    await Promise.all(ids.map((id) => cluster.start(id)));
  } catch (err) {
    await cluster.dispose().catch(() => {});
    throw err;
  }
  return cluster;
}

/**
 * After each test of a suite on `cluster()`: when the test failed, print the
 * nodes' log lines that match `pattern` (what the cluster decided: deaths,
 * homes, holds, warnings); then end every client.
 */
export async function afterClusterTest(
  test: Mocha.Test | undefined,
  cluster: TestCluster | undefined,
  pattern: RegExp,
): Promise<void> {
  if (test?.state === 'failed' && cluster)
    for (const [id, node] of Object.entries(cluster.nodes))
      for (const l of node.log) if (pattern.test(l)) console.log(id, l.slice(0, 300));
  await endAllMqtt();
  await stopAllClients();
}
