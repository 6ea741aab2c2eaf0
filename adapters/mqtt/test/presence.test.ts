import assert from 'node:assert/strict';
import type { Broker } from '../../../broker/index.ts';
import { eventually, online, presence, type FakeSession } from '../../../broker/test/helpers.ts';
import {
  collect,
  grantedQos,
  nextMessage,
  sleepMs,
  startHarness,
  type Harness,
} from './harness.ts';

/** `watcher` subscribes to `owner`'s presence and `owner` approves [RFC6121 3.1]. */
async function follow(broker: Broker, watcher: FakeSession, owner: FakeSession): Promise<void> {
  await presence(broker, watcher, { type: 'subscribe', to: owner.address.bare().toString() });
  await presence(broker, owner, { type: 'subscribed', to: watcher.address.bare().toString() });
}

describe('mqtt presence: devices are resources of their account', () => {
  let h: Harness;
  let bob: FakeSession;
  beforeEach(async () => {
    h = await startHarness();
    const alice = await online(h.broker, 'alice', 'desktop', { interested: true });
    bob = await online(h.broker, 'bob', 'phone', { interested: true });
    await follow(h.broker, bob, alice); // bob sees alice
    await alice.close({ kind: 'client-closed' });
    await h.broker.sessions.unbind(alice, { kind: 'client-closed' });
    await sleepMs(30); // the unavailable broadcast runs after unbind
    bob.clear();
  });
  afterEach(() => h.stop());

  const fromDevice = (s: FakeSession, type?: string) =>
    s.delivered.filter(
      (e) =>
        e.kind === 'presence' && e.from.toString() === 'alice@localhost/dev1' && e.type === type,
    );

  it('shows a contact the device come online and go offline on DISCONNECT', async () => {
    const dev = await h.login('alice', 'dev1');
    await eventually(() => assert.equal(fromDevice(bob).length, 1));
    await dev.endAsync();
    await eventually(() => assert.equal(fromDevice(bob, 'unavailable').length, 1));
  });

  it('shows a contact the device go offline on an abrupt drop', async () => {
    const dev = await h.login('alice', 'dev1');
    await eventually(() => assert.equal(fromDevice(bob).length, 1));
    dev.stream.destroy();
    await eventually(() => assert.equal(fromDevice(bob, 'unavailable').length, 1));
  });

  it("publishes the device's own presence from presence/{me}", async () => {
    const dev = await h.login('alice', 'dev1');
    await eventually(() => assert.equal(fromDevice(bob).length, 1));
    await dev.publishAsync(
      'presence/alice',
      JSON.stringify({ show: 'dnd', status: 'updating firmware' }),
      { qos: 1 },
    );
    await eventually(() => assert.equal(fromDevice(bob).at(-1)?.show, 'dnd'));
    assert.equal(fromDevice(bob).at(-1)?.status, 'updating firmware');
  });

  it("drops a PUBLISH on someone else's presence topic", async () => {
    const dev = await h.login('carol', 'dev9');
    await dev.publishAsync('presence/alice', 'online', { qos: 1 });
    await sleepMs(50);
    assert.equal(bob.delivered.filter((e) => e.kind === 'presence').length, 0);
  });

  it('lets roster contacts subscribe to presence/{user} and sends them the current state, retained [MQTT-3.3.1-8]', async () => {
    const dev = await h.login('alice', 'dev1');
    await eventually(() => assert.equal(fromDevice(bob).length, 1));
    const bobDev = await h.login('bob', 'watch');
    const snap = nextMessage(bobDev, 'presence/alice');
    assert.deepEqual(await grantedQos(bobDev, ['presence/alice']), [0]);
    const m = await snap;
    assert.equal(m.retain, true);
    assert.deepEqual(JSON.parse(m.payload), {
      user: 'alice',
      jid: 'alice@localhost/dev1',
      available: true,
      priority: -1,
    });
    const later = nextMessage(bobDev, 'presence/alice');
    await dev.endAsync();
    assert.equal(JSON.parse((await later).payload).available, false);
  });

  it('refuses presence/{user} to a non-contact with 0x80, and gives it nothing', async () => {
    const carol = await h.login('carol', 'c1');
    assert.deepEqual(await grantedQos(carol, ['presence/alice', 'presence/carol']), [128, 0]);
    const seen = collect(carol, 'presence/alice');
    const dev = await h.login('alice', 'dev1');
    await eventually(() => assert.equal(fromDevice(bob).length, 1));
    await dev.endAsync();
    await sleepMs(50);
    assert.deepEqual(seen, []);
  });

  it('lets a device answer a subscription request from presence/{me}', async () => {
    const carol = await online(h.broker, 'carol', 'laptop', { interested: true });
    await presence(h.broker, carol, { type: 'subscribe', to: 'alice@localhost' });
    const dev = await h.login('alice', 'dev1');
    await dev.publishAsync('presence/alice', JSON.stringify({ type: 'subscribed', to: 'carol' }), {
      qos: 1,
    });
    const item = await h.broker.roster.item('carol@localhost', 'alice@localhost');
    assert.equal(item?.subscription, 'to');
  });
});
