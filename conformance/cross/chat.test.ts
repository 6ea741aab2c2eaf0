// Black-box, both protocols on one node: an MQTT device and an XMPP user
// (@xmpp/client) chat both ways, online and offline, see each other's
// presence, and a user on both protocols gets every message on both, once.
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import {
  isMessage,
  isPresence,
  ping,
  presence,
  rosterGet,
  sleep,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
} from '../helpers.ts';
import {
  addUsers,
  collect,
  dropMqtt,
  endAllMqtt,
  mqttConnect,
  nextMessage,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

describe('MQTT ↔ XMPP on one core', function () {
  this.timeout(30_000);
  let node: MqttTestNode;
  const human = uniqueName('human');
  const device = uniqueName('device');
  const PW = 'pw-cross';
  const humanJid = `${human}@localhost`;
  const deviceJid = `${device}@localhost`;

  const xmppLogin = async (username: string, resource: string): Promise<TestClient> => {
    const c = await xmppClient({ port: node.ports.xmpp, username, password: PW, resource });
    await c.send(presence());
    await ping(c);
    return c;
  };
  /** The device with a persistent session subscribed to its chat topic. */
  const deviceLogin = async (
    clientId = 'sensor',
    extra: Record<string, unknown> = {},
  ): Promise<MqttClient> => {
    const c = await mqttConnect(node.mqttPorts().mqtt, {
      username: device,
      password: PW,
      clientId,
      clean: false,
      ...extra,
    });
    await c.subscribeAsync(`chat/${device}`, { qos: 1 });
    return c;
  };
  const chat = (to: string, body: string, id?: string) =>
    xml('message', { to, type: 'chat', id }, xml('body', {}, body));
  const bodyOf = (el: { getChildText(n: string): string | null }) => el.getChildText('body');

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode();
    await addUsers(node, { [human]: PW, [device]: PW });
  });
  afterEach(async () => {
    await endAllMqtt();
    await stopAllClients();
    await sleep(100); // let the unbinds reach the core before the next test
  });
  after(() => node?.dispose());

  it('XMPP → MQTT: a chat message reaches chat/{device} as JSON with from, id, seq, timestamp, body', async () => {
    const dev = await deviceLogin();
    const h = await xmppLogin(human, 'desk');
    const got = nextMessage(dev, `chat/${device}`);
    await h.send(chat(deviceJid, 'turn on the lights', 'x1'));
    const json = JSON.parse((await got).payload);
    assert.equal(json.from, humanJid);
    assert.equal(json.id, 'x1');
    assert.equal(json.body, 'turn on the lights');
    assert.equal(typeof json.seq, 'number');
    assert.equal(typeof json.timestamp, 'number');
  });

  it('MQTT → XMPP: a PUBLISH on chat/{user} reaches the XMPP user as a chat message from the device resource', async () => {
    const h = await xmppLogin(human, 'desk');
    const dev = await deviceLogin();
    await dev.publishAsync(`chat/${human}`, JSON.stringify({ body: 'lights are on', id: 'm1' }), {
      qos: 1,
    });
    const msg = await h.waitFor(
      isMessage({ from: `${deviceJid}/sensor`, type: 'chat' }),
      3000,
      'message from the device',
    );
    assert.equal(bodyOf(msg), 'lights are on');
    assert.equal(msg.attrs.id, 'm1');
  });

  it("XMPP user offline: the device's message waits in the offline queue and arrives on login [XEP-0160]", async () => {
    const dev = await deviceLogin();
    await dev.publishAsync(`chat/${human}`, 'while you were away', { qos: 1 });
    const h = await xmppClient({
      port: node.ports.xmpp,
      username: human,
      password: PW,
      resource: 'late',
    });
    await h.send(presence());
    const msg = await h.waitFor(
      isMessage({ from: `${deviceJid}/sensor` }),
      3000,
      'offline message',
    );
    assert.equal(bodyOf(msg), 'while you were away');
    assert.ok(msg.getChild('delay', 'urn:xmpp:delay'), 'delay stamp [XEP-0203]');
  });

  it('device offline: XMPP messages wait and arrive once on reconnect, never twice', async () => {
    let dev = await deviceLogin();
    await dev.endAsync();
    await sleep(100);
    const h = await xmppLogin(human, 'desk');
    await h.send(chat(deviceJid, 'first'));
    await h.send(chat(deviceJid, 'second'));
    await ping(h);
    dev = await deviceLogin();
    const got = collect(dev, `chat/${device}`);
    for (let i = 0; i < 40 && got.length < 2; i++) await sleep(50);
    assert.deepEqual(
      got.map((p) => JSON.parse(p).body),
      ['first', 'second'],
    );
    const seqs = got.map((p) => JSON.parse(p).seq as number);
    assert.ok(seqs[1] > seqs[0], 'in conversation order');
    await dev.endAsync();
    dev = await deviceLogin();
    const again = collect(dev, `chat/${device}`);
    await sleep(300);
    assert.deepEqual(again, []);
  });

  it("shows the device's presence to an XMPP contact: online, then offline on an abrupt drop", async () => {
    const h = await xmppLogin(human, 'desk');
    await h.request(rosterGet()); // a roster client gets subscription answers [RFC6121 3.1.3]
    let dev = await deviceLogin();
    // The human asks; the device approves from presence/{me} [RFC6121 3.1].
    await h.send(xml('presence', { to: deviceJid, type: 'subscribe' }));
    await ping(h);
    await dev.publishAsync(
      `presence/${device}`,
      JSON.stringify({ type: 'subscribed', to: human }),
      { qos: 1 },
    );
    await h.waitFor(isPresence({ from: deviceJid, type: 'subscribed' }), 3000, 'subscribed');
    await h.waitFor(
      isPresence({ from: `${deviceJid}/sensor`, type: undefined }),
      3000,
      'device available',
    );
    dropMqtt(dev);
    await h.waitFor(
      isPresence({ from: `${deviceJid}/sensor`, type: 'unavailable' }),
      3000,
      'device unavailable after the drop',
    );
    dev = await deviceLogin();
    await h.waitFor(
      isPresence({ from: `${deviceJid}/sensor`, type: undefined }),
      3000,
      'device available again',
    );
    await dev.publishAsync(`presence/${device}`, 'dnd', { qos: 1 });
    const p = await h.waitFor(
      isPresence({ from: `${deviceJid}/sensor`, type: undefined }),
      3000,
      'dnd',
    );
    assert.equal(p.getChildText('show'), 'dnd');
  });

  it('a user online on both protocols gets each message on both, once each', async () => {
    const h = await xmppLogin(human, 'desk');
    const devXmpp = await xmppLogin(device, 'laptop');
    const dev = await deviceLogin();
    const mqttGot = collect(dev, `chat/${device}`);
    await h.send(chat(deviceJid, 'to every device', 'both-1'));
    const viaXmpp = await devXmpp.waitFor(isMessage({ id: 'both-1' }), 3000, 'message on XMPP');
    assert.equal(bodyOf(viaXmpp), 'to every device');
    for (let i = 0; i < 40 && mqttGot.length < 1; i++) await sleep(50);
    await devXmpp.expectNone(isMessage({ id: 'both-1' }), 300, 'a second copy on XMPP');
    assert.equal(mqttGot.length, 1);
    assert.equal(JSON.parse(mqttGot[0]).id, 'both-1');
  });

  it('a message from the device reaches every XMPP session of the user', async () => {
    const h1 = await xmppLogin(human, 'phone');
    const h2 = await xmppLogin(human, 'desk');
    const dev = await deviceLogin();
    await dev.publishAsync(`chat/${human}`, 'to both', { qos: 1 });
    await h1.waitFor(isMessage({ from: `${deviceJid}/sensor` }), 3000, 'on phone');
    await h2.waitFor(isMessage({ from: `${deviceJid}/sensor` }), 3000, 'on desk');
  });
});
