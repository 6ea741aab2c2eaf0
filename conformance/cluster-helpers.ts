// Helpers for the cluster conformance suites: `parley start` processes on
// loopback joined by a real redis-server (the cluster bus and registry) and
// sharing the Redis store (docs/cluster.md).
import assert from 'node:assert/strict';
import path from 'node:path';
import { adminRequest } from '../bin/admin.ts';
import { ping, presence, sleep, xmppClient, type TestClient } from './helpers.ts';
import { startMqttNode, type MqttTestNode } from './mqtt-helpers.ts';
import { startRedis, type TestRedis, type TestRedisOptions } from './redis-server.ts';

export interface ClusterStatusAnswer {
  connected: boolean;
  nodes: { id: string; sessions: number; state: string; lastBeatAgoMs: number }[];
}

export interface TestCluster {
  redis: TestRedis;
  nodes: Record<string, MqttTestNode>;
  /** random per cluster: store and cluster prefixes, client ids */
  tag: string;
  heartbeatMs: number;
  /** start (or start again after dispose) the node `id` */
  start(id: string): Promise<MqttTestNode>;
  /** an XMPP client on `node`, with initial presence sent and answered */
  login(node: string, username: string, resource: string, password: string): Promise<TestClient>;
  /** `cluster.status` from the node's admin socket */
  status(node: string): Promise<ClusterStatusAnswer>;
  /** until every node lists every other node as live (the nodes' own views, from /metrics) */
  converged(): Promise<void>;
  dispose(): Promise<void>;
}

/** Retry `check` until it passes (every 100 ms) or `timeout` ms passed (then its last error). */
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

/** Start redis-server and the nodes `ids` (in parallel) on it. */
export async function startCluster(
  ids: string[],
  opts: { heartbeatMs?: number; redis?: TestRedisOptions } = {},
): Promise<TestCluster> {
  const heartbeatMs = opts.heartbeatMs ?? 300;
  const tag = Math.random().toString(36).slice(2, 8);
  const redis = await startRedis(opts.redis);
  const nodes: Record<string, MqttTestNode> = {};
  /**
   * Top-level keys after startMqttNode's `mqtt:` block (its YAML is appended
   * as given): the node's id, the shared store and the cluster.
   */
  const clusterYaml = (id: string) =>
    [
      // under startMqttNode's `mqtt:`: aedes' heartbeat, whose sweep fires the wills of silent brokers every 4 beats
      '  heartbeatIntervalMs: 200',
      `nodeId: ${id}`,
      `storage: { backend: redis, url: "${redis.url}", prefix: "s${tag}:" }`,
      `cluster: { redis: "${redis.url}", prefix: c${tag}, heartbeatMs: ${heartbeatMs}, drainGraceMs: 300 }`,
      '',
    ].join('\n');
  const cluster: TestCluster = {
    redis,
    nodes,
    tag,
    heartbeatMs,
    start: async (id) => (nodes[id] = await startMqttNode(clusterYaml(id))),
    async login(node, username, resource, password) {
      const c = await xmppClient({ port: nodes[node].ports.xmpp, username, password, resource });
      await c.send(presence());
      await ping(c);
      return c;
    },
    async status(node) {
      const r = await adminRequest(path.join(nodes[node].dataDir, 'admin.sock'), {
        cmd: 'cluster.status',
      });
      assert.ok(r?.ok, JSON.stringify(r));
      return r.result as ClusterStatusAnswer;
    },
    async converged() {
      const n = Object.keys(nodes).length;
      for (const node of Object.values(nodes))
        await eventually(async () => {
          const text = await (await fetch(`http://127.0.0.1:${node.ports.http}/metrics`)).text();
          assert.match(text, new RegExp(`^parley_cluster_nodes ${n}$`, 'm'));
        }, 20_000);
    },
    async dispose() {
      for (const node of Object.values(nodes)) await node.dispose();
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
