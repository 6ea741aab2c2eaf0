// Black-box: CONNECT, authentication against the shared accounts, keepalive,
// wills and takeover on a real node with the real `mqtt` client [MQTT-3.1], [MQTT-3.2].
import assert from 'node:assert/strict';
import { uniqueName } from '../helpers.ts';
import {
  addUsers,
  connectBytes,
  dropMqtt,
  endAllMqtt,
  mqttConnect,
  nextMessage,
  RawMqtt,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

describe('MQTT: CONNECT, CONNACK codes, keepalive, wills', function () {
  this.timeout(30_000);
  let node: MqttTestNode;
  let port: number;
  const user = uniqueName('dev');
  const other = uniqueName('dev');
  const PW = 'device secret';
  const raws: RawMqtt[] = [];

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode('  maxClientIdLength: 64\n  maxKeepaliveSeconds: 3600\n');
    await addUsers(node, { [user]: PW, [other]: PW });
    port = node.mqttPorts().mqtt;
  });
  afterEach(async () => {
    for (const r of raws.splice(0)) r.destroy();
    await endAllMqtt();
  });
  after(() => node?.dispose());

  async function raw(): Promise<RawMqtt> {
    const r = await RawMqtt.connect(port);
    raws.push(r);
    return r;
  }

  it('accepts the account password: CONNACK 0, no session present on a clean session [MQTT-3.2.2-1]', async () => {
    const c = await mqttConnect(port, { username: user, password: PW, clientId: 'sensor-1' });
    assert.equal(c.connected, true);
  });

  it('accepts the same account over TLS (8883)', async () => {
    const c = await mqttConnect(node.mqttPorts().mqtts, {
      tls: true,
      username: user,
      password: PW,
      clientId: 'sensor-tls',
    });
    assert.equal(c.connected, true);
  });

  const refusals: [string, Parameters<typeof connectBytes>[0] | 'level6', number][] = [
    ['unacceptable protocol level 6 [MQTT-3.1.2-2]', 'level6', 1],
    [
      'MQTT 5 (protocol level 5) [MQTT-3.1.2-2]',
      { clientId: 'v5', protocolVersion: 5, username: 'x', password: 'y' },
      1,
    ],
    ['empty client id with clean session 0 [MQTT-3.1.3-8]', { clientId: '', clean: false }, 2],
    ['client id over the configured length', { clientId: 'x'.repeat(65) }, 2],
    ['MQTT 3.1 client id over 23 characters', { clientId: 'y'.repeat(24), protocolVersion: 3 }, 2],
    ['keepalive over the configured maximum', { clientId: 'ka', keepalive: 3601 }, 2],
    ['wrong password', { clientId: 'c', password: 'wrong' }, 4],
    ['unknown user', { clientId: 'c', username: 'nobody-here' }, 4],
    ['username without password', { clientId: 'c', password: undefined }, 4],
    [
      'no username while anonymous clients are not allowed',
      { clientId: 'c', username: undefined, password: undefined },
      5,
    ],
  ];
  for (const [what, fields, code] of refusals) {
    it(`answers ${what} with CONNACK ${code} and closes [MQTT-3.2.2-5]`, async () => {
      const r = await raw();
      if (fields === 'level6') {
        const b = connectBytes({ clientId: 'l6', username: user, password: PW });
        b[8] = 6;
        r.send(b);
      } else {
        r.send(connectBytes({ username: user, password: PW, ...fields }));
      }
      assert.equal(await r.connack(), code);
      assert.equal(await r.waitClosed(), true);
    });
  }

  it('reports a refused CONNACK to the mqtt client library as its error code', async () => {
    await assert.rejects(
      mqttConnect(port, { username: user, password: 'nope', clientId: 'x' }),
      (err: { code?: number }) => err.code === 4,
    );
    await assert.rejects(
      mqttConnect(port, { clientId: 'anon' }),
      (err: { code?: number }) => err.code === 5,
    );
  });

  it('closes a connection silent for 1.5 × keepalive [MQTT-3.1.2-24]', async () => {
    const r = await raw();
    r.send(connectBytes({ clientId: 'quiet', keepalive: 1, username: user, password: PW }));
    assert.equal(await r.connack(), 0);
    const t0 = Date.now();
    assert.equal(await r.waitClosed(4000), true);
    const waited = Date.now() - t0;
    assert.ok(waited >= 1300 && waited < 3500, `closed after ${waited} ms`);
  });

  it('keeps a connection that pings within the keepalive [MQTT-3.1.2-23]', async () => {
    const r = await raw();
    r.send(connectBytes({ clientId: 'pinger', keepalive: 1, username: user, password: PW }));
    assert.equal(await r.connack(), 0);
    for (let i = 0; i < 5; i++) {
      await sleepMs(500);
      r.send({ cmd: 'pingreq' });
    }
    await r.next((p) => p.cmd === 'pingresp');
    assert.equal(r.closed, false);
  });

  it('publishes the will when a connection drops without DISCONNECT [MQTT-3.1.2-8]', async () => {
    const watcher = await mqttConnect(port, { username: other, password: PW, clientId: 'watcher' });
    await watcher.subscribeAsync(`wills/${user}`, { qos: 1 });
    const will = nextMessage(watcher, `wills/${user}`);
    const dev = await mqttConnect(port, {
      username: user,
      password: PW,
      clientId: 'mortal',
      will: { topic: `wills/${user}`, payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    dropMqtt(dev);
    assert.equal((await will).payload, 'gone');
  });

  it('discards the will on DISCONNECT [MQTT-3.1.2-10]', async () => {
    const watcher = await mqttConnect(port, {
      username: other,
      password: PW,
      clientId: 'watcher2',
    });
    await watcher.subscribeAsync(`wills/${user}/clean`, { qos: 1 });
    const dev = await mqttConnect(port, {
      username: user,
      password: PW,
      clientId: 'polite',
      will: { topic: `wills/${user}/clean`, payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    await dev.endAsync();
    await assert.rejects(nextMessage(watcher, `wills/${user}/clean`, 500));
  });

  it('closes the older connection when the same client id connects again [MQTT-3.1.4-2]', async () => {
    const first = await mqttConnect(port, { username: user, password: PW, clientId: 'twin' });
    const closed = new Promise<void>((r) => first.once('close', () => r()));
    const second = await mqttConnect(port, { username: user, password: PW, clientId: 'twin' });
    await closed;
    assert.equal(second.connected, true);
  });

  it('keeps client ids per account: another user with the same id takes nothing over', async () => {
    const mine = await mqttConnect(port, { username: user, password: PW, clientId: 'shared-id' });
    await mqttConnect(port, { username: other, password: PW, clientId: 'shared-id' });
    await sleepMs(300);
    assert.equal(mine.connected, true);
  });
});
