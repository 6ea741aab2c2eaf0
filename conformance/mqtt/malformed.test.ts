// Black-box: a table of malformed packets, as raw bytes, with the answer the
// specification asks for. Each bad connection is closed; a bystander notices nothing.
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { uniqueName } from '../helpers.ts';
import {
  addUsers,
  connectBytes,
  endAllMqtt,
  mqttConnect,
  nextMessage,
  RawMqtt,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** What must happen: the CONNACK code the server sends first (none: undefined), then the close. */
interface Row {
  what: string;
  /** sent after a successful CONNECT unless `first` */
  bytes: Buffer | ((login: Buffer) => Buffer);
  first?: boolean;
  connack?: number;
}

const rows: Row[] = [
  { what: 'a first packet that is not CONNECT [MQTT-3.1.0-1]', bytes: hex('c000'), first: true },
  { what: 'a second CONNECT [MQTT-3.1.0-2]', bytes: (login) => login },
  {
    what: 'protocol name other than MQTT [MQTT-3.1.2-1]',
    bytes: (login) => Buffer.from(login.toString('latin1').replace('MQTT', 'MQTX'), 'latin1'),
    first: true,
  },
  {
    what: 'CONNECT reserved flag set [MQTT-3.1.2-3]',
    bytes: (login) => Buffer.from([...login.subarray(0, 9), login[9] | 1, ...login.subarray(10)]),
    first: true,
  },
  {
    what: 'protocol level 6: CONNACK 1 [MQTT-3.1.2-2]',
    bytes: (login) => Buffer.from([...login.subarray(0, 8), 6, ...login.subarray(9)]),
    first: true,
    connack: 1,
  },
  { what: 'remaining length of 5 bytes [MQTT-2.2.3]', bytes: hex('30 ff ff ff ff 01') },
  { what: 'reserved packet type 0 [MQTT-2.2.1]', bytes: hex('00 00') },
  { what: 'reserved packet type 15 [MQTT-2.2.1]', bytes: hex('f0 00') },
  { what: 'PUBLISH with QoS 3 [MQTT-3.3.1-4]', bytes: hex('36 05 0001 61 0001') },
  { what: 'PUBLISH topic with a wildcard [MQTT-3.3.2-2]', bytes: hex('30 05 0003 612f2b') },
  { what: 'PUBLISH with an empty topic [MQTT-4.7.3-1]', bytes: hex('30 03 0000 78') },
  { what: 'PUBLISH topic of ill-formed UTF-8 [MQTT-1.5.3-1]', bytes: hex('30 04 0002 c328') },
  { what: 'PUBLISH topic with U+0000 [MQTT-1.5.3-2]', bytes: hex('30 05 0003 610062') },
  { what: 'QoS 1 PUBLISH with packet id 0 [MQTT-2.3.1-1]', bytes: hex('32 06 0001 61 0000 78') },
  {
    what: 'PUBLISH with more topic levels than maxTopicLevels',
    bytes: Buffer.concat([hex('30 14 0012'), Buffer.from('a/b/c/d/e/f/g/h/i/')]),
  },
  {
    what: 'PUBLISH over maxPacketSize',
    bytes: Buffer.concat([hex('30 81 08 0001 61'), Buffer.alloc(1026)]),
  },
  { what: 'PUBREL with wrong fixed-header flags [MQTT-3.6.1-1]', bytes: hex('60 02 0001') },
  {
    what: 'SUBSCRIBE with wrong fixed-header flags [MQTT-3.8.1-1]',
    bytes: hex('80 06 0001 0001 61 00'),
  },
  { what: 'SUBSCRIBE without a topic filter [MQTT-3.8.3-3]', bytes: hex('82 02 0001') },
  { what: 'SUBSCRIBE with packet id 0 [MQTT-2.3.1-1]', bytes: hex('82 06 0000 0001 61 00') },
  { what: 'SUBSCRIBE with requested QoS 3 [MQTT-3.8.3-4]', bytes: hex('82 06 0001 0001 61 03') },
  {
    what: 'SUBSCRIBE with "#" not last [MQTT-4.7.1-2]',
    bytes: hex('82 0a 0001 0005 612f232f62 00'),
  },
  { what: 'UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]', bytes: hex('a2 02 0001') },
  { what: 'PINGREQ with a body [MQTT-4.8.0-1]', bytes: hex('c0 01 00') },
];

describe('MQTT: malformed packets close the connection and nothing else', function () {
  this.timeout(30_000);
  let node: MqttTestNode;
  let port: number;
  let bystander: MqttClient;
  const user = uniqueName('mf');
  const PW = 'pw-malformed';
  const raws: RawMqtt[] = [];

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode('  maxPacketSize: 1024\n  maxTopicLevels: 8\n');
    await addUsers(node, { [user]: PW });
    port = node.mqttPorts().mqtt;
    bystander = await mqttConnect(port, { username: user, password: PW, clientId: 'bystander' });
    await bystander.subscribeAsync('public/alive', { qos: 1 });
  });
  afterEach(() => {
    for (const r of raws.splice(0)) r.destroy();
  });
  after(async () => {
    await endAllMqtt();
    await node?.dispose();
  });

  rows.forEach((row, i) => {
    it(`closes on ${row.what}${row.connack !== undefined ? ` after CONNACK ${row.connack}` : ''}`, async () => {
      const login = connectBytes({ clientId: `bad-${i}`, username: user, password: PW });
      const r = await RawMqtt.connect(port);
      raws.push(r);
      if (!row.first) {
        r.send(login);
        assert.equal(await r.connack(), 0);
      }
      r.send(typeof row.bytes === 'function' ? row.bytes(login) : row.bytes);
      assert.equal(await r.waitClosed(3000), true, 'connection closed');
      const connacks = r.packets
        .filter((p) => p.cmd === 'connack')
        .map((p) => (p as { returnCode?: number }).returnCode);
      assert.deepEqual(
        connacks,
        row.first ? (row.connack === undefined ? [] : [row.connack]) : [0],
      );
    });
  });

  it('leaves every other connection untouched', async () => {
    await sleepMs(100);
    assert.equal(bystander.connected, true);
    const got = nextMessage(bystander, 'public/alive');
    const c = await mqttConnect(port, { username: user, password: PW, clientId: 'prober' });
    await c.publishAsync('public/alive', 'yes', { qos: 1 });
    assert.equal((await got).payload, 'yes');
  });
});
