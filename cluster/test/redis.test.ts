/**
 * The Redis cluster backend (cluster/redis) against a real redis-server:
 * the bus's frames and channels, the registry's atomic keys and coherent
 * cache, membership by heartbeat and the one reaper of a dead node.
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import {
  RedisBus,
  redisCluster,
  encodeFrame,
  NoReceiverError,
  BusDownError,
} from '../redis/index.ts';
import type { RedisRegistry } from '../redis/registry.ts';
import type { BusMessage, ClusterLogger, SessionEntry } from '../types.ts';
import { CutProxy, startRedis, type TestRedis } from '../../conformance/redis-server.ts';
import { clusterContract } from './contract.ts';

const HEARTBEAT = 150;

/** A logger that keeps what it was told, for assertions on the operator's view. */
function recordingLog(): ClusterLogger & { lines: { level: string; obj: object; msg?: string }[] } {
  const lines: { level: string; obj: object; msg?: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  return { lines, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

async function eventually(check: () => void | Promise<void>, timeout = 5000): Promise<void> {
  const end = Date.now() + timeout;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

function entry(
  user: string,
  resource: string,
  node: string,
  sessionId = `${node}-${user}-${resource}`,
): SessionEntry {
  return { user, resource, node, sessionId, protocol: 'xmpp', priority: 0, available: true };
}

{
  let server: TestRedis | undefined;
  const prefixes: string[] = [];
  clusterContract(
    'redis',
    async () => {
      server ??= await startRedis();
      const prefix = `k${Math.random().toString(36).slice(2, 8)}`;
      prefixes.push(prefix);
      return redisCluster({ url: server.url, nodeId: 'n1', heartbeatMs: HEARTBEAT, prefix });
    },
    async () => {},
  );
  after(async () => {
    await server?.dispose();
  });
}

describe('cluster/redis', function () {
  this.timeout(30_000);
  let redis: TestRedis;
  const started: { bus: RedisBus; registry: RedisRegistry }[] = [];

  /** Nodes of one cluster share a prefix. */
  async function cluster(ids: string[], logs: Record<string, ClusterLogger> = {}) {
    const prefix = `t${Math.random().toString(36).slice(2, 8)}`;
    const out = ids.map((id) =>
      redisCluster({ url: redis.url, nodeId: id, heartbeatMs: HEARTBEAT, prefix, log: logs[id] }),
    );
    for (const c of out) {
      await c.bus.start();
      started.push(c);
    }
    return out;
  }

  before(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    for (const c of started.splice(0)) await c.bus.stop().catch(() => {});
  });
  after(async () => {
    await redis?.dispose();
  });

  it('sends to one node and broadcasts to all, the sender included', async () => {
    const [a, b, c] = await cluster(['a', 'b', 'c']);
    const got: Record<string, BusMessage[]> = { a: [], b: [], c: [] };
    for (const [id, n] of [
      ['a', a],
      ['b', b],
      ['c', c],
    ] as const)
      n.bus.onMessage((m) => {
        if (!m.type.startsWith('node-')) got[id].push(m); // membership news (a node listed anew)
      });
    await a.bus.send('b', 'hello', { n: 1 });
    await a.bus.broadcast('all', { n: 2 });
    await eventually(() => {
      assert.deepEqual(
        got.b.map((m) => [m.from, m.type, m.payload]),
        [
          ['a', 'hello', { n: 1 }],
          ['a', 'all', { n: 2 }],
        ],
      );
      assert.deepEqual(
        got.c.map((m) => m.type),
        ['all'],
      );
      assert.deepEqual(
        got.a.map((m) => m.type),
        ['all'],
      );
    });
  });

  it('sends the messages of one turn to one node as one PUBLISH (recipients grouped)', async () => {
    const [a] = await cluster(['a', 'b']);
    const spy = new Redis(redis.url);
    const frames: Buffer[] = [];
    spy.on('messageBuffer', (_ch: Buffer, msg: Buffer) => frames.push(msg));
    await spy.subscribe(a.bus.channel('b'));
    try {
      await Promise.all(Array.from({ length: 10 }, (_, i) => a.bus.send('b', 'deliver', { i })));
      await eventually(() => assert.equal(frames.length, 1));
      const body = JSON.parse(frames[0].subarray(3 + 1 + 8).toString()) as unknown[];
      assert.equal(body.length, 10);
    } finally {
      spy.disconnect();
    }
  });

  it('fails a send to a node nobody listens for, so the caller can take the offline path', async () => {
    const [a] = await cluster(['a']);
    await assert.rejects(a.bus.send('ghost', 'deliver', {}), NoReceiverError);
  });

  it('refuses a frame of another wire version and logs it once, naming both versions (rolling upgrade)', async () => {
    const log = recordingLog();
    const [a, b] = await cluster(['a', 'b'], { b: log });
    const got: BusMessage[] = [];
    b.bus.onMessage((m) => got.push(m));
    const v2 = encodeFrame('a', [['deliver', { x: 1 }]]);
    v2[1] = 2;
    await a.bus.pub.publish(a.bus.channel('b'), v2);
    await a.bus.pub.publish(a.bus.channel('b'), v2);
    await a.bus.send('b', 'after', {});
    await eventually(() =>
      assert.deepEqual(
        got.map((m) => m.type),
        ['after'],
      ),
    );
    const refusals = log.lines.filter(
      (l) => l.level === 'error' && /another wire version/.test(l.msg ?? ''),
    );
    assert.equal(refusals.length, 1);
    assert.deepEqual(refusals[0].obj, { from: 'a', theirs: 2, ours: 1 });
  });

  it('registry: an entry put on one node is seen on another, and a removal too (cache kept coherent by the bus)', async () => {
    const [a, b] = await cluster(['a', 'b']);
    assert.deepEqual(await b.registry.lookup('u1@x'), []);
    // b has the (empty) answer cached now: the change must reach it by the bus.
    assert.deepEqual(b.registry.lookupNow('u1@x'), []);
    await a.registry.put(entry('u1@x', 'r1', 'a'));
    await eventually(() =>
      assert.deepEqual(
        b.registry.lookupNow('u1@x')?.map((e) => [e.node, e.resource]),
        [['a', 'r1']],
      ),
    );
    await a.registry.remove('u1@x', 'r1', 'wrong-session');
    await a.registry.remove('u1@x', 'r1', 'a-u1@x-r1');
    await eventually(() => assert.deepEqual(b.registry.lookupNow('u1@x'), []));
    assert.deepEqual(await redisKeys(a.bus, 'u1@x'), {});
  });

  it("registry: a node's sessions go in one step, from every node's view", async () => {
    const [a, b] = await cluster(['a', 'b']);
    for (let i = 0; i < 5; i++) await a.registry.put(entry(`p${i}@x`, 'r', 'a'));
    await b.registry.put(entry('p0@x', 'other', 'b'));
    assert.equal((await b.registry.lookup('p0@x')).length, 2);
    assert.equal((await a.registry.byNode('a')).length, 5);
    assert.equal(await b.registry.purgeNode('a'), 5);
    assert.deepEqual(
      (await b.registry.lookup('p0@x')).map((e) => e.node),
      ['b'],
    );
    assert.deepEqual(await b.registry.byNode('a'), []);
    assert.equal(await b.bus.pub.exists(b.bus.key('n', 'a')), 0);
  });

  it('membership: a node silent for 3 heartbeats is declared dead by exactly one node, which purges its sessions', async () => {
    const [a, b, c] = await cluster(['a', 'b', 'c']);
    await c.registry.put(entry('dying@x', 'r', 'c'));
    const reapers: string[] = [];
    for (const n of [a, b])
      n.bus.onNodeDown(async (dead) => {
        reapers.push(`${n.bus.nodeId}:${dead}`);
        await n.registry.purgeNode(dead);
      });
    await eventually(async () => assert.deepEqual((await a.bus.members()).sort(), ['a', 'b', 'c']));
    await c.bus.abandon();
    // Its last beat, by the Redis clock: it may not be declared dead before 3 intervals after it.
    const lastBeatAgo = (await a.bus.status()).nodes.find((n) => n.id === 'c')!.lastBeatAgoMs;
    const t0 = Date.now();
    await eventually(() => assert.equal(reapers.length, 1), 5000);
    const silent = Date.now() - t0 + lastBeatAgo;
    assert.ok(
      silent >= 3 * HEARTBEAT - 10,
      `declared dead ${silent} ms after its last beat, before 3 heartbeats`,
    );
    assert.match(reapers[0], /^[ab]:c$/);
    await eventually(async () => assert.deepEqual((await a.bus.members()).sort(), ['a', 'b']));
    assert.deepEqual(await a.registry.lookup('dying@x'), []);
    // Two more heartbeat rounds: nobody reaps it again.
    await new Promise((r) => setTimeout(r, 3 * HEARTBEAT));
    assert.equal(reapers.length, 1);
  });

  it('refuses a second live node with the same id', async () => {
    const [a] = await cluster(['a']);
    const twin = new RedisBus({
      url: redis.url,
      nodeId: 'a',
      heartbeatMs: HEARTBEAT,
      prefix: a.bus.prefix,
    });
    await assert.rejects(twin.start(), /another live node already uses the node id "a"/);
  });

  it('Redis killed: sends fail at once, members() is empty (not ready); after a restart it reconnects and registers its sessions again', async () => {
    const [a, b] = await cluster(['a', 'b']);
    await a.registry.put(entry('keep@x', 'r', 'a'));
    await redis.kill9();
    await eventually(() => assert.equal(a.bus.connected, false));
    await assert.rejects(a.bus.send('b', 'x', {}), BusDownError);
    assert.deepEqual(await a.bus.members(), []);
    // Local knowledge still answers.
    assert.deepEqual(
      a.registry.lookupNow('keep@x')?.map((e) => e.resource),
      ['r'],
    );
    await a.registry.put(entry('keep@x', 'r2', 'a'));
    await redis.restart();
    await eventually(
      async () => assert.deepEqual((await b.bus.members()).sort(), ['a', 'b']),
      10_000,
    );
    await eventually(
      async () =>
        assert.deepEqual((await b.registry.lookup('keep@x')).map((e) => e.resource).sort(), [
          'r',
          'r2',
        ]),
      10_000,
    );
  });

  it('a silent cut shorter than the heartbeat limit: a registry write that timed out is written again, and told to the other nodes, once the link heals', async () => {
    const proxy = new CutProxy(redis);
    await proxy.start();
    const prefix = `t${Math.random().toString(36).slice(2, 8)}`;
    // missedBeats high: the cut (5 s) outlasts the command timeout (2 s) but not the heartbeat limit
    const mk = (id: string, url: string) =>
      redisCluster({ url, nodeId: id, heartbeatMs: HEARTBEAT, missedBeats: 60, prefix });
    const [a, b] = [mk('a', proxy.url), mk('b', redis.url)];
    try {
      for (const c of [a, b]) await c.bus.start();
      assert.deepEqual(await b.registry.lookup('cut@x'), []); // cached on b: empty
      proxy.cut('blackhole');
      await a.registry.put(entry('cut@x', 'r', 'a')); // times out; no reconnect will follow
      // long enough for the first retry, a heartbeat later, to time out as well
      await new Promise((r) => setTimeout(r, 3000));
      proxy.heal();
      await eventually(
        () =>
          assert.deepEqual(
            b.registry.lookupNow('cut@x')?.map((e) => e.resource),
            ['r'],
          ),
        10_000,
      );
    } finally {
      for (const c of [a, b]) await c.bus.stop().catch(() => {});
      await proxy.stop();
    }
  });

  it('status lists the nodes with their sessions and Redis health', async () => {
    const [a] = await cluster(['a', 'b']);
    await a.registry.put(entry('s@x', 'r', 'a'));
    await eventually(async () => {
      const st = await a.bus.status();
      assert.equal(st.connected, true);
      assert.deepEqual(st.nodes.map((n) => n.id).sort(), ['a', 'b']);
      assert.equal(st.nodes.find((n) => n.id === 'a')?.sessions, 1);
      assert.match(String(st.health.redis_version), /^\d+\./);
    });
  });
});

async function redisKeys(bus: RedisBus, user: string): Promise<Record<string, string>> {
  return bus.pub.hgetall(bus.key('s', user));
}
