// An acknowledged QoS 1 or QoS 2 PUBLISH is durable the moment its PUBACK /
// PUBREC is on the wire [MQTT-4.3.2-2, MQTT-4.3.3-2]: the node is killed with
// SIGKILL in the very callback that sees the acknowledgement, with no sleep,
// and a persistent subscriber that was offline must still get every
// acknowledged message after the restart.
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { uniqueName } from '../helpers.ts';
import {
  addUsers,
  endAllMqtt,
  mqttConnect,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

describe('MQTT: an acknowledged PUBLISH survives kill -9 right after its acknowledgement', function () {
  this.timeout(90_000);
  let node: MqttTestNode;
  const u = uniqueName('ad');
  const PW = 'pw-ack-durable';
  const as = (clientId: string, extra: Record<string, unknown> = {}) =>
    mqttConnect(node.mqttPorts().mqtt, { username: u, password: PW, clientId, ...extra });

  before(async function () {
    node = await startMqttNode();
    await addUsers(node, { [u]: PW });
  });
  afterEach(() => endAllMqtt());
  after(() => node?.dispose());

  for (const qos of [1, 2] as const) {
    it(`QoS ${qos}: every message acknowledged before the kill reaches the offline persistent subscriber [MQTT-4.3.${qos + 1}-2, MQTT-3.1.2-4]`, async () => {
      const topic = `public/durable-${qos}`;
      let keeper = await as(`keeper-${qos}`, { clean: false });
      await keeper.subscribeAsync(topic, { qos: 1 });
      await keeper.endAsync();

      const pub: MqttClient = await as(`pub-${qos}`, { reconnectPeriod: 0 });
      pub.on('error', () => {});
      // The acknowledgement that makes a message the broker's: PUBACK for QoS 1, PUBREC for QoS 2.
      const ackCmd = qos === 1 ? 'puback' : 'pubrec';
      const sent = new Map<number, string>();
      const acked: string[] = [];
      const KILL_AT = 30; // of 80 sent at once: below the inbound QoS 2 window (mqtt.maxInflightInbound, 100)
      const killed = new Promise<void>((resolve, reject) => {
        pub.on('packetsend', (p) => {
          if (p.cmd === 'publish' && p.messageId !== undefined)
            sent.set(p.messageId, String(p.payload));
        });
        pub.on('packetreceive', (p) => {
          if (p.cmd !== ackCmd || acked.length >= KILL_AT) return;
          acked.push(sent.get(p.messageId ?? -1) ?? `unknown id ${p.messageId}`);
          // No await, no sleep: the node dies while the acknowledgement is fresh.
          if (acked.length === KILL_AT) node.kill9().then(resolve, reject);
        });
        pub.on('close', () => {
          if (acked.length < KILL_AT) reject(new Error(`closed after ${acked.length} ${ackCmd}s`));
        });
        for (let i = 0; i < 80; i++) pub.publish(topic, `m${i}`, { qos }, () => {});
      });
      await killed;
      await endAllMqtt();
      await node.restart();

      keeper = await as(`keeper-${qos}`, { clean: false });
      const got = new Set<string>();
      keeper.on('message', (t, p) => {
        if (t === topic) got.add(p.toString());
      });
      for (let i = 0; i < 100 && !acked.every((m) => got.has(m)); i++) await sleepMs(50);
      const lost = acked.filter((m) => !got.has(m));
      assert.deepEqual(lost, [], `acknowledged but lost: ${lost.join(', ')}`);
    });
  }
});
