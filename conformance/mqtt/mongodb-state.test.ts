// Black-box: MQTT state on the MongoDB store (`storage.backend: mongodb`,
// bin/mqtt-mongodb.ts), against the server MONGODB_URL names (skipped, and
// saying so, without it: none runs here). The shared-store scenarios of
// conformance/mqtt-state-suite.ts (queue, subscriptions and retained messages
// through kill -9 and a fresh data directory; account removal erases the
// session), the retained store's documents, and two cluster nodes on the test
// Redis: a session's queue filled on one node is delivered on the other.
// Databases `parley_mqtt_<pid>_…`, dropped at the end.
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { mongoMqttState } from '../../bin/mqtt-mongodb.ts';
import { uniqueName } from '../helpers.ts';
import {
  addUsers,
  collect,
  endAllMqtt,
  nextMessage,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';
import { atLeast, connectAs, sharedMqttStateTests } from '../mqtt-state-suite.ts';
import { startRedis, type TestRedis } from '../redis-server.ts';

const url = process.env.MONGODB_URL;

/** `base` with its path naming database `db` (its options kept). */
function withDatabase(base: string, db: string): string {
  const m = /^(mongodb(?:\+srv)?:\/\/[^/?]*)(?:\/[^?]*)?(\?.*)?$/.exec(base);
  if (!m) throw new Error(`MONGODB_URL is no MongoDB connection string: ${base}`);
  return `${m[1]}/${db}${m[2] ?? ''}`;
}

if (url) {
  describe('MQTT: state on the MongoDB store (MONGODB_URL)', function () {
    this.timeout(60_000);
    const dbName = `parley_mqtt_${process.pid}_${Date.now().toString(36)}`;
    const databases = [dbName, `${dbName}_cluster`, `${dbName}_unit`];
    let mongo: MongoClient;
    const PW = 'pw-mqtt-mongo';

    before(async () => {
      mongo = await MongoClient.connect(url);
    });
    sharedMqttStateTests({
      storageYaml: () => `storage:\n  backend: mongodb\n  url: "${withDatabase(url, dbName)}"\n`,
      async stateOf(user) {
        const out: string[] = [];
        for (const name of ['subscriptions', 'outgoing', 'incoming', 'will']) {
          const docs = await mongo
            .db(dbName)
            .collection(`mqtt.${name}`)
            .find({ clientId: { $gte: `${user}/`, $lt: `${user}0` } })
            .toArray();
          for (const d of docs) out.push(`${name}: ${String(d.clientId)}`);
        }
        return out;
      },
    });

    it('the retained store keeps the payload bytes, QoS and owner; its scan gives topic, owner and size', async () => {
      const state = await mongoMqttState(withDatabase(url, `${dbName}_unit`));
      try {
        const payload = Buffer.from([0, 0xff, 0x24, 0x2e, 1]);
        const topic = 'a/$b.c/ü';
        await state.retainedStore.put({ topic, payload, qos: 1, owner: 'alice' });
        assert.deepEqual(await state.retainedStore.get(topic), {
          topic,
          payload,
          qos: 1,
          owner: 'alice',
        });
        const listed = [];
        for await (const r of state.retainedStore.scan()) listed.push(r);
        assert.deepEqual(listed, [{ topic, owner: 'alice', bytes: payload.length }]);
        await state.retainedStore.del(topic);
        assert.equal(await state.retainedStore.get(topic), undefined);
      } finally {
        await state.close();
      }
    });

    describe('two cluster nodes on the test Redis sharing the database', function () {
      let redis: TestRedis;
      const nodes: Record<string, MqttTestNode> = {};
      const tag = Math.random().toString(36).slice(2, 8);

      before(async function () {
        this.timeout(120_000);
        redis = await startRedis();
        const yaml = (id: string) =>
          [
            '  heartbeatIntervalMs: 200',
            `nodeId: ${id}`,
            `storage: { backend: mongodb, url: "${withDatabase(url, `${dbName}_cluster`)}" }`,
            `cluster: { redis: "${redis.url}", prefix: c${tag}, heartbeatMs: 300, drainGraceMs: 300 }`,
            '',
          ].join('\n');
        for (const id of ['n1', 'n2']) nodes[id] = await startMqttNode(yaml(id));
      });
      afterEach(() => endAllMqtt());
      after(async () => {
        for (const n of Object.values(nodes)) await n.dispose();
        await redis?.dispose();
      });

      it('QoS 1 messages queued on one node for an offline persistent session are delivered when it reconnects to the other, its subscription restored without SUBSCRIBE [MQTT-3.1.2-4] [MQTT-3.1.2-5]', async () => {
        const [dev, pub] = [uniqueName('md'), uniqueName('mp')];
        await addUsers(nodes.n1, { [dev]: PW, [pub]: PW });
        const topic = `public/${tag}/moved`;
        let device = await connectAs(nodes.n1, dev, PW, 'sensor', { clean: false });
        await device.subscribeAsync(topic, { qos: 1 });
        await device.endAsync();
        // QoS 1 on n1: the PUBACK leaves once the message is queued in MongoDB [MQTT-4.3.2-2]
        const p1 = await connectAs(nodes.n1, pub, PW, 'pub');
        await p1.publishAsync(topic, 'm1', { qos: 1 });
        await p1.publishAsync(topic, 'm2', { qos: 1 });

        device = await connectAs(nodes.n2, dev, PW, 'sensor', { clean: false });
        assert.deepEqual(await atLeast(collect(device, topic), 2), ['m1', 'm2']);
        // Its subscription is back on n2 (no SUBSCRIBE sent there): a new message reaches it live.
        const live = nextMessage(device, topic, 5000);
        const p2 = await connectAs(nodes.n2, pub, PW, 'pub2');
        await p2.publishAsync(topic, 'live', { qos: 1 });
        assert.equal((await live).payload, 'live');
      });
    });

    after(async () => {
      for (const db of databases) await mongo?.db(db).dropDatabase();
      await mongo?.close();
    });
  });
} else {
  describe('MQTT: state on the MongoDB store', function () {
    it('SKIPPED: set MONGODB_URL to run the MQTT state suite against MongoDB (docs/operations.md "MongoDB")', function () {
      this.skip();
    });
  });
}
