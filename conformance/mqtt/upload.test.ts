// Black-box: an MQTT camera asks for an upload slot on upload/request/{me}
// (docs/mqtt-mapping.md "Upload"), PUTs a picture over HTTPS and posts its
// URL into a chat; the XMPP user downloads it. Only one's own topics.
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { isMessage, presence, ping, stopAllClients, uniqueName, xmppClient } from '../helpers.ts';
import {
  addUsers,
  endAllMqtt,
  grantedQos,
  mqttConnect,
  nextMessage,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';
import { httpsCall } from '../upload-helpers.ts';

const PW = 'up-pw';

interface SlotJson {
  id?: string;
  put?: string;
  get?: string;
  expires?: string;
  maxFileSize?: number;
  error?: { condition: string; text?: string; maxFileSize?: number; retry?: string };
}

describe('MQTT upload: a device gets an HTTP upload slot', function () {
  this.timeout(30_000);
  let node: MqttTestNode;
  const cam = uniqueName('cam');
  const human = uniqueName('hum');
  let device: MqttClient;

  async function ask(req: Record<string, unknown>): Promise<SlotJson> {
    const got = nextMessage(device, `upload/response/${cam}`, 5000);
    await device.publishAsync(`upload/request/${cam}`, JSON.stringify(req), { qos: 1 });
    return JSON.parse((await got).payload) as SlotJson;
  }

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode('modules:\n  upload:\n    maxFileSize: 2048\n');
    await addUsers(node, { [cam]: PW, [human]: PW });
    device = await mqttConnect(node.mqttPorts().mqtt, {
      username: cam,
      password: PW,
      clientId: 'cam-1',
    });
    await device.subscribeAsync(`upload/response/${cam}`, { qos: 1 });
  });
  after(async () => {
    await endAllMqtt();
    await stopAllClients();
    await node?.dispose();
  });

  it('slot as JSON, PUT over HTTPS, URL posted into a chat, the XMPP user downloads the picture [XEP-0363 5]', async () => {
    const h = await xmppClient({
      port: node.ports.xmpp,
      username: human,
      password: PW,
      resource: 'desk',
    });
    await h.send(presence());
    await ping(h);
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(1000, 7)]);
    const slot = await ask({
      id: 'r1',
      filename: 'door.jpg',
      size: jpeg.length,
      contentType: 'image/jpeg',
    });
    assert.equal(slot.id, 'r1');
    assert.match(slot.put!, /^https:\/\/localhost:\d+\/upload\/.+\/door\.jpg$/);
    assert.ok(Date.parse(slot.expires!) > Date.now());
    assert.equal(
      (await httpsCall('PUT', slot.put!, jpeg, { 'content-type': 'image/jpeg' })).status,
      201,
    );
    await device.publishAsync(`chat/${human}`, slot.get!, { qos: 1 });
    const msg = await h.waitFor(
      (e) => isMessage()(e) && e.getChildText('body') !== null,
      5000,
      'the URL as a chat message',
    );
    const url = msg.getChildText('body')!;
    assert.equal(url, slot.get);
    const got = await httpsCall('GET', url);
    assert.equal(got.status, 200);
    assert.equal(got.headers['content-type'], 'image/jpeg');
    assert.deepEqual(got.body, jpeg);
  });

  it('refusals as JSON errors: too large with maxFileSize, bad JSON, bad filename', async () => {
    const big = await ask({ id: 'r2', filename: 'big.jpg', size: 4096, contentType: 'image/jpeg' });
    assert.deepEqual(big.error && [big.error.condition, big.error.maxFileSize], [
      'not-acceptable',
      2048,
    ]);
    assert.equal(big.id, 'r2');
    const got = nextMessage(device, `upload/response/${cam}`, 5000);
    await device.publishAsync(`upload/request/${cam}`, 'not json', { qos: 1 });
    assert.equal((JSON.parse((await got).payload) as SlotJson).error?.condition, 'bad-request');
    assert.equal((await ask({ filename: '../x', size: 3 })).error?.condition, 'bad-request');
    assert.equal((await ask({ filename: 'x', size: -3 })).error?.condition, 'bad-request');
  });

  it("another user's topics: subscribe refused, a request there is not answered", async () => {
    assert.deepEqual(await grantedQos(device, [`upload/response/${human}`], 1), [128]);
    const other = await mqttConnect(node.mqttPorts().mqtt, {
      username: human,
      password: PW,
      clientId: 'hum-1',
    });
    await other.subscribeAsync(`upload/response/${human}`, { qos: 1 });
    const seen: string[] = [];
    other.on('message', (t) => seen.push(t));
    await device.publishAsync(
      `upload/request/${human}`,
      JSON.stringify({ filename: 'x.jpg', size: 3 }),
      { qos: 1 },
    );
    await sleepMs(500);
    assert.deepEqual(seen, []);
  });
});
