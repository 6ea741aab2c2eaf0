// Black-box: retained messages are looked up by topic, not by scanning them all,
// and their number and size are bounded (issue 20, item 10).
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
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

/** The next value published on `$SYS/broker/retained messages/count` (retained messages in all, `$SYS` included). */
async function retainedCount(c: MqttClient): Promise<number> {
  const topic = '$SYS/broker/retained messages/count';
  await c.unsubscribeAsync(topic);
  const next = nextMessage(c, topic, 5000);
  await c.subscribeAsync(topic, { qos: 0 });
  return Number((await next).payload);
}

describe('security: MQTT retained messages', function () {
  this.timeout(90_000);
  after(() => endAllMqtt());

  describe('lookup cost follows the matches [MQTT-3.3.1-6]', () => {
    let node: MqttTestNode;
    const user = uniqueName('ret');
    const PW = 'pw-ret';
    const N = 25_000;

    before(async function () {
      this.timeout(90_000);
      node = await startMqttNode(
        `  retainedMaxPerUser: ${N + 100}\n  retainedMaxTotal: ${N + 100}\n`,
      );
      await addUsers(node, { [user]: PW });
    });
    after(async () => {
      await endAllMqtt();
      await node?.dispose();
    });

    it('a SUBSCRIBE with 40 filters matching nothing among 25,000 retained messages answers at once; others keep their latency', async () => {
      const port = node.mqttPorts().mqtt;
      const planter = await mqttConnect(port, {
        username: user,
        password: PW,
        clientId: 'planter',
      });
      for (let i = 0; i < N; i++) planter.publish(`plant/${i}`, `v${i}`, { qos: 0, retain: true });
      await planter.publishAsync('plant/last', 'last', { qos: 1, retain: true });
      // Stored in order: once the last one is retained, all are.
      const check = await mqttConnect(port, { username: user, password: PW, clientId: 'check' });
      const last = nextMessage(check, 'plant/last', 60_000);
      await check.subscribeAsync('plant/last', { qos: 0 });
      assert.equal((await last).retain, true, 'all retained messages planted');
      await check.endAsync();

      const prober = await mqttConnect(port, { username: user, password: PW, clientId: 'prober' });
      await prober.subscribeAsync('probe/rtt', { qos: 0 });
      const sub = await mqttConnect(port, { username: user, password: PW, clientId: 'subscriber' });
      const filters = Array.from({ length: 40 }, (_, i) => `nothing/${i}/+/#`);
      filters.push('plant/7'); // last: before the fix, its retained message waited for 40 full scans
      const started = Date.now();
      const got = nextMessage(sub, 'plant/7', 30_000);
      sub.subscribe(filters, { qos: 0 });
      // Round trips of another client while the lookup runs.
      let worst = 0;
      for (let i = 0; i < 10; i++) {
        const t0 = Date.now();
        const echo = nextMessage(prober, 'probe/rtt', 30_000);
        prober.publish('probe/rtt', String(i), { qos: 0 });
        await echo;
        worst = Math.max(worst, Date.now() - t0);
        await sleepMs(50);
      }
      const m = await got;
      const took = Date.now() - started;
      assert.equal(m.payload, 'v7');
      assert.equal(m.retain, true);
      assert.ok(took < 5000, `retained message of the last filter after ${took} ms`);
      assert.ok(worst < 2000, `another client's round trip took ${worst} ms`);
    });
  });

  describe('limits: per user, total, payload size (delivered, not kept; logged)', () => {
    let node: MqttTestNode;
    const u1 = uniqueName('r1');
    const u2 = uniqueName('r2');
    const PW = 'pw-lim';

    before(async function () {
      this.timeout(60_000);
      node = await startMqttNode(
        '  retainedMaxPerUser: 3\n  retainedMaxTotal: 5\n  retainedMaxPayload: 100\n  sysIntervalMs: 300\n',
      );
      await addUsers(node, { [u1]: PW, [u2]: PW });
    });
    after(async () => {
      await endAllMqtt();
      await node?.dispose();
    });

    it('keeps at most retainedMaxPerUser per account, retainedMaxTotal in all, payloads up to retainedMaxPayload', async () => {
      const port = node.mqttPorts().mqtt;
      const a = await mqttConnect(port, { username: u1, password: PW, clientId: 'a' });
      const b = await mqttConnect(port, { username: u2, password: PW, clientId: 'b' });
      const live = await mqttConnect(port, { username: u2, password: PW, clientId: 'live' });
      await sleepMs(700); // the first $SYS round stores the $SYS topics themselves
      const before = await retainedCount(live);
      await live.subscribeAsync('lim/big', { qos: 1 });
      const bigLive = nextMessage(live, 'lim/big', 5000);
      for (const t of ['a', 'b', 'c', 'd', 'e'])
        await a.publishAsync(`lim/${t}`, `1${t}`, { qos: 1, retain: true });
      for (const t of ['f', 'g', 'h'])
        await b.publishAsync(`lim/${t}`, `2${t}`, { qos: 1, retain: true });
      await a.publishAsync('lim/a', '1a-new', { qos: 1, retain: true }); // replacing its own: allowed at the limits
      await b.publishAsync('lim/big', 'x'.repeat(200), { qos: 1, retain: true });
      assert.equal(
        (await bigLive).payload.length,
        200,
        'an over-size retained message is still delivered',
      );

      const reader = await mqttConnect(port, { username: u2, password: PW, clientId: 'reader' });
      const seen = collect(reader, 'lim/a');
      const all: string[] = [];
      reader.on('message', (topic, payload, packet) => {
        if (packet.retain) all.push(`${topic}=${payload.toString()}`);
      });
      await reader.subscribeAsync('lim/#', { qos: 1 });
      await sleepMs(800);
      assert.deepEqual(all.sort(), [
        'lim/a=1a-new',
        'lim/b=1b',
        'lim/c=1c',
        'lim/f=2f',
        'lim/g=2g',
      ]);
      assert.deepEqual(seen, ['1a-new']);
      assert.ok(
        node.log.some((l) => l.includes('retained message not kept')),
        'the refusals are logged',
      );
      assert.equal(
        (await retainedCount(reader)) - before,
        5,
        '$SYS/broker/retained messages/count',
      );
    });
  });
});
