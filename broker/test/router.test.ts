/**
 * Router over a real Broker (MemoryStorage, single-node cluster) with fake
 * sessions: store-then-sync, offline queue, multi-device delivery and the
 * delivery rules of RFC 6121 §8.5.
 */
import assert from 'node:assert/strict';
import { LocalRegistry } from '../../cluster/local.ts';
import type { SessionRegistry } from '../../cluster/types.ts';
import type { Broker } from '../broker.ts';
import type { Envelope } from '../envelope.ts';
import {
  DOMAIN,
  errorOf,
  eventually,
  jid,
  makeBroker,
  message,
  online,
  settle,
  type FakeSession,
} from './helpers.ts';

const ALICE = `alice@${DOMAIN}`;
const BOB = `bob@${DOMAIN}`;
const CAROL = `carol@${DOMAIN}`;

/** A registry without its synchronous answer: the router must ask it, as it would a registry shared between nodes. */
function askOnly(r: LocalRegistry): SessionRegistry {
  return {
    put: (e) => r.put(e),
    remove: (u, res, id) => r.remove(u, res, id),
    lookup: (u) => r.lookup(u),
    byNode: (n) => r.byNode(n),
    purgeNode: (n) => r.purgeNode(n),
  };
}

// Every rule holds whether the registry answers at once (lookupNow, the router's fast path) or must be asked.
const registries: [string, () => SessionRegistry][] = [
  ['registry answers at once', () => new LocalRegistry()],
  ['registry must be asked', () => askOnly(new LocalRegistry())],
];

for (const [variant, makeRegistry] of registries)
  describe(`Router (${variant})`, function () {
    let broker: Broker;
    let alice: FakeSession;

    beforeEach(async () => {
      broker = await makeBroker({}, undefined, undefined, makeRegistry());
      alice = await online(broker, 'alice', 'phone');
    });

    afterEach(async () => {
      await broker.stop();
    });

    describe('store, then sync [docs/architecture.md principles 1, 2]', function () {
      it('every chat message is archived with its seq before it is delivered', async () => {
        const bob = await online(broker, 'bob', 'pc');
        const atDelivery: Promise<{ envelopes: Envelope[] }>[] = [];
        // What the archive holds at the moment of delivery (the memory store answers synchronously).
        bob.onDeliver = (env) =>
          void (
            env.kind === 'message' && atDelivery.push(broker.archive.query(jid(ALICE), jid(BOB)))
          );
        for (let i = 0; i < 3; i++) await message(broker, alice, BOB, { body: `m${i}` });
        assert.deepEqual(
          bob.got('message').map((e) => e.seq),
          [1, 2, 3],
          'seq set before delivery, strictly increasing',
        );
        const views = await Promise.all(atDelivery);
        views.forEach((v, i) => {
          assert.deepEqual(
            v.envelopes.map((e) => e.body),
            ['m0', 'm1', 'm2'].slice(0, i + 1),
            `message ${i} was in the archive when delivered`,
          );
        });
      });

      it('seq is per conversation: both directions share one, other pairs start at 1', async () => {
        const bob = await online(broker, 'bob', 'pc');
        const carol = await online(broker, 'carol', 'pc');
        await message(broker, alice, BOB);
        await message(broker, bob, ALICE);
        await message(broker, alice, CAROL);
        await message(broker, alice, BOB);
        assert.deepEqual(
          bob.got('message').map((e) => e.seq),
          [1, 3],
        );
        assert.deepEqual(
          alice.got('message').map((e) => e.seq),
          [2],
        );
        assert.deepEqual(
          carol.got('message').map((e) => e.seq),
          [1],
        );
        assert.equal(await broker.archive.lastSeq(jid(BOB), jid(ALICE)), 3);
      });

      it('concurrent messages in one conversation get distinct seqs 1..n', async () => {
        const bob = await online(broker, 'bob', 'pc');
        await Promise.all(
          Array.from({ length: 25 }, (_, i) => message(broker, alice, BOB, { body: `c${i}` })),
        );
        assert.deepEqual(
          bob
            .got('message')
            .map((e) => e.seq)
            .sort((a, b) => a! - b!),
          Array.from({ length: 25 }, (_, i) => i + 1),
        );
      });

      it('a message for an offline user is archived too, with a seq and a timestamp', async () => {
        const env = await message(broker, alice, BOB, { body: 'while you were out' });
        assert.equal(env.seq, 1);
        assert.equal(typeof env.timestamp, 'number');
        const { envelopes } = await broker.archive.query(jid(ALICE), jid(BOB));
        assert.deepEqual(
          envelopes.map((e) => [e.seq, e.body]),
          [[1, 'while you were out']],
        );
      });

      it('a message with no body (chat state) is neither archived nor queued [XEP-0085 5.6, XEP-0160 3]', async () => {
        const env = await message(broker, alice, BOB, { body: null });
        assert.equal(env.seq, undefined);
        assert.equal(await broker.archive.lastSeq(jid(ALICE), jid(BOB)), 0);
        assert.equal(await broker.offline.count(jid(BOB)), 0);
      });

      it("emits 'message:stored' after the append", async () => {
        const seen: (number | undefined)[] = [];
        broker.hooks.on('message:stored', (env) => void seen.push(env.seq));
        await message(broker, alice, BOB);
        assert.deepEqual(seen, [1]);
      });
    });

    describe('offline queue [XEP-0160, docs/architecture.md principle 5]', function () {
      it('a message to a user with no session is queued, then delivered with a delay stamp on initial presence [XEP-0203]', async () => {
        await message(broker, alice, BOB, { body: 'one', id: 'o1' });
        await message(broker, alice, BOB, { body: 'two', id: 'o2', type: 'normal' });
        assert.equal(await broker.offline.count(jid(BOB)), 2);
        const bob = await online(broker, 'bob', 'pc');
        await eventually(() => assert.equal(bob.got('message').length, 2));
        assert.deepEqual(
          bob.got('message').map((e) => [e.id, e.body, e.seq]),
          [
            ['o1', 'one', 1],
            ['o2', 'two', 2],
          ],
        );
        const d = bob.got('message')[0].delay;
        assert.equal(d?.from, DOMAIN);
        assert.equal(typeof d?.stamp, 'number');
        assert.equal(await broker.offline.count(jid(BOB)), 0, 'removed once handed over');
      });

      it('a bound session that has not sent presence does not count as available: the message is queued [RFC6121 8.5.2.2.1]', async () => {
        const bob = await online(broker, 'bob', 'pc', { available: false });
        await message(broker, alice, BOB);
        assert.equal(bob.got('message').length, 0);
        assert.equal(await broker.offline.count(jid(BOB)), 1);
      });

      it('only negative-priority sessions: queued, and not flushed to a negative-priority session [RFC6121 8.5.2.1.1, XEP-0160 3]', async () => {
        const bob = await online(broker, 'bob', 'pc', { priority: -1 });
        await message(broker, alice, BOB);
        await settle();
        assert.equal(bob.got('message').length, 0);
        assert.equal(await broker.offline.count(jid(BOB)), 1);
      });

      it('past offlineMaxPerUser the sender gets service-unavailable [XEP-0160 4]', async () => {
        await broker.stop();
        broker = await makeBroker({ offlineMaxPerUser: 2 }, undefined, undefined, makeRegistry());
        alice = await online(broker, 'alice', 'phone');
        await message(broker, alice, BOB, { id: 'q1' });
        await message(broker, alice, BOB, { id: 'q2' });
        assert.equal(alice.delivered.filter((e) => e.kind === 'message').length, 0);
        await message(broker, alice, BOB, { id: 'q3' });
        const errors = alice.got('message', 'error');
        assert.equal(errors.length, 1);
        assert.equal(errorOf(errors[0]), 'service-unavailable');
        assert.equal(errors[0].id, 'q3');
        assert.equal(errors[0].from.toString(), BOB);
        assert.equal(await broker.offline.count(jid(BOB)), 2);
      });

      it('headline messages are not queued [RFC6121 8.5.2.2.1]', async () => {
        await message(broker, alice, BOB, { type: 'headline' });
        assert.equal(await broker.offline.count(jid(BOB)), 0);
        assert.equal(alice.got('message', 'error').length, 0);
      });

      it('a queued message survives a second login without presence and reaches the later available one', async () => {
        await message(broker, alice, BOB, { body: 'kept' });
        await online(broker, 'bob', 'watch', { available: false });
        const bob = await online(broker, 'bob', 'pc');
        await eventually(() =>
          assert.deepEqual(
            bob.got('message').map((e) => e.body),
            ['kept'],
          ),
        );
      });
    });

    describe('bare JID delivery [RFC6121 8.5.2]', function () {
      it('every available session with non-negative priority gets it; negative and unavailable ones do not [RFC6121 8.5.2.1.1, docs/architecture.md principle 4]', async () => {
        const high = await online(broker, 'bob', 'high', { priority: 5 });
        const zero = await online(broker, 'bob', 'zero', { priority: 0 });
        const neg = await online(broker, 'bob', 'neg', { priority: -1 });
        const silent = await online(broker, 'bob', 'silent', { available: false });
        await message(broker, alice, BOB, { id: 'x' });
        assert.deepEqual(
          [high, zero, neg, silent].map((s) => s.got('message').map((e) => e.id)),
          [['x'], ['x'], [], []],
        );
        assert.equal(await broker.offline.count(jid(BOB)), 0);
      });

      it('a message to a nonexistent user → service-unavailable to the sender [RFC6121 8.5.1]', async () => {
        await message(broker, alice, `nobody@${DOMAIN}`, { id: 'n1' });
        const [err] = alice.got('message', 'error');
        assert.equal(errorOf(err), 'service-unavailable');
        assert.equal(err.id, 'n1');
        assert.equal(err.to.toString(), alice.address.toString());
      });

      it('an error message to a user is never answered and never queued [RFC6120 8.3.1]', async () => {
        await message(broker, alice, `nobody@${DOMAIN}`, { type: 'error' });
        await message(broker, alice, BOB, { type: 'error' });
        assert.equal(alice.got('message').length, 0);
        assert.equal(await broker.offline.count(jid(BOB)), 0);
      });

      it('groupchat to a user → service-unavailable, not delivered [RFC6121 8.5.2.1.1]', async () => {
        const bob = await online(broker, 'bob', 'pc');
        await message(broker, alice, BOB, { type: 'groupchat' });
        assert.equal(bob.got('message').length, 0);
        assert.equal(errorOf(alice.got('message', 'error')[0]), 'service-unavailable');
      });

      it('a message to another domain → remote-server-not-found (no federation) [RFC6120 8.3.3.16]', async () => {
        await message(broker, alice, 'someone@elsewhere.example');
        assert.equal(errorOf(alice.got('message', 'error')[0]), 'remote-server-not-found');
      });

      it("a message to the server itself goes to 'message:host'; unhandled → service-unavailable [RFC6120 10.3]", async () => {
        await message(broker, alice, DOMAIN, { id: 'h1' });
        assert.equal(errorOf(alice.got('message', 'error')[0]), 'service-unavailable');
        alice.clear();
        broker.hooks.on('message:host', () => true);
        await message(broker, alice, DOMAIN, { id: 'h2' });
        assert.equal(alice.delivered.length, 0);
      });
    });

    describe('full JID delivery [RFC6121 8.5.3]', function () {
      it('a message to a connected resource goes to that resource only, whatever its priority or availability [RFC6121 8.5.3.1]', async () => {
        const pc = await online(broker, 'bob', 'pc');
        const neg = await online(broker, 'bob', 'neg', { priority: -5 });
        const silent = await online(broker, 'bob', 'silent', { available: false });
        await message(broker, alice, `${BOB}/neg`, { id: 'a' });
        await message(broker, alice, `${BOB}/silent`, { id: 'b' });
        assert.deepEqual(
          [pc, neg, silent].map((s) => s.got('message').map((e) => e.id)),
          [[], ['a'], ['b']],
        );
      });

      it('a full-JID chat message is archived before delivery too', async () => {
        const pc = await online(broker, 'bob', 'pc');
        await message(broker, alice, `${BOB}/pc`);
        assert.equal(pc.got('message')[0].seq, 1);
      });

      it('chat or normal to an unknown resource is handled as if sent to the bare JID [RFC6121 8.5.3.2.1]', async () => {
        const a = await online(broker, 'bob', 'a');
        const b = await online(broker, 'bob', 'b', { priority: 1 });
        const neg = await online(broker, 'bob', 'neg', { priority: -1 });
        await message(broker, alice, `${BOB}/gone`, { id: 'c1', type: 'chat' });
        await message(broker, alice, `${BOB}/gone`, { id: 'n1', type: 'normal' });
        assert.deepEqual(
          [a, b, neg].map((s) => s.got('message').map((e) => e.id)),
          [['c1', 'n1'], ['c1', 'n1'], []],
        );
      });

      it('chat to an unknown resource of a user with no session is queued offline [RFC6121 8.5.3.2.1]', async () => {
        await message(broker, alice, `${BOB}/gone`);
        assert.equal(await broker.offline.count(jid(BOB)), 1);
      });

      it('groupchat to an unknown resource → service-unavailable [RFC6121 8.5.3.2.1]', async () => {
        await online(broker, 'bob', 'pc');
        await message(broker, alice, `${BOB}/gone`, { type: 'groupchat' });
        assert.equal(errorOf(alice.got('message', 'error')[0]), 'service-unavailable');
      });

      it('headline to an unknown resource is silently dropped [RFC6121 8.5.3.2.1]', async () => {
        const pc = await online(broker, 'bob', 'pc');
        await message(broker, alice, `${BOB}/gone`, { type: 'headline' });
        assert.equal(pc.got('message').length, 0);
        assert.equal(alice.got('message', 'error').length, 0);
      });

      it('an IQ to a connected full JID is delivered; to an unknown resource → service-unavailable [RFC6121 8.5.3.1, 8.5.3.2.3]', async () => {
        const pc = await online(broker, 'bob', 'pc');
        const iq = (to: string, id: string): Envelope => ({
          kind: 'iq',
          type: 'get',
          from: alice.address,
          to: jid(to),
          id,
          extensions: ["<ping xmlns='urn:xmpp:ping'/>"],
        });
        await broker.router.route(iq(`${BOB}/pc`, 'i1'), alice);
        assert.deepEqual(
          pc.got('iq').map((e) => e.id),
          ['i1'],
        );
        await broker.router.route(iq(`${BOB}/gone`, 'i2'), alice);
        const [err] = alice.got('iq', 'error');
        assert.equal(errorOf(err), 'service-unavailable');
        assert.equal(err.id, 'i2');
        assert.deepEqual(
          err.extensions,
          ["<ping xmlns='urn:xmpp:ping'/>"],
          'the request payload is returned',
        );
      });

      it('an IQ result or error to an unknown resource is dropped, never answered [RFC6120 8.2.3, 8.3.1]', async () => {
        for (const type of ['result', 'error']) {
          await broker.router.route(
            {
              kind: 'iq',
              type,
              from: alice.address,
              to: jid(`${BOB}/gone`),
              id: type,
              extensions: [],
            },
            alice,
          );
        }
        assert.equal(alice.got('iq').length, 0);
      });
    });

    describe("'route:filter'", function () {
      it('a filter returning null drops the envelope; one returning a new envelope rewrites it', async () => {
        const bob = await online(broker, 'bob', 'pc');
        broker.hooks.on('route:filter', (env) => (env && env.body === 'spam' ? null : undefined));
        broker.hooks.on(
          'route:filter',
          (env) => (env ? { ...env, body: env.body?.toUpperCase() } : env),
          -1,
        );
        await message(broker, alice, BOB, { body: 'spam' });
        await message(broker, alice, BOB, { body: 'ham' });
        assert.deepEqual(
          bob.got('message').map((e) => e.body),
          ['HAM'],
        );
        assert.equal(
          await broker.archive.lastSeq(jid(ALICE), jid(BOB)),
          1,
          'the dropped one was not archived',
        );
      });
    });
  });
