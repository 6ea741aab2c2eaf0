// Helpers for the cluster suites (conformance/cross/cluster*.test.ts): a
// node's cluster YAML, polling until a check passes, `/readyz`, the cluster
// status from the admin socket, and a TCP proxy that can cut a node off
// from Redis (a reset or a silent blackhole) without root.
import assert from 'node:assert/strict';
import net from 'node:net';
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

/**
 * A TCP proxy on a free loopback port in front of `target`, standing for the
 * network between one node and Redis. `cut('reset')` resets every
 * connection and each new one at once (a peer that answers with RST);
 * `cut('blackhole')` forwards nothing either way and holds new connections,
 * as a silent partition does: TCP keeps the bytes and delivers them, late,
 * when the link heals (`heal()`), and no side sees an error meanwhile.
 */
export class CutProxy {
  private server!: net.Server;
  private mode: 'open' | 'reset' | 'blackhole' = 'open';
  private readonly pairs = new Set<{ flush(): void; reset(): void }>();
  port = 0;

  constructor(private readonly target: { port: number }) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = net.createServer((client) => this.accept(client));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  cut(how: 'reset' | 'blackhole'): void {
    this.mode = how;
    if (how === 'reset') for (const p of [...this.pairs]) p.reset();
  }

  heal(): void {
    this.mode = 'open';
    for (const p of [...this.pairs]) p.flush();
  }

  async stop(): Promise<void> {
    for (const p of [...this.pairs]) p.reset();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private accept(client: net.Socket): void {
    if (this.mode === 'reset') return void client.resetAndDestroy();
    let upstream: net.Socket | undefined;
    const held: { toUp: Buffer[]; toClient: Buffer[] } = { toUp: [], toClient: [] };
    const pair = {
      flush: () => {
        if (!upstream) connect();
        for (const b of held.toUp.splice(0)) upstream!.write(b);
        for (const b of held.toClient.splice(0)) client.write(b);
      },
      reset: () => {
        this.pairs.delete(pair);
        client.resetAndDestroy();
        upstream?.resetAndDestroy();
      },
    };
    const connect = () => {
      const up = (upstream = net.connect(this.target.port, '127.0.0.1'));
      up.on('data', (d) => (this.mode === 'open' ? client.write(d) : held.toClient.push(d)));
      up.on('error', () => {});
      up.on('close', () => {
        this.pairs.delete(pair);
        client.destroy();
      });
    };
    this.pairs.add(pair);
    client.on('data', (d) => (this.mode === 'open' ? upstream!.write(d) : held.toUp.push(d)));
    client.on('error', () => {});
    client.on('close', () => {
      this.pairs.delete(pair);
      upstream?.destroy();
    });
    if (this.mode === 'open') connect();
  }
}
