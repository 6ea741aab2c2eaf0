/**
 * PresenceService end to end over a real Broker with fake sessions:
 * subscription flows [RFC6121 3], broadcast and probes [RFC6121 4].
 */
import assert from 'node:assert/strict';
import type { Broker } from '../broker.ts';
import { closeReason } from '../errors.ts';
import {
  DOMAIN,
  eventually,
  jid,
  makeBroker,
  online,
  presence,
  settle,
  type FakeSession,
} from './helpers.ts';

const ALICE = `alice@${DOMAIN}`;
const BOB = `bob@${DOMAIN}`;
const CAROL = `carol@${DOMAIN}`;

/** Subscription state of owner's roster item for contact, Appendix A notation. */
async function sub(broker: Broker, owner: string, contact: string): Promise<string> {
  const it = await broker.roster.item(owner, contact);
  if (!it) return '(no item)';
  return it.subscription + (it.ask ? '+ask' : '') + (it.approved ? '+approved' : '');
}

/** Presence stanzas a session received, as "type from" strings. */
function seen(s: FakeSession): string[] {
  return s.got('presence').map((e) => `${e.type ?? 'available'} ${e.from.toString()}`);
}

describe('PresenceService', function () {
  let broker: Broker;
  let alice: FakeSession;
  let bob: FakeSession;

  beforeEach(async () => {
    broker = await makeBroker();
    alice = await online(broker, 'alice', 'phone', { interested: true });
    bob = await online(broker, 'bob', 'pc', { interested: true });
    alice.clear();
    bob.clear();
  });

  afterEach(async () => {
    await broker.stop();
  });

  /** alice subscribes to bob and bob approves. */
  async function aliceFollowsBob(): Promise<void> {
    await presence(broker, alice, { type: 'subscribe', to: BOB });
    await presence(broker, bob, { type: 'subscribed', to: ALICE });
  }

  describe('subscription request and approval [RFC6121 3.1]', function () {
    it('subscribe: the contact gets it from the bare JID; the user gets a roster push with ask [RFC6121 3.1.2, 3.1.3]', async () => {
      await presence(broker, alice, { type: 'subscribe', to: BOB });
      assert.deepEqual(seen(bob), [`subscribe ${ALICE}`]);
      assert.equal(await sub(broker, ALICE, BOB), 'none+ask');
      assert.equal(
        await sub(broker, BOB, ALICE),
        '(no item)',
        "the contact's roster is untouched until approval",
      );
      assert.deepEqual(
        alice.pushes.map((p) => [p.item.jid, p.item.subscription, p.item.ask]),
        [[BOB, 'none', true]],
      );
    });

    it('subscribed: both rosters move (to / from), the user is told and gets the contact’s presence [RFC6121 3.1.5, 3.1.6]', async () => {
      await aliceFollowsBob();
      assert.equal(await sub(broker, ALICE, BOB), 'to');
      assert.equal(await sub(broker, BOB, ALICE), 'from');
      assert.deepEqual(seen(alice), [`subscribed ${BOB}`, `available ${BOB}/pc`]);
      assert.deepEqual(
        bob.pushes.map((p) => [p.item.jid, p.item.subscription]),
        [[ALICE, 'from']],
      );
      assert.deepEqual(
        alice.pushes.map((p) => [p.item.subscription, !!p.item.ask]),
        [
          ['none', true],
          ['to', false],
        ],
      );
    });

    it('afterwards the subscriber gets the contact’s presence changes, not the other way round [RFC6121 4.2.2, 4.4.2]', async () => {
      await aliceFollowsBob();
      alice.clear();
      bob.clear();
      await presence(broker, bob, { show: 'away' });
      await presence(broker, alice, { show: 'dnd' });
      assert.deepEqual(seen(alice), [`available ${BOB}/pc`, `available ${ALICE}/phone`]);
      assert.equal(alice.got('presence')[0].show, 'away');
      assert.deepEqual(seen(bob), [`available ${BOB}/pc`], 'bob only sees his own echo');
    });

    it('mutual subscription makes both', async () => {
      await aliceFollowsBob();
      await presence(broker, bob, { type: 'subscribe', to: ALICE });
      await presence(broker, alice, { type: 'subscribed', to: BOB });
      assert.equal(await sub(broker, ALICE, BOB), 'both');
      assert.equal(await sub(broker, BOB, ALICE), 'both');
    });

    it('a request to an offline contact is kept and delivered when it sends initial presence [RFC6121 3.1.3]', async () => {
      await broker.sessions.unbind(bob, closeReason('client-closed'));
      await settle();
      await presence(broker, alice, { type: 'subscribe', to: BOB });
      const bob2 = await online(broker, 'bob', 'laptop', { interested: true });
      assert.deepEqual(
        bob2.got('presence', 'subscribe').map((e) => e.from.toString()),
        [ALICE],
      );
      await presence(broker, bob2, { type: 'subscribed', to: ALICE });
      assert.equal(await sub(broker, ALICE, BOB), 'to');
      assert.deepEqual(
        alice.got('presence', 'subscribed').map((e) => e.from.toString()),
        [BOB],
      );
    });

    // RFC 6121 2.2, Implementation Note: "Presence subscription requests are sent to available
    // resources, whereas the roster pushes associated with subscription state changes are sent to
    // interested resources."
    it('a subscription request goes to every available resource, interested or not [RFC6121 3.1.3, 2.2]', async () => {
      const quiet = await online(broker, 'bob', 'quiet', { interested: false });
      const connected = await online(broker, 'bob', 'connected', {
        available: false,
        interested: true,
      });
      await presence(broker, alice, { type: 'subscribe', to: BOB });
      assert.equal(bob.got('presence', 'subscribe').length, 1);
      assert.equal(quiet.got('presence', 'subscribe').length, 1, 'available, not interested');
      assert.equal(
        connected.got('presence', 'subscribe').length,
        0,
        'not available: gets it on initial presence',
      );
    });

    it('the approval goes to every interested resource, available or not [RFC6121 3.1.6, 2.2]', async () => {
      const connected = await online(broker, 'alice', 'connected', {
        available: false,
        interested: true,
      });
      await aliceFollowsBob();
      assert.equal(connected.got('presence', 'subscribed').length, 1);
      assert.deepEqual(
        connected.pushes.map((p) => p.item.subscription),
        ['none', 'to'],
        'and the roster pushes',
      );
    });

    it('a repeated subscribe while pending is delivered again but keeps one pending request', async () => {
      await presence(broker, alice, { type: 'subscribe', to: BOB });
      await presence(broker, alice, { type: 'subscribe', to: BOB });
      const bob2 = await online(broker, 'bob', 'second', { interested: true });
      assert.equal(
        bob2.got('presence', 'subscribe').length,
        1,
        'one pending request per requester',
      );
    });

    it('subscribe to a nonexistent user: the server answers unsubscribed on its behalf [RFC6121 3.1.3]', async () => {
      await presence(broker, alice, { type: 'subscribe', to: `nobody@${DOMAIN}` });
      assert.deepEqual(seen(alice), [`unsubscribed nobody@${DOMAIN}`]);
      assert.equal(await sub(broker, ALICE, `nobody@${DOMAIN}`), 'none');
    });

    it('subscribe to oneself is ignored', async () => {
      await presence(broker, alice, { type: 'subscribe', to: ALICE });
      assert.equal(await sub(broker, ALICE, ALICE), '(no item)');
      assert.equal(alice.got('presence', 'subscribe').length, 0);
    });

    it('the server stamps the bare JID as from on subscription stanzas [RFC6121 3.1.2]', async () => {
      await presence(broker, alice, { type: 'subscribe', to: `${BOB}/pc` });
      const [req] = bob.got('presence', 'subscribe');
      assert.equal(req.from.toString(), ALICE);
      assert.equal(req.to.toString(), BOB);
    });
  });

  describe('refusal, cancellation, pre-approval [RFC6121 3.2-3.4]', function () {
    it('unsubscribed to a pending request: refused; the user is told, ask cleared, request forgotten [RFC6121 3.2]', async () => {
      await presence(broker, alice, { type: 'subscribe', to: BOB });
      await presence(broker, bob, { type: 'unsubscribed', to: ALICE });
      assert.deepEqual(
        alice.got('presence', 'unsubscribed').map((e) => e.from.toString()),
        [BOB],
      );
      assert.equal(await sub(broker, ALICE, BOB), 'none');
      const bob2 = await online(broker, 'bob', 'later', { interested: true });
      assert.equal(
        bob2.got('presence', 'subscribe').length,
        0,
        'the refused request is not redelivered',
      );
    });

    it('unsubscribed after approval revokes: rosters back to none, the user gets unsubscribed and unavailable [RFC6121 3.2.2, 3.2.3]', async () => {
      await aliceFollowsBob();
      alice.clear();
      await presence(broker, bob, { type: 'unsubscribed', to: ALICE });
      assert.equal(await sub(broker, ALICE, BOB), 'none');
      assert.equal(await sub(broker, BOB, ALICE), 'none');
      assert.deepEqual(seen(alice).sort(), [`unavailable ${BOB}/pc`, `unsubscribed ${BOB}`]);
    });

    it('unsubscribe cancels the user’s own subscription: the contact is told; the user gets unavailable [RFC6121 3.3]', async () => {
      await aliceFollowsBob();
      alice.clear();
      bob.clear();
      await presence(broker, alice, { type: 'unsubscribe', to: BOB });
      assert.equal(await sub(broker, ALICE, BOB), 'none');
      assert.equal(await sub(broker, BOB, ALICE), 'none');
      assert.deepEqual(seen(bob), [`unsubscribe ${ALICE}`]);
      assert.deepEqual(seen(alice), [`unavailable ${BOB}/pc`]);
      await presence(broker, bob, { show: 'chat' });
      assert.equal(alice.got('presence').length, 1, 'no more presence from bob');
    });

    it('pre-approval: subscribed without a request routes nothing; the later request is approved automatically [RFC6121 3.4]', async () => {
      await presence(broker, bob, { type: 'subscribed', to: ALICE });
      assert.equal(alice.got('presence').length, 0, 'nothing routed for a pre-approval');
      assert.equal(await sub(broker, BOB, ALICE), 'none+approved');
      await presence(broker, alice, { type: 'subscribe', to: BOB });
      assert.equal(bob.got('presence', 'subscribe').length, 0, 'the contact is not asked');
      assert.equal(await sub(broker, ALICE, BOB), 'to');
      assert.equal(await sub(broker, BOB, ALICE), 'from');
      assert.deepEqual(seen(alice), [`subscribed ${BOB}`, `available ${BOB}/pc`]);
    });

    it('a subscribe from an already-approved subscriber is answered subscribed at once [RFC6121 3.1.3]', async () => {
      await aliceFollowsBob();
      alice.clear();
      bob.clear();
      await presence(broker, alice, { type: 'subscribe', to: BOB });
      assert.equal(bob.got('presence', 'subscribe').length, 0);
      assert.deepEqual(
        alice.got('presence', 'subscribed').map((e) => e.from.toString()),
        [BOB],
      );
    });

    it('roster remove of a both-contact sends unsubscribe and unsubscribed; both rosters end at none [RFC6121 2.5.2]', async () => {
      await aliceFollowsBob();
      await presence(broker, bob, { type: 'subscribe', to: ALICE });
      await presence(broker, alice, { type: 'subscribed', to: BOB });
      bob.clear();
      const before = await broker.roster.remove(ALICE, BOB);
      await broker.presence.rosterRemoved(jid(ALICE), before);
      assert.deepEqual(
        bob
          .got('presence')
          .filter((e) => e.type === 'unsubscribe' || e.type === 'unsubscribed')
          .map((e) => e.type)
          .sort(),
        ['unsubscribe', 'unsubscribed'],
      );
      assert.equal(await sub(broker, BOB, ALICE), 'none');
      assert.ok(seen(bob).includes(`unavailable ${ALICE}/phone`), 'bob stops seeing alice');
    });
  });

  describe('broadcast and probes [RFC6121 4]', function () {
    it('initial presence: the user gets the current presence of contacts it is subscribed to and of its own other resources [RFC6121 4.2.2, 4.2.3]', async () => {
      await aliceFollowsBob();
      const tablet = await online(broker, 'alice', 'tablet');
      assert.deepEqual(seen(tablet).sort(), [
        `available ${ALICE}/phone`,
        `available ${ALICE}/tablet`,
        `available ${BOB}/pc`,
      ]);
      assert.deepEqual(
        seen(alice).slice(-1),
        [`available ${ALICE}/tablet`],
        'the other resource hears the new one',
      );
    });

    it('subscribers get the presence; non-subscribers do not [RFC6121 4.2.2]', async () => {
      await aliceFollowsBob();
      const carol = await online(broker, 'carol', 'pc');
      carol.clear();
      alice.clear();
      await presence(broker, bob, { show: 'xa' });
      assert.deepEqual(seen(alice), [`available ${BOB}/pc`]);
      assert.deepEqual(seen(carol), []);
    });

    it('ending a session sends unavailable to subscribers and to the user’s other resources [RFC6121 4.5.2]', async () => {
      await aliceFollowsBob();
      const bob2 = await online(broker, 'bob', 'tablet');
      alice.clear();
      bob2.clear();
      await broker.sessions.unbind(bob, closeReason('client-closed'));
      await eventually(() => {
        assert.deepEqual(seen(alice), [`unavailable ${BOB}/pc`]);
        assert.deepEqual(seen(bob2), [`unavailable ${BOB}/pc`]);
      });
    });

    it('a session that never sent presence ends without any broadcast [RFC6121 4.5.2]', async () => {
      await aliceFollowsBob();
      const lurker = await online(broker, 'bob', 'lurker', { available: false });
      alice.clear();
      await broker.sessions.unbind(lurker, closeReason('client-closed'));
      await settle();
      assert.deepEqual(seen(alice), []);
    });

    it('directed presence reaches a non-contact; it hears unavailable when the session ends [RFC6121 4.6]', async () => {
      const carol = await online(broker, 'carol', 'pc');
      carol.clear();
      await presence(broker, alice, { to: CAROL });
      assert.deepEqual(seen(carol), [`available ${ALICE}/phone`]);
      await broker.sessions.unbind(alice, closeReason('client-closed'));
      await eventually(() =>
        assert.deepEqual(seen(carol), [`available ${ALICE}/phone`, `unavailable ${ALICE}/phone`]),
      );
    });

    it('a probe from a subscriber is answered with the presence of each available resource [RFC6121 4.3.2]', async () => {
      await aliceFollowsBob();
      const bob2 = await online(broker, 'bob', 'tablet', { priority: 3 });
      alice.clear();
      await presence(broker, alice, { type: 'probe', to: BOB });
      assert.deepEqual(seen(alice).sort(), [`available ${BOB}/pc`, `available ${BOB}/tablet`]);
      assert.equal(alice.got('presence').find((e) => e.from.resource === 'tablet')?.priority, 3);
      void bob2;
    });

    it('a probe from a subscriber while the contact is offline is answered unavailable [RFC6121 4.3.2]', async () => {
      await aliceFollowsBob();
      await broker.sessions.unbind(bob, closeReason('client-closed'));
      await settle();
      alice.clear();
      await presence(broker, alice, { type: 'probe', to: BOB });
      assert.deepEqual(seen(alice), [`unavailable ${BOB}`]);
    });

    it('a probe from a non-subscriber gets nothing [RFC6121 4.3.2]', async () => {
      const carol = await online(broker, 'carol', 'pc');
      carol.clear();
      await presence(broker, carol, { type: 'probe', to: BOB });
      assert.deepEqual(seen(carol), []);
    });

    it('priority is taken from presence and bounds bare-JID delivery [RFC6121 4.7.2.3]', async () => {
      await presence(broker, bob, { priority: -3 });
      assert.equal(bob.priority, -3);
      const [entry] = await broker.cluster.registry.lookup(BOB);
      assert.equal(entry.priority, -3, 'the registry sees the new priority');
      assert.equal(entry.available, true);
    });

    it('unavailable presence makes the session unavailable in the registry and to subscribers [RFC6121 4.5]', async () => {
      await aliceFollowsBob();
      alice.clear();
      await presence(broker, bob, { type: 'unavailable' });
      assert.equal(bob.available, false);
      assert.equal((await broker.cluster.registry.lookup(BOB))[0].available, false);
      assert.deepEqual(seen(alice), [`unavailable ${BOB}/pc`]);
    });
  });
});
