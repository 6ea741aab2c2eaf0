// Helpers for the cluster suites (conformance/cross/cluster*.test.ts): a
// node's cluster YAML, polling until a check passes, `/readyz`, the cluster
// status from the admin socket, and a session that is online.
import assert from 'node:assert/strict';
import path from 'node:path';
import { adminRequest } from '../bin/admin.ts';
import { ping, presence, sleep, xmppClient, type TestClient, type TestNode } from './helpers.ts';

/**
 * Top-level keys to append after startMqttNode's `mqtt:` block (its YAML is
 * appended as given): the node's id, the shared store and the cluster. The
 * store defaults to the cluster's Redis; `storeUrl` puts it on another one.
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

/** Retry `check` every 100 ms until it passes or `timeout` ms went by (then its last error). */
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

export type ClusterStatusAnswer = {
  connected: boolean;
  nodes: { id: string; sessions: number; state: string; lastBeatAgoMs: number }[];
};

/** `cluster.status` straight from the admin socket (what `parley cluster status --json` prints), for polling. */
export async function clusterStatus(node: TestNode): Promise<ClusterStatusAnswer> {
  const r = await adminRequest(path.join(node.dataDir, 'admin.sock'), { cmd: 'cluster.status' });
  assert.ok(r?.ok, JSON.stringify(r));
  return r.result as ClusterStatusAnswer;
}
