// Black-box: publish/subscribe at each QoS, retained messages, clean and
// persistent sessions, ACL denials and $SYS on a real node [MQTT-3.3], [MQTT-4.3].
import assert from 'node:assert/strict';
import { uniqueName } from '../helpers.ts';
import {
  addUsers,
  collect,
  endAllMqtt,
  grantedQos,
  mqttConnect,
  nextMessage,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

const ACL = `  sysIntervalMs: 200
  acl:
    - { effect: deny, topic: 'secret/#', access: readwrite }
    - { effect: allow, topic: 'home/%u/#', access: readwrite }
    - { effect: allow, topic: 'home/#', access: read }
    - { effect: allow, topic: 'public/#', access: readwrite }
    - { effect: allow, topic: '$SYS/broker/#', access: read }
`;

describe('MQTT: publish/subscribe, retained, sessions, ACL', function () {
  this.timeout(30_000);
  let node: MqttTestNode;
  let port: number;
  const a = uniqueName('pa');
  const b = uniqueName('pb');
  const PW = 'pw-pubsub';
  const as = (username: string, clientId: string, extra: Record<string, unknown> = {}) =>
    mqttConnect(port, { username, password: PW, clientId, ...extra });

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode(ACL);
    await addUsers(node, { [a]: PW, [b]: PW });
    port = node.mqttPorts().mqtt;
  });
  afterEach(() => endAllMqtt());
  after(() => node?.dispose());

  for (const qos of [0, 1, 2] as const) {
    it(`delivers a QoS ${qos} message at QoS ${qos} [MQTT-4.3.${qos + 1}-1]`, async () => {
      const sub = await as(b, `sub-q${qos}`);
      assert.deepEqual(await grantedQos(sub, [`public/q${qos}`], qos), [qos]);
      const got = nextMessage(sub, `public/q${qos}`);
      const pub = await as(a, `pub-q${qos}`);
      await pub.publishAsync(`public/q${qos}`, `hello ${qos}`, { qos });
      const m = await got;
      assert.equal(m.payload, `hello ${qos}`);
      assert.equal(m.qos, qos);
    });
  }

  it('delivers at the lower of the message and subscription QoS [MQTT-3.8.4-6]', async () => {
    const sub = await as(b, 'sub-down');
    await sub.subscribeAsync('public/down', { qos: 0 });
    const got = nextMessage(sub, 'public/down');
    const pub = await as(a, 'pub-down');
    await pub.publishAsync('public/down', 'x', { qos: 2 });
    assert.equal((await got).qos, 0);
  });

  it('sends the retained message to a new subscriber with RETAIN 1 [MQTT-3.3.1-6] [MQTT-3.3.1-8]', async () => {
    const pub = await as(a, 'ret-pub');
    await pub.publishAsync('public/retained', 'last value', { qos: 1, retain: true });
    const sub = await as(b, 'ret-sub');
    const got = nextMessage(sub, 'public/retained');
    await sub.subscribeAsync('public/retained', { qos: 1 });
    const m = await got;
    assert.equal(m.payload, 'last value');
    assert.equal(m.retain, true);
  });

  it('delivers to live subscribers with RETAIN 0 [MQTT-3.3.1-9]', async () => {
    const sub = await as(b, 'ret-live');
    await sub.subscribeAsync('public/retained2', { qos: 1 });
    const got = nextMessage(sub, 'public/retained2');
    const pub = await as(a, 'ret-pub2');
    await pub.publishAsync('public/retained2', 'v', { qos: 1, retain: true });
    assert.equal((await got).retain, false);
  });

  it('removes a retained message with an empty retained PUBLISH [MQTT-3.3.1-10] [MQTT-3.3.1-11]', async () => {
    const pub = await as(a, 'ret-del');
    await pub.publishAsync('public/retained3', 'v', { qos: 1, retain: true });
    await pub.publishAsync('public/retained3', '', { qos: 1, retain: true });
    const sub = await as(b, 'ret-del-sub');
    await sub.subscribeAsync('public/retained3', { qos: 1 });
    await assert.rejects(nextMessage(sub, 'public/retained3', 400));
  });

  it('keeps a persistent session: subscriptions and QoS 1 messages while away [MQTT-3.1.2-4] [MQTT-3.2.2-2]', async () => {
    let sub = await as(b, 'persist', { clean: false });
    await sub.subscribeAsync('public/persist', { qos: 1 });
    await sub.endAsync();
    const pub = await as(a, 'persist-pub');
    await pub.publishAsync('public/persist', 'while away 1', { qos: 1 });
    await pub.publishAsync('public/persist', 'while away 2', { qos: 1 });
    sub = await as(b, 'persist', { clean: false });
    const got = collect(sub, 'public/persist');
    assert.equal(
      (sub as unknown as { connackPacket?: { sessionPresent?: boolean } }).connackPacket
        ?.sessionPresent,
      true,
    );
    for (let i = 0; i < 40 && got.length < 2; i++) await sleepMs(50);
    assert.deepEqual(got, ['while away 1', 'while away 2']);
  });

  it('discards the session on a clean connect [MQTT-3.1.2-6] [MQTT-3.2.2-1]', async () => {
    let sub = await as(b, 'cleaner', { clean: false });
    await sub.subscribeAsync('public/cleaner', { qos: 1 });
    await sub.endAsync();
    sub = await as(b, 'cleaner', { clean: true });
    assert.equal(
      (sub as unknown as { connackPacket?: { sessionPresent?: boolean } }).connackPacket
        ?.sessionPresent,
      false,
    );
    await sub.endAsync();
    const pub = await as(a, 'cleaner-pub');
    await pub.publishAsync('public/cleaner', 'nobody', { qos: 1 });
    sub = await as(b, 'cleaner', { clean: false });
    await assert.rejects(nextMessage(sub, 'public/cleaner', 400));
  });

  it('refuses subscriptions the ACL denies with SUBACK 0x80 [MQTT-3.9.3-2]', async () => {
    const c = await as(a, 'acl-sub');
    assert.deepEqual(
      await grantedQos(c, [`home/${a}/#`, 'home/+/temp', 'secret/x', 'elsewhere'], 1),
      [1, 1, 128, 128],
    );
  });

  it('acknowledges and drops a publish the ACL denies [MQTT-3.3.5-2]', async () => {
    const owner = await as(b, 'acl-owner');
    await owner.subscribeAsync(`home/${b}/#`, { qos: 1 });
    const seen = collect(owner, `home/${b}/door`);
    const intruder = await as(a, 'acl-intruder');
    await intruder.publishAsync(`home/${b}/door`, 'open', { qos: 1 }); // resolves on PUBACK
    await sleepMs(200);
    assert.deepEqual(seen, []);
    assert.equal(intruder.connected, true);
  });

  it('applies %u: each user writes under its own home topic', async () => {
    const reader = await as(b, 'acl-reader');
    await reader.subscribeAsync('home/+/temp', { qos: 1 });
    const got = nextMessage(reader, `home/${a}/temp`);
    const writer = await as(a, 'acl-writer');
    await writer.publishAsync(`home/${a}/temp`, '21.5', { qos: 1 });
    assert.equal((await got).payload, '21.5');
  });

  it('a denied PUBLISH is acknowledged and still counted in $SYS/broker/messages/received [MQTT-3.3.5-2]', async () => {
    const c = await as(a, 'sys-received');
    const TOPIC = '$SYS/broker/messages/received';
    const values = collect(c, TOPIC);
    await c.subscribeAsync(TOPIC);
    // The retained value may be up to one interval (200 ms) old: take `before` from a fresh one, after three intervals with no publishes.
    await sleepMs(600);
    assert.ok(values.length >= 2, `$SYS updates arrive (${values.join(', ')})`);
    const before = Number(values[values.length - 1]);
    const seen = collect(c, TOPIC);
    for (let i = 0; i < 3; i++) await c.publishAsync(`home/${b}/door`, `x${i}`, { qos: 1 }); // denied: resolves on PUBACK
    for (let i = 0; i < 20 && !seen.some((v) => Number(v) >= before + 3); i++) await sleepMs(100);
    assert.ok(
      seen.some((v) => Number(v) >= before + 3),
      `received went from ${before} to ${seen.join(', ')}`,
    );
    assert.equal(c.connected, true);
  });

  it('serves $SYS/broker statistics read-only', async () => {
    const c = await as(a, 'sys');
    const clients = nextMessage(c, '$SYS/broker/clients/connected');
    await c.subscribeAsync('$SYS/broker/#');
    assert.match((await clients).payload, /^\d+$/);
    const seen = collect(c, '$SYS/broker/version');
    await c.publishAsync('$SYS/broker/version', 'fake', { qos: 1 });
    await sleepMs(400);
    assert.ok(!seen.includes('fake'));
  });
});
