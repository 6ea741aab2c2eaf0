/**
 * The core on a cluster: brokers on the Redis cluster backend (real
 * redis-server) sharing one store, with fake sessions: messages, presence
 * and roster pushes cross nodes; a dead node's sessions are purged once and
 * their contacts told; what cannot cross goes to offline storage.
 */
import assert from 'node:assert/strict';
import { redisCluster } from '../../cluster/redis/index.ts';
import type { RedisBus } from '../../cluster/redis/bus.ts';
import { startRedis, type TestRedis } from '../../conformance/redis-server.ts';
import { MemoryStorage } from '../../storage/memory.ts';
import type { Broker } from '../broker.ts';
import {
  DOMAIN,
  eventually,
  jid,
  makeBroker,
  message,
  online,
  presence,
  type FakeSession,
} from './helpers.ts';

const ALICE = `alice@${DOMAIN}`;
const BOB = `bob@${DOMAIN}`;
const HEARTBEAT = 150;

/** "type from" of the presence stanzas a session got ('available' for no type). */
const presences = (s: FakeSession) =>
  s.got('presence').map((e) => `${e.type ?? 'available'} ${e.from.toString()}`);
const bodies = (s: FakeSession) => s.got('message').map((e) => e.body);

describe('broker on a Redis cluster', function () {
  this.timeout(30_000);
  let redis: TestRedis;
  let n1: Broker;
  let n2: Broker;
  let n3: Broker;
  let storage: MemoryStorage;

  async function node(id: string, prefix: string): Promise<Broker> {
    const c = redisCluster({ url: redis.url, nodeId: id, heartbeatMs: HEARTBEAT, prefix });
    return makeBroker({}, [], storage, c.registry, c);
  }

  before(async () => {
    redis = await startRedis();
  });
  beforeEach(async () => {
    storage = new MemoryStorage();
    const prefix = `b${Math.random().toString(36).slice(2, 8)}`;
    n1 = await node('n1', prefix);
    n2 = await node('n2', prefix);
    n3 = await node('n3', prefix);
    for (const u of ['alice', 'bob', 'carol']) await n1.accounts.create(u, `${u}-pw`);
  });
  afterEach(async () => {
    for (const b of [n1, n2, n3]) await b?.stop().catch(() => {});
  });
  after(async () => {
    await redis?.dispose();
  });

  async function friends(a: FakeSession, an: Broker, b: FakeSession, bn: Broker): Promise<void> {
    await presence(an, a, { type: 'subscribe', to: BOB });
    await presence(bn, b, { type: 'subscribed', to: ALICE });
    await presence(bn, b, { type: 'subscribe', to: ALICE });
    await presence(an, a, { type: 'subscribed', to: BOB });
  }

  it('a message to a user on another node reaches every device there, stored once with its seq', async () => {
    const alice = await online(n1, 'alice', 'pc');
    const phone = await online(n2, 'bob', 'phone');
    const pc = await online(n2, 'bob', 'pc');
    const sent = await message(n1, alice, BOB, { body: 'across' });
    await eventually(() => {
      assert.deepEqual(bodies(phone), ['across']);
      assert.deepEqual(bodies(pc), ['across']);
    });
    assert.equal(phone.got('message')[0].seq, sent.seq);
    assert.ok(sent.seq! > 0);
  });

  it('presence: a contact on another node is seen at login (probe across nodes) and when it changes [RFC6121 4.2.2, 4.4.2]', async () => {
    const alice = await online(n1, 'alice', 'pc');
    const bob = await online(n2, 'bob', 'phone');
    await friends(alice, n1, bob, n2);
    // Alice logs in again on n3: bob's presence, held on n2, is probed for her.
    const laptop = await online(n3, 'alice', 'laptop');
    await eventually(() =>
      assert.ok(presences(laptop).includes(`available ${BOB}/phone`), presences(laptop).join(', ')),
    );
    // Her own other device on n1 too (a user's resources see each other).
    await eventually(() =>
      assert.ok(presences(laptop).includes(`available ${ALICE}/pc`), presences(laptop).join(', ')),
    );
    await presence(n2, bob, { type: 'unavailable' });
    await eventually(() => assert.ok(presences(laptop).includes(`unavailable ${BOB}/phone`)));
  });

  it("roster pushes reach the user's interested sessions on other nodes [RFC6121 2.1.6]", async () => {
    const alice = await online(n1, 'alice', 'pc', { interested: true });
    const other = await online(n2, 'alice', 'phone', { interested: true });
    await presence(n1, alice, { type: 'subscribe', to: BOB });
    await eventually(() =>
      assert.deepEqual(
        other.pushes.map((p) => [p.item.jid, p.item.ask]),
        [[BOB, true]],
      ),
    );
  });

  it('a node killed: after 3 heartbeats one node purges its sessions, contacts get unavailable, messages go offline', async () => {
    const alice = await online(n1, 'alice', 'pc');
    const bob = await online(n2, 'bob', 'phone');
    await friends(alice, n1, bob, n2);
    await (n2.cluster.bus as RedisBus).abandon();
    await eventually(
      () =>
        assert.ok(
          presences(alice).includes(`unavailable ${BOB}/phone`),
          presences(alice).join(', '),
        ),
      5000,
    );
    assert.equal(
      presences(alice).filter((p) => p === `unavailable ${BOB}/phone`).length,
      1,
      'told once',
    );
    assert.deepEqual(await n1.cluster.registry.lookup(BOB), []);
    await message(n1, alice, BOB, { body: 'while away' });
    const back = await online(n3, 'bob', 'laptop');
    await eventually(() => assert.deepEqual(bodies(back), ['while away']));
  });

  it('a message to a node that died but is not yet declared dead goes to offline storage, not lost', async () => {
    const alice = await online(n1, 'alice', 'pc');
    await online(n2, 'bob', 'phone');
    await n1.cluster.registry.lookup(BOB);
    await (n2.cluster.bus as RedisBus).abandon();
    await message(n1, alice, BOB, { body: 'in the gap' });
    assert.deepEqual(
      (await n1.offline.peek(jid(BOB))).map((e) => e.body),
      ['in the gap'],
    );
  });

  // Last: it kills the suite's redis-server (and starts it again).
  it('Redis away: local traffic goes on, a message for another node waits offline; back, messages cross again', async () => {
    const alice = await online(n1, 'alice', 'pc');
    const carol = await online(n1, 'carol', 'pc');
    const bob = await online(n2, 'bob', 'phone');
    await redis.kill9();
    await eventually(() => assert.equal((n1.cluster.bus as RedisBus).connected, false), 5000);
    await message(n1, alice, `carol@${DOMAIN}`, { body: 'local' });
    assert.deepEqual(bodies(carol), ['local']);
    await message(n1, alice, BOB, { body: 'for later' });
    assert.deepEqual(
      (await n1.offline.peek(jid(BOB))).map((e) => e.body),
      ['for later'],
    );
    assert.deepEqual(bodies(bob), []);
    await redis.restart();
    // Both back and n2's sessions written again: until then a message between them takes the offline path too.
    await eventually(async () => {
      assert.ok([n1, n2].every((b) => (b.cluster.bus as RedisBus).connected));
      assert.deepEqual(
        (await n1.cluster.registry.lookup(BOB)).map((e) => e.node),
        ['n2'],
      );
    }, 15_000);
    await message(n1, alice, BOB, { body: 'live again' });
    await eventually(() => assert.deepEqual(bodies(bob), ['live again']), 5000);
  });
});
