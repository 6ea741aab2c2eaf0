/**
 * aedes' fan-out across nodes (cluster/redis/mqtt.ts) against a real
 * redis-server: what reaches Redis and what Redis hands each node, counted
 * on the nodes' own subscriber connections, for hostile topic filters.
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { clusterMqEmitter, filterPattern, topicChannel } from '../redis/mqtt.ts';
import { startRedis, type TestRedis } from '../../conformance/redis-server.ts';

type Msg = { topic: string; payload?: unknown };
interface Mq {
  on(topic: string, fn: (m: Msg, done: () => void) => void, cb?: () => void): void;
  removeListener(topic: string, fn: (m: Msg, done: () => void) => void, cb?: () => void): void;
  emit(m: Msg, cb?: (err?: Error) => void): void;
  close(cb: () => void): void;
  subConn: Redis;
}

describe('cluster MQTT fan-out on Redis (mqemitter-redis with its channels namespaced and escaped)', function () {
  this.timeout(20_000);
  let redis: TestRedis;
  let a: Mq;
  let b: Mq;
  /** every message Redis handed node b's subscriber connection: its channel */
  const raw: string[] = [];
  const on = (mq: Mq, filter: string, got: string[]) =>
    new Promise<void>((r) =>
      mq.on(
        filter,
        (m, done) => {
          got.push(m.topic);
          done();
        },
        r,
      ),
    );
  const emit = (mq: Mq, topic: string) =>
    new Promise<void>((r, j) =>
      mq.emit({ topic, payload: Buffer.from('x') }, (e) => (e ? j(e) : r())),
    );
  /** publish `topic` from a and wait until b's listener on it has it: everything a sent before is through */
  const fence = async (got: string[], topic = 'fence') => {
    const n = got.filter((t) => t === topic).length;
    await emit(a, topic);
    const end = Date.now() + 5000;
    while (got.filter((t) => t === topic).length === n) {
      if (Date.now() > end) throw new Error('fence did not arrive');
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  before(async () => {
    redis = await startRedis();
    const make = (nodeId: string) =>
      clusterMqEmitter({
        url: redis.url,
        prefix: 'ut',
        nodeId,
        local: (t) => t === '$parley/consumed',
      }) as Promise<Mq>;
    a = await make('a');
    b = await make('b');
    b.subConn.on('messageBuffer', (ch: Buffer) => raw.push(ch.toString()));
    b.subConn.on('pmessageBuffer', (_p: Buffer, ch: Buffer) => raw.push(ch.toString()));
  });
  after(async () => {
    await new Promise<void>((r) => a?.close(r));
    await new Promise<void>((r) => b?.close(r));
    await redis?.dispose();
  });
  beforeEach(() => (raw.length = 0));

  it('maps filters to patterns: wildcards to *, every glob character of a level escaped, the prefix and namespace first [MQTT-4.7.1]', () => {
    assert.equal(topicChannel('p', 'a/b'), 'p:mqtt:a/b');
    assert.equal(filterPattern('p', 'a/+/c'), 'p:mqtt:a/*/c');
    assert.equal(filterPattern('p', 'a/#'), 'p:mqtt:a*'); // [MQTT-4.7.1-2] also the parent level
    assert.equal(filterPattern('p', '#'), 'p:mqtt:*');
    assert.equal(filterPattern('p', '*/?/[x]/\\/+'), 'p:mqtt:\\*/\\?/\\[x\\]/\\\\/*');
  });

  it('a message crosses to the other node once, also with a literal and a wildcard filter on the same topic', async () => {
    const got: string[] = [];
    await on(b, 'x/y', got);
    await on(b, 'x/+', got);
    await emit(a, 'x/y');
    await on(b, 'fence', got);
    await fence(got);
    // the local fan-out gives each of the two listeners the one message once
    assert.deepEqual(
      got.filter((t) => t === 'x/y'),
      ['x/y', 'x/y'],
    );
  });

  it('filters holding Redis glob characters do not widen what Redis sends the node (a*, ?/+, */+, [a-z]/#, \\)', async () => {
    const got: string[] = [];
    for (const f of ['a*', '?/+', '*/+', '[a-z]/#', 'q/\\/+', 'b?']) await on(b, f, got);
    await on(b, 'fence', got);
    raw.length = 0;
    for (const t of ['ab', 'a', 'k/v', 'z/1', 'q/x/1', 'bc', 'b']) await emit(a, t);
    await fence(got);
    assert.deepEqual(raw, ['ut:mqtt:fence'], `Redis sent node b: ${raw.join(', ')}`);
    assert.deepEqual(got, ['fence']);
    // the same filters get their own literal topics
    for (const t of ['a*', '?/1', '*/2', '[a-z]', '[a-z]/3', 'q/\\/4', 'b?']) await emit(a, t);
    await fence(got);
    assert.deepEqual(got.filter((t) => t !== 'fence').sort(), [
      '*/2',
      '?/1',
      '[a-z]',
      '[a-z]/3',
      'a*',
      'b?',
      'q/\\/4',
    ]);
  });

  it("'#' reaches no channel outside this cluster's MQTT namespace: not the bus's, not another cluster's", async () => {
    const got: string[] = [];
    await on(b, '#', got);
    const pub = new Redis(redis.url);
    try {
      for (const ch of ['ut:node:a', 'ut:all', 'ut2:mqtt:t', 'utx:mqtt:t', 'ut:mqtt']) {
        await pub.publish(ch, 'not for MQTT');
      }
    } finally {
      pub.disconnect();
    }
    await fence(got, 'after');
    assert.deepEqual(raw, ['ut:mqtt:after']);
  });

  it('topics kept local never reach Redis', async () => {
    const got: string[] = [];
    const watcher = new Redis(redis.url);
    const seen: string[] = [];
    try {
      await watcher.psubscribe('ut:*');
      watcher.on('pmessage', (_p, ch) => seen.push(ch));
      await on(a, '$parley/consumed', got);
      await on(b, 'fence', got);
      await emit(a, '$parley/consumed');
      await fence(got);
      assert.deepEqual(got, ['$parley/consumed', 'fence']);
      assert.deepEqual(seen, ['ut:mqtt:fence']);
    } finally {
      watcher.disconnect();
    }
  });

  it('the last listener of a filter unsubscribes its channel (mqemitter-redis 7.2.1 left literal ones)', async () => {
    const count = async (ch: string) => {
      const c = new Redis(redis.url);
      try {
        return Number(((await c.call('PUBSUB', 'NUMSUB', ch)) as [string, number])[1]);
      } finally {
        c.disconnect();
      }
    };
    const fn = (_m: Msg, done: () => void) => done();
    await new Promise<void>((r) => b.on('gone/x', fn, r));
    assert.equal(await count('ut:mqtt:gone/x'), 1);
    await new Promise<void>((r) => b.removeListener('gone/x', fn, r));
    assert.equal(await count('ut:mqtt:gone/x'), 0);
  });

  it('Redis away: a publish reaches the subscribers of its own node; back, the subscriptions hold again across nodes', async () => {
    const here: string[] = [];
    const there: string[] = [];
    await on(a, 'down/x', here);
    await on(b, 'down/x', there);
    await redis.kill9();
    await emit(a, 'down/x'); // no error: delivered on this node
    assert.deepEqual(here, ['down/x']);
    await redis.restart();
    // ioredis subscribes again after its reconnect
    const end = Date.now() + 10_000;
    while (!there.includes('down/x')) {
      if (Date.now() > end) throw new Error('no message across nodes after Redis came back');
      await emit(a, 'down/x').catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
    }
  });
});
