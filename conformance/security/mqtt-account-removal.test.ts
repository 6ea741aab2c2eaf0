// Black-box: a removed account leaves no MQTT state that the next account of the
// same name inherits (issue 20, item 9): persistent sessions of every client id,
// their subscriptions and queued QoS 1 messages, stored and retained wills, and
// the retained messages it published.
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { runCli, uniqueName } from '../helpers.ts';
import {
  addUsers,
  dropMqtt,
  endAllMqtt,
  mqttConnect,
  nextMessage,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

/** One admin-socket command (what `parley user remove` sends to a running node). */
function admin(node: MqttTestNode, req: Record<string, unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = net.connect(path.join(node.dataDir, 'admin.sock'));
    let buf = '';
    c.setEncoding('utf8');
    c.on('connect', () => c.write(JSON.stringify(req) + '\n'));
    c.on('data', (d: string) => {
      buf += d;
      if (!buf.includes('\n')) return;
      c.end();
      const res = JSON.parse(buf) as { ok: boolean; error?: string };
      if (res.ok) resolve();
      else reject(new Error(`${String(req.cmd)}: ${res.error}`));
    });
    c.on('error', reject);
  });
}

/** Whether a retained message is on `topic` for a new subscriber. */
async function retainedOn(c: MqttClient, topic: string): Promise<boolean> {
  const got = nextMessage(c, topic, 800).then(
    (m) => m.retain,
    () => false,
  );
  await c.subscribeAsync(topic, { qos: 0 });
  return got;
}

describe('security: removing an account erases its MQTT state', function () {
  this.timeout(60_000);
  let node: MqttTestNode;
  let port: number;
  const kim = uniqueName('kim');
  const other = uniqueName('other');
  const PW = 'pw-removal';

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode();
    await addUsers(node, { [kim]: PW, [other]: PW });
    port = node.mqttPorts().mqtt;
  });
  after(async () => {
    await endAllMqtt();
    await node?.dispose();
  });

  it('user remove + user add: the same client id gets sessionPresent 0, no old subscription, queue, will or retained message [MQTT-3.2.2-3]', async () => {
    // kim: two persistent sessions with subscriptions, one with a retained will; a retained message.
    const dev = await mqttConnect(port, {
      username: kim,
      password: PW,
      clientId: 'dev',
      clean: false,
    });
    await dev.subscribeAsync('news/#', { qos: 1 });
    await dev.publishAsync(`owned/${kim}`, 'kim was here', { qos: 1, retain: true });
    await dev.endAsync();
    const willer = await mqttConnect(port, {
      username: kim,
      password: PW,
      clientId: 'willer',
      clean: false,
      will: { topic: `wills/${kim}`, payload: Buffer.from('gone'), qos: 1, retain: true },
    });
    await willer.subscribeAsync('alerts/#', { qos: 1 });
    dropMqtt(willer); // the will fires and is retained
    const o = await mqttConnect(port, { username: other, password: PW, clientId: 'o' });
    await sleepMs(300);
    assert.equal(
      await retainedOn(o, `wills/${kim}`),
      true,
      'the retained will is there before the removal',
    );
    await o.publishAsync('news/1', 'queued for dev', { qos: 1 }); // kept in dev's session

    await admin(node, { cmd: 'user.remove', username: kim });
    await addUsers(node, { [kim]: 'a-new-password' });

    const again = await mqttConnect(port, {
      username: kim,
      password: 'a-new-password',
      clientId: 'dev',
      clean: false,
    });
    const queued: string[] = [];
    again.on('message', (topic) => queued.push(topic));
    assert.equal(
      (again as unknown as { connackPacket?: { sessionPresent?: boolean } }).connackPacket
        ?.sessionPresent ?? false,
      false,
      'sessionPresent 0',
    );
    const again2 = await mqttConnect(port, {
      username: kim,
      password: 'a-new-password',
      clientId: 'willer',
      clean: false,
    });
    again2.on('message', (topic) => queued.push(topic));
    await o.publishAsync('news/2', 'after removal', { qos: 1 });
    await o.publishAsync('alerts/1', 'after removal', { qos: 1 });
    await sleepMs(800);
    assert.deepEqual(queued, [], 'no queued message and no old subscription delivers');
    assert.equal(
      await retainedOn(o, `owned/${kim}`),
      false,
      'the retained message it published is gone',
    );
    assert.equal(await retainedOn(o, `wills/${kim}`), false, 'the retained will is gone');
  });

  it('removed with the CLI while the node is stopped: the state is erased at the next start', async () => {
    const lee = uniqueName('lee');
    await addUsers(node, { [lee]: PW });
    const dev = await mqttConnect(port, {
      username: lee,
      password: PW,
      clientId: 'dev',
      clean: false,
    });
    await dev.subscribeAsync('news/#', { qos: 1 });
    await dev.publishAsync(`owned/${lee}`, 'lee was here', { qos: 1, retain: true });
    await dev.endAsync();
    await endAllMqtt();
    await node.stop();
    const r = await runCli(['--data-dir', node.dataDir, 'user', 'remove', lee]);
    assert.equal(r.code, 0, r.stderr);
    await node.restart();
    port = node.mqttPorts().mqtt;
    await addUsers(node, { [lee]: 'another-password' });
    const again = await mqttConnect(port, {
      username: lee,
      password: 'another-password',
      clientId: 'dev',
      clean: false,
    });
    assert.equal(
      (again as unknown as { connackPacket?: { sessionPresent?: boolean } }).connackPacket
        ?.sessionPresent ?? false,
      false,
      'sessionPresent 0',
    );
    const o = await mqttConnect(port, { username: other, password: PW, clientId: 'o2' });
    assert.equal(
      await retainedOn(o, `owned/${lee}`),
      false,
      'the retained message it published is gone',
    );
  });
});
