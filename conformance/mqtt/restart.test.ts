// Black-box: MQTT state survives kill -9 of the node: persistent sessions and
// their QoS 1 queues, retained messages, wills, and chat messages the core
// queued for an offline device [MQTT-4.1], docs/architecture.md principle 3 (nothing acknowledged is lost).
import assert from 'node:assert/strict';
import { uniqueName } from '../helpers.ts';
import {
  addUsers,
  collect,
  endAllMqtt,
  mqttConnect,
  nextMessage,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

describe('MQTT: restart with persistence (kill -9)', function () {
  this.timeout(60_000);
  let node: MqttTestNode;
  const u = uniqueName('rs');
  const v = uniqueName('rs');
  const PW = 'pw-restart';
  const as = (username: string, clientId: string, extra: Record<string, unknown> = {}) =>
    mqttConnect(node.mqttPorts().mqtt, { username, password: PW, clientId, ...extra });

  before(async function () {
    node = await startMqttNode();
    await addUsers(node, { [u]: PW, [v]: PW });
  });
  afterEach(() => endAllMqtt());
  after(() => node?.dispose());

  it('keeps acknowledged QoS 1 messages, retained messages, wills and queued chat across kill -9 [MQTT-4.1.0-1]', async () => {
    // A persistent subscriber that goes away, and a watcher for wills.
    let keeper = await as(u, 'keeper', { clean: false });
    await keeper.subscribeAsync('public/keep', { qos: 1 });
    await keeper.subscribeAsync(`chat/${u}`, { qos: 1 });
    await keeper.endAsync();
    let watcher = await as(v, 'watcher', { clean: false });
    await watcher.subscribeAsync(`wills/${u}`, { qos: 1 });
    await watcher.endAsync();
    // Acknowledged traffic while they are away.
    const pub = await as(v, 'publisher');
    await pub.publishAsync('public/keep', 'q1-a', { qos: 1 });
    await pub.publishAsync('public/keep', 'q1-b', { qos: 2 });
    await pub.publishAsync('public/state', 'retained-v1', { qos: 1, retain: true });
    await pub.publishAsync(`chat/${u}`, 'chat while offline', { qos: 1 });
    // A device with a will is connected when the node dies.
    await as(u, 'doomed', {
      will: { topic: `wills/${u}`, payload: Buffer.from('doomed is gone'), qos: 1, retain: false },
    });
    await sleepMs(100);
    await node.kill9();
    await endAllMqtt();
    await node.restart();

    keeper = await as(u, 'keeper', { clean: false });
    const plain = collect(keeper, 'public/keep');
    const chat = collect(keeper, `chat/${u}`);
    for (let i = 0; i < 60 && (plain.length < 2 || chat.length < 1); i++) await sleepMs(50);
    assert.deepEqual(plain, ['q1-a', 'q1-b']);
    assert.equal(chat.length, 1);
    assert.equal(JSON.parse(chat[0]).body, 'chat while offline');
    assert.equal(JSON.parse(chat[0]).from, `${v}@localhost`);

    const fresh = await as(v, 'fresh');
    const retained = nextMessage(fresh, 'public/state');
    await fresh.subscribeAsync('public/state', { qos: 1 });
    assert.equal((await retained).payload, 'retained-v1');

    watcher = await as(v, 'watcher', { clean: false });
    const will = nextMessage(watcher, `wills/${u}`, 5000);
    assert.equal((await will).payload, 'doomed is gone');

    // Reconnecting again delivers none of it twice.
    await keeper.endAsync();
    keeper = await as(u, 'keeper', { clean: false });
    const again = collect(keeper, `chat/${u}`);
    const againPlain = collect(keeper, 'public/keep');
    await sleepMs(300);
    assert.deepEqual([...again, ...againPlain], []);
  });
});
