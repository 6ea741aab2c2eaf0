// Black-box, issue 20 item 12 (what the MQTT work left open): the stored queue
// of an offline persistent session and the number of persistent sessions per
// account are bounded. Past `mqtt.maxOfflineQueuePerClient` new QoS 1/2
// messages for that offline client are dropped and counted (Mosquitto's
// max_queued_messages); past `mqtt.maxPersistentSessionsPerUser` a CONNECT
// with clean session 0 for a new client id is refused with CONNACK 0x05.
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { uniqueName } from '../helpers.ts';
import {
  addUsers,
  collect,
  endAllMqtt,
  mqttConnect,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

const PW = 'pw-offline-bounds';

/** The value of one `$SYS/broker/...` topic, read by a fresh subscriber. */
async function sysValue(port: number, user: string, topic: string): Promise<number> {
  const c = await mqttConnect(port, { username: user, password: PW, clientId: uniqueName('sys') });
  const got = new Promise<string>((resolve) =>
    c.on('message', (t, p) => t === topic && resolve(p.toString())),
  );
  await c.subscribeAsync(topic, { qos: 0 });
  const v = await Promise.race([got, sleepMs(15_000).then(() => 'timeout')]);
  await c.endAsync(true);
  assert.notEqual(v, 'timeout', `no ${topic}`);
  return Number(v);
}

/** Wait until `n` messages are in `out` (or the time is up). */
async function until(out: string[], n: number, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; out.length < n && Date.now() < end;) await sleepMs(50);
}

describe('security: MQTT persistent sessions are bounded', function () {
  this.timeout(60_000);
  let node: MqttTestNode;
  let port: number;
  const owner = uniqueName('pers');
  const pub = uniqueName('pub');
  const sess = uniqueName('sess');
  const MAX_QUEUE = 20;
  const MAX_SESSIONS = 3;

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode(
      `  maxOfflineQueuePerClient: ${MAX_QUEUE}\n  maxPersistentSessionsPerUser: ${MAX_SESSIONS}\n  sysIntervalMs: 500\n`,
    );
    await addUsers(node, { [owner]: PW, [pub]: PW, [sess]: PW });
    port = node.mqttPorts().mqtt;
  });
  after(async () => {
    await endAllMqtt();
    await node?.dispose();
  });
  afterEach(() => endAllMqtt());

  async function persistent(clientId: string, clean = false): Promise<MqttClient> {
    return mqttConnect(port, { username: owner, password: PW, clientId, clean });
  }

  it('an offline persistent session stores at most maxOfflineQueuePerClient QoS 1 messages; the rest are dropped and counted, the oldest kept [MQTT-3.1.2-5]', async () => {
    const topic = `q/${uniqueName('t')}`;
    const id = uniqueName('off');
    const sub = await persistent(id);
    await sub.subscribeAsync(topic, { qos: 1 });
    await sub.endAsync();
    const dropped0 = await sysValue(port, pub, '$SYS/broker/publish/messages/dropped');
    const p = await mqttConnect(port, { username: pub, password: PW, clientId: uniqueName('p') });
    for (let i = 0; i < MAX_QUEUE * 3; i++) await p.publishAsync(topic, `m${i}`, { qos: 1 });
    await p.endAsync();
    const back = await persistent(id);
    const got = collect(back, topic);
    await until(got, MAX_QUEUE);
    await sleepMs(1000); // anything beyond the bound would have come by now
    assert.deepEqual(
      got,
      Array.from({ length: MAX_QUEUE }, (_, i) => `m${i}`),
      'the first messages, in order, and no more',
    );
    await back.endAsync();
    const dropped1 = await sysValue(port, pub, '$SYS/broker/publish/messages/dropped');
    assert.ok(
      dropped1 - dropped0 >= MAX_QUEUE * 2,
      `dropped counter moved by ${dropped1 - dropped0}`,
    );
  });

  it('once the queue was delivered, the session stores up to the bound again', async () => {
    const topic = `q/${uniqueName('t')}`;
    const id = uniqueName('again');
    const sub = await persistent(id);
    await sub.subscribeAsync(topic, { qos: 1 });
    await sub.endAsync();
    const p = await mqttConnect(port, { username: pub, password: PW, clientId: uniqueName('p') });
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < MAX_QUEUE; i++) await p.publishAsync(topic, `r${round}-${i}`, { qos: 1 });
      const back = await persistent(id);
      const got = collect(back, topic);
      await until(got, MAX_QUEUE);
      await sleepMs(300); // let the PUBACKs reach the node
      await back.endAsync();
      assert.equal(got.length, MAX_QUEUE, `round ${round}: ${got.length}`);
      assert.equal(got[0], `r${round}-0`);
    }
    await p.endAsync();
  });

  it('a clean-session connection discards the stored queue: a later persistent session does not get it back [MQTT-3.1.2-6]', async () => {
    const topic = `q/${uniqueName('t')}`;
    const id = uniqueName('cl');
    const sub = await persistent(id);
    await sub.subscribeAsync(topic, { qos: 1 });
    await sub.endAsync();
    const p = await mqttConnect(port, { username: pub, password: PW, clientId: uniqueName('p') });
    for (let i = 0; i < 5; i++) await p.publishAsync(topic, `old${i}`, { qos: 1 });
    const clean = await persistent(id, true);
    await sleepMs(500);
    await clean.endAsync();
    const again = await persistent(id);
    assert.equal(again.connected, true);
    await again.subscribeAsync(topic, { qos: 1 });
    const got = collect(again, topic);
    await p.publishAsync(topic, 'new', { qos: 1 });
    await until(got, 1);
    await sleepMs(500);
    assert.deepEqual(got, ['new'], 'only what was published after the clean session');
    await p.endAsync();
  });

  it('past maxPersistentSessionsPerUser a new persistent client id gets CONNACK 0x05; known ids and clean sessions still connect [MQTT-3.2.2-5]', async () => {
    const as = (clientId: string, clean = false) =>
      mqttConnect(port, { username: sess, password: PW, clientId, clean });
    const ids = Array.from({ length: MAX_SESSIONS }, () => uniqueName('ps'));
    for (const id of ids) {
      const c = await as(id);
      await c.subscribeAsync(`s/${id}`, { qos: 1 });
      await c.endAsync();
    }
    const refused = (err: Error & { code?: number }) => {
      assert.equal(err.code, 5, String(err)); // 0x05 not authorized
      return true;
    };
    await assert.rejects(as(uniqueName('over')), refused);
    // after a restart the stored sessions still count
    await node.restart();
    port = node.mqttPorts().mqtt;
    await assert.rejects(as(uniqueName('over')), refused);
    // An id that has a session still connects, and finds its session.
    const c = await as(ids[0]);
    assert.equal(c.connected, true);
    await c.endAsync();
    // A clean session is not limited.
    const clean = await as(uniqueName('clean'), true);
    await clean.endAsync();
    // A clean-session connection with a stored id ends that session [MQTT-3.1.2-6] and frees its slot.
    const freed = await as(ids[1], true);
    await freed.endAsync();
    const next = await as(uniqueName('next'));
    assert.equal(next.connected, true);
    await next.endAsync();
    // Other accounts are not affected by this one's sessions.
    const other = await mqttConnect(port, {
      username: pub,
      password: PW,
      clientId: uniqueName('o'),
      clean: false,
    });
    await other.endAsync();
  });

  it('the node serves others meanwhile', async () => {
    const c = await mqttConnect(port, { username: pub, password: PW, clientId: uniqueName('ok') });
    assert.equal(c.connected, true);
    await c.endAsync();
  });
});
