import assert from 'node:assert/strict';
import { Address } from '../../../broker/index.ts';
import { eventually, message, online } from '../../../broker/test/helpers.ts';
import {
  collect,
  grantedQos,
  nextMessage,
  sleepMs,
  startHarness,
  type Harness,
} from './harness.ts';

describe('mqtt chat/{user}: one-to-one messages through the core', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(() => h.stop());

  const aliceSession = () => h.broker.sessions.get(Address.parse('alice@localhost/dev1'));

  it('delivers a message to the device as JSON with from, id, seq, timestamp, body', async () => {
    const dev = await h.login('alice', 'dev1');
    await dev.subscribeAsync('chat/alice', { qos: 1 });
    await eventually(() => assert.equal(aliceSession()?.priority, 0));
    const bob = await online(h.broker, 'bob', 'phone');
    const got = nextMessage(dev, 'chat/alice');
    await message(h.broker, bob, 'alice@localhost', { body: 'hi device', id: 'b1' });
    const m = await got;
    assert.equal(m.qos, 1);
    const json = JSON.parse(m.payload);
    assert.equal(json.from, 'bob@localhost');
    assert.equal(json.id, 'b1');
    assert.equal(json.body, 'hi device');
    assert.equal(typeof json.seq, 'number');
    assert.equal(typeof json.timestamp, 'number');
  });

  it('routes a PUBLISH on chat/{user} as a message, stored with a seq before the PUBACK', async () => {
    const bob = await online(h.broker, 'bob', 'phone');
    const dev = await h.login('alice', 'dev1');
    await dev.publishAsync('chat/bob', 'plain text', { qos: 1 });
    await dev.publishAsync('chat/bob', JSON.stringify({ body: 'json body', id: 'j1' }), { qos: 1 });
    const msgs = bob.got('message');
    assert.equal(msgs.length, 2, 'both routed by the time of the PUBACK');
    assert.equal(msgs[0].body, 'plain text');
    assert.equal(msgs[0].from.toString(), 'alice@localhost/dev1');
    assert.equal(msgs[1].id, 'j1');
    assert.ok(msgs[1].seq! > msgs[0].seq!, 'order kept');
    const page = await h.broker.archive.query(
      Address.parse('alice@localhost'),
      Address.parse('bob@localhost'),
    );
    assert.equal(page.envelopes.length, 2);
  });

  it('routes a QoS 2 message exactly once [MQTT-4.3.3-2]', async () => {
    const bob = await online(h.broker, 'bob', 'phone');
    const dev = await h.login('alice', 'dev1');
    await dev.publishAsync('chat/bob', 'once', { qos: 2 });
    await sleepMs(50);
    assert.equal(bob.got('message').length, 1);
  });

  it('answers a message to an unknown user with an error on chat/{me}', async () => {
    const dev = await h.login('alice', 'dev1');
    await dev.subscribeAsync('chat/alice', { qos: 0 });
    const got = nextMessage(dev, 'chat/alice');
    await dev.publishAsync('chat/nobody', JSON.stringify({ body: 'x', id: 'e1' }), { qos: 1 });
    const json = JSON.parse((await got).payload);
    assert.equal(json.type, 'error');
    assert.equal(json.id, 'e1');
    assert.equal(json.error.condition, 'service-unavailable');
  });

  it('answers a malformed payload with bad-request and routes nothing', async () => {
    const bob = await online(h.broker, 'bob', 'phone');
    const dev = await h.login('alice', 'dev1');
    await dev.subscribeAsync('chat/alice', { qos: 0 });
    const got = nextMessage(dev, 'chat/alice');
    await dev.publishAsync('chat/bob', '{"nobody":1}', { qos: 1 });
    assert.equal(JSON.parse((await got).payload).error.condition, 'bad-request');
    assert.equal(bob.got('message').length, 0);
  });

  it('keeps messages queued while the device has no chat subscription, and flushes them when it subscribes [XEP-0160]', async () => {
    const dev = await h.login('alice', 'dev1');
    await eventually(() => assert.equal(aliceSession()?.priority, -1));
    const bob = await online(h.broker, 'bob', 'phone');
    await message(h.broker, bob, 'alice@localhost', { body: 'while unsubscribed' });
    assert.equal(await h.broker.offline.count(Address.parse('alice@localhost')), 1);
    const got = nextMessage(dev, 'chat/alice');
    await dev.subscribeAsync('chat/alice', { qos: 1 });
    const json = JSON.parse((await got).payload);
    assert.equal(json.body, 'while unsubscribed');
    assert.equal(json.delayed, true);
    // removed from the queue once aedes holds the copy, which can be just after the client sees it
    await eventually(async () =>
      assert.equal(await h.broker.offline.count(Address.parse('alice@localhost')), 0),
    );
  });

  it('gives a persistent session its offline messages once on reconnect', async () => {
    let dev = await h.login('alice', 'dev1', { clean: false });
    await dev.subscribeAsync('chat/alice', { qos: 1 });
    await dev.endAsync();
    await eventually(() => assert.equal(aliceSession(), undefined));
    const bob = await online(h.broker, 'bob', 'phone');
    for (let i = 1; i <= 3; i++) await message(h.broker, bob, 'alice@localhost', { body: `m${i}` });
    dev = await h.login('alice', 'dev1', { clean: false });
    const got = collect(dev, 'chat/alice');
    await eventually(() =>
      assert.deepEqual(
        got.map((p) => JSON.parse(p).body),
        ['m1', 'm2', 'm3'],
      ),
    );
    await dev.endAsync();
    dev = await h.login('alice', 'dev1', { clean: false });
    const again = collect(dev, 'chat/alice');
    await sleepMs(200);
    assert.deepEqual(again, [], 'nothing twice');
  });

  it("refuses a subscription to another user's chat topic with 0x80 [MQTT-3.9.3-2]", async () => {
    const dev = await h.login('alice', 'dev1');
    assert.deepEqual(
      await grantedQos(dev, ['chat/bob', 'chat/alice', 'chat/Alice']),
      [128, 0, 128],
    );
  });

  it('never lets aedes route a chat PUBLISH to topic subscribers', async () => {
    const spy = await h.login('carol', 'spy');
    await spy.subscribeAsync('#');
    const seen = collect(spy, 'chat/bob');
    const dev = await h.login('alice', 'dev1');
    await dev.publishAsync('chat/bob', 'private', { qos: 1 });
    await sleepMs(100);
    assert.deepEqual(seen, []);
  });

  it('a message routed while the connection is gone but the session not yet unbound waits offline, and arrives once on reconnect [XEP-0160]', async () => {
    let dev = await h.login('alice', 'dev1', { clean: false });
    await dev.subscribeAsync('chat/alice', { qos: 1 });
    await eventually(() => assert.equal(aliceSession()?.priority, 0));
    const bob = await online(h.broker, 'bob', 'phone');
    // Close the device's aedes client; the core hears of it only after this tick, so the
    // message below is routed to a session whose connection is already gone.
    const clients = Object.values(
      (h.server.aedes as unknown as { clients: Record<string, { close(): void }> }).clients,
    );
    assert.equal(clients.length, 1);
    clients[0]!.close();
    await message(h.broker, bob, 'alice@localhost', { body: 'in the gap', id: 'g1' });
    await eventually(() => assert.equal(aliceSession(), undefined));
    assert.equal(
      await h.broker.offline.count(Address.parse('alice@localhost')),
      1,
      'kept in the offline queue',
    );
    dev = await h.login('alice', 'dev1', { clean: false });
    const got = collect(dev, 'chat/alice');
    await dev.subscribeAsync('chat/alice', { qos: 1 });
    await eventually(() => assert.equal(got.length, 1));
    await sleepMs(100);
    assert.deepEqual(
      got.map((p) => JSON.parse(p).body),
      ['in the gap'],
      'once',
    );
  });

  it('…but not when another device of the user had it too: it is not queued for a second delivery', async () => {
    const dev = await h.login('alice', 'dev1', { clean: false });
    await dev.subscribeAsync('chat/alice', { qos: 1 });
    await eventually(() => assert.equal(aliceSession()?.priority, 0));
    const phone = await online(h.broker, 'alice', 'phone');
    const bob = await online(h.broker, 'bob', 'phone');
    Object.values(
      (h.server.aedes as unknown as { clients: Record<string, { close(): void }> }).clients,
    )[0]!.close();
    await message(h.broker, bob, 'alice@localhost', { body: 'to both', id: 'b2' });
    await eventually(() => assert.equal(aliceSession(), undefined));
    assert.deepEqual(
      phone.got('message').map((m) => m.body),
      ['to both'],
    );
    assert.equal(await h.broker.offline.count(Address.parse('alice@localhost')), 0);
  });
});
