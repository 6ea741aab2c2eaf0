// Black-box: MQTT state on the Redis store (`storage.backend: redis`,
// bin/mqtt-redis.ts): a persistent session's QoS 1 queue and retained
// messages survive kill -9 of the node, and are served by a node with a data
// directory of its own that shares the Redis server [MQTT-4.1.0-1].
import assert from 'node:assert/strict';
import path from 'node:path';
import { Redis } from 'ioredis';
import { runCli, uniqueName } from '../helpers.ts';
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
import { redisKeys, startRedis, type TestRedis } from '../redis-server.ts';

describe('MQTT: state on the Redis store', function () {
  this.timeout(60_000);
  let redis: TestRedis;
  const nodes: MqttTestNode[] = [];
  const u = uniqueName('mr');
  const v = uniqueName('mr');
  const PW = 'pw-mqtt-redis';
  const start = async () => {
    const node = await startMqttNode('', {
      config: `storage:\n  backend: redis\n  url: ${redis.url}\n`,
    });
    nodes.push(node);
    return node;
  };
  const as = (
    node: MqttTestNode,
    username: string,
    clientId: string,
    extra: Record<string, unknown> = {},
  ) => mqttConnect(node.mqttPorts().mqtt, { username, password: PW, clientId, ...extra });

  before(async function () {
    redis = await startRedis();
  });
  afterEach(() => endAllMqtt());
  after(async () => {
    for (const n of nodes) await n.dispose();
    await redis?.dispose();
  });

  it('QoS 1 messages queued for an offline persistent session and retained messages survive kill -9, served by a node with a fresh data directory [MQTT-4.1.0-1] [MQTT-3.1.2-4]', async () => {
    const first = await start();
    await addUsers(first, { [u]: PW, [v]: PW });
    let keeper = await as(first, u, 'keeper', { clean: false });
    await keeper.subscribeAsync('public/keep', { qos: 1 });
    await keeper.endAsync();
    const pub = await as(first, v, 'publisher');
    // Published with QoS 2: its PUBREC comes once the message is queued and
    // retained [MQTT-4.3.3-2]. (aedes writes a QoS 1 PUBACK before it
    // publishes, so a kill -9 right after a PUBACK can lose the message.)
    await pub.publishAsync('public/keep', 'q1-a', { qos: 2 });
    await pub.publishAsync('public/keep', 'q1-b', { qos: 2 });
    await pub.publishAsync('public/state', 'retained-v1', { qos: 2, retain: true });
    await first.kill9();
    await endAllMqtt();

    const second = await start();
    assert.notEqual(second.dataDir, first.dataDir);
    keeper = await as(second, u, 'keeper', { clean: false });
    const plain = collect(keeper, 'public/keep');
    for (let i = 0; i < 100 && plain.length < 2; i++) await sleepMs(50);
    assert.deepEqual(plain, ['q1-a', 'q1-b']);
    // The session's subscription came back too: a new message reaches it live.
    const live = nextMessage(keeper, 'public/keep', 5000);
    const pub2 = await as(second, v, 'publisher2');
    await pub2.publishAsync('public/keep', 'q1-live', { qos: 1 });
    assert.equal((await live).payload, 'q1-live');

    const fresh = await as(second, v, 'fresh');
    const retained = nextMessage(fresh, 'public/state');
    await fresh.subscribeAsync('public/state', { qos: 1 });
    assert.equal((await retained).payload, 'retained-v1');

    // Reconnecting again delivers none of it twice.
    await keeper.endAsync();
    keeper = await as(second, u, 'keeper', { clean: false });
    const again = collect(keeper, 'public/keep');
    await sleepMs(300);
    assert.deepEqual(again, []);
  });

  it('removing the account erases its sessions, queue and will from Redis; the new account of the name starts clean [MQTT-3.2.2-3]', async () => {
    const node = nodes[nodes.length - 1];
    const w = uniqueName('mw');
    await addUsers(node, { [w]: PW });
    const dev = await as(node, w, 'dev', {
      clean: false,
      will: { topic: `wills/${w}`, payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    await dev.subscribeAsync('public/erase', { qos: 1 });
    await dev.endAsync();
    const pub = await as(node, v, 'publisher3');
    await pub.publishAsync('public/erase', 'queued', { qos: 1 });
    const stateOf = async () => {
      const client = new Redis(redis.url);
      const members = (await client.smembers('parley:mqtt:clients')).filter((id) =>
        id.startsWith(`${w}/`),
      );
      await client.quit();
      return [
        ...(await redisKeys(redis.url, `parley:mqtt:*${encodeURIComponent(`${w}/`)}*`)),
        ...members,
      ];
    };
    assert.ok((await stateOf()).length > 0, 'the session is in Redis');
    const r = await runCli([
      '--data-dir',
      node.dataDir,
      '--config',
      path.join(node.dataDir, 'parley.yaml'),
      'user',
      'remove',
      w,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await stateOf(), []);
    await addUsers(node, { [w]: PW });
    const back = await as(node, w, 'dev', { clean: false });
    const got = collect(back, 'public/erase');
    await sleepMs(300);
    assert.deepEqual(got, [], 'nothing of the old account is delivered');
  });
});
