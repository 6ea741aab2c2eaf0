// Black-box: a subscriber that stops reading slows only itself (issue 20, item 7).
// Before the fix, a `#` subscriber that stopped reading held aedes' delivery
// slots, and a message on an unrelated topic waited for drainTimeoutMs.
import assert from 'node:assert/strict';
import net from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { uniqueName } from '../helpers.ts';
import {
  addUsers,
  connectBytes,
  endAllMqtt,
  mqttConnect,
  nextMessage,
  packetBytes,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

/** A subscriber that subscribes, then never reads its socket again. */
async function stalledSubscriber(
  port: number,
  o: { user: string; password: string; clientId: string; qos: 0 | 1; clean: boolean },
): Promise<net.Socket> {
  const sock = net.connect({ host: '127.0.0.1', port });
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const got: Packet[] = [];
  parser.on('packet', (p) => got.push(p));
  parser.on('error', () => {});
  sock.on('error', () => {});
  const onData = (d: Buffer): void => void parser.parse(d);
  sock.on('data', onData);
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write(
    connectBytes({ clientId: o.clientId, username: o.user, password: o.password, clean: o.clean }),
  );
  sock.write(
    packetBytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: o.qos }] }),
  );
  for (let i = 0; i < 100 && !got.some((p) => p.cmd === 'suback'); i++) await sleepMs(50);
  assert.ok(
    got.some((p) => p.cmd === 'suback'),
    'SUBACK',
  );
  sock.off('data', onData);
  sock.pause(); // from now on the kernel buffers fill and the server's writes back up
  return sock;
}

describe('security: a slow MQTT subscriber only slows itself', function () {
  this.timeout(60_000);
  let node: MqttTestNode;
  let port: number;
  const user = uniqueName('slow');
  const PW = 'pw-slow';
  const socks: net.Socket[] = [];
  const big = Buffer.alloc(64 * 1024, 'x');

  before(async function () {
    this.timeout(60_000);
    // drainTimeoutMs far above what the test waits: only the per-subscriber bound can help.
    node = await startMqttNode('  drainTimeoutMs: 50000\n  maxQueuedMessages: 50\n');
    await addUsers(node, { [user]: PW });
    port = node.mqttPorts().mqtt;
  });
  afterEach(async () => {
    for (const s of socks.splice(0)) s.destroy();
    await endAllMqtt();
  });
  after(async () => {
    await node?.dispose();
  });

  it('QoS 0: other topics are delivered at once while a `#` subscriber is stalled; its excess is dropped', async () => {
    socks.push(
      await stalledSubscriber(port, {
        user,
        password: PW,
        clientId: 'stalled0',
        qos: 0,
        clean: true,
      }),
    );
    const flooder = await mqttConnect(port, { username: user, password: PW, clientId: 'flooder0' });
    const watcher = await mqttConnect(port, { username: user, password: PW, clientId: 'watcher0' });
    await watcher.subscribeAsync('other/y', { qos: 0 });
    // 25 MB at the stalled subscriber: far more than loopback buffers take.
    for (let i = 0; i < 400; i++) flooder.publish('flood/x', big, { qos: 0 });
    await sleepMs(1000);
    const talker = await mqttConnect(port, { username: user, password: PW, clientId: 'talker0' });
    const started = Date.now();
    const got = nextMessage(watcher, 'other/y', 10_000);
    await talker.publishAsync('other/y', 'on time', { qos: 0 });
    assert.equal((await got).payload, 'on time');
    assert.ok(Date.now() - started < 10_000);
    assert.ok(
      node.log.some((l) => l.includes('QoS 0 messages dropped')),
      'the drop is logged',
    );
  });

  it('QoS 1: the stalled subscriber is disconnected as a slow consumer; others are served meanwhile', async () => {
    const stalled = await stalledSubscriber(port, {
      user,
      password: PW,
      clientId: 'stalled1',
      qos: 1,
      clean: false,
    });
    socks.push(stalled);
    let closed = false;
    stalled.once('close', () => (closed = true));
    const flooder = await mqttConnect(port, { username: user, password: PW, clientId: 'flooder1' });
    const watcher = await mqttConnect(port, { username: user, password: PW, clientId: 'watcher1' });
    await watcher.subscribeAsync('other/z', { qos: 1 });
    for (let i = 0; i < 400; i++) flooder.publish('flood/q', big, { qos: 1 });
    const got = nextMessage(watcher, 'other/z', 15_000);
    const talker = await mqttConnect(port, { username: user, password: PW, clientId: 'talker1' });
    await talker.publishAsync('other/z', 'served', { qos: 1 });
    assert.equal((await got).payload, 'served');
    // The server closed the stalled connection: once read, the stream ends (long before drainTimeoutMs).
    for (
      let i = 0;
      i < 200 && !node.log.some((l) => l.includes('mqtt subscriber too slow; connection closed'));
      i++
    )
      await sleepMs(50);
    assert.ok(
      node.log.some((l) => l.includes('mqtt subscriber too slow; connection closed')),
      'closed as a slow consumer',
    );
    stalled.resume();
    for (let i = 0; i < 200 && !closed; i++) await sleepMs(50);
    assert.equal(closed, true, 'the connection is closed');
  });
});
