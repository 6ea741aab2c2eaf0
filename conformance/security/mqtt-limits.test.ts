// Black-box: per-connection bounds of the MQTT listener (issue 20, item 12 and "Also"):
// subscriptions per connection, ill-formed UTF-8 in CONNECT, TLS handshakes.
import assert from 'node:assert/strict';
import net from 'node:net';
import { uniqueName } from '../helpers.ts';
import {
  addUsers,
  connectBytes,
  endAllMqtt,
  grantedQos,
  mqttConnect,
  RawMqtt,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

/** Replace the first occurrence of `marker` (ASCII) in a packet by bytes of the same length. */
function patch(bytes: Buffer, marker: string, by: number[]): Buffer {
  const at = bytes.indexOf(Buffer.from(marker));
  assert.ok(at >= 0 && by.length === marker.length);
  const out = Buffer.from(bytes);
  Buffer.from(by).copy(out, at);
  return out;
}

describe('security: MQTT per-connection bounds', function () {
  this.timeout(60_000);
  let node: MqttTestNode;
  const user = uniqueName('lim');
  const PW = 'pw-limits';

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode(
      '  maxSubscriptionsPerConnection: 5\n  tlsHandshakeTimeoutMs: 1000\n  maxConnectionsPerIp: 3\n',
    );
    await addUsers(node, { [user]: PW });
  });
  afterEach(() => endAllMqtt());
  after(async () => {
    await node?.dispose();
  });

  it('filters past maxSubscriptionsPerConnection get SUBACK 0x80; a filter already held and a freed slot do not [MQTT-3.9.3-2]', async () => {
    const c = await mqttConnect(node.mqttPorts().mqtt, {
      username: user,
      password: PW,
      clientId: 'subs',
    });
    assert.deepEqual(await grantedQos(c, ['s/1', 's/2', 's/3', 's/4']), [0, 0, 0, 0]);
    assert.deepEqual(await grantedQos(c, ['s/5', 's/6', 's/1']), [0, 0x80, 0]);
    await c.unsubscribeAsync('s/2');
    assert.deepEqual(await grantedQos(c, ['s/6']), [0]);
    assert.deepEqual(await grantedQos(c, ['s/7']), [0x80]);
    assert.ok(
      node.log.some((l) => l.includes('too many on one connection')),
      'logged',
    );
    assert.equal(c.connected, true, 'the connection stays open');
  });

  const utf8Rows: { what: string; bytes: () => Buffer }[] = [
    {
      what: 'client id',
      bytes: () =>
        patch(
          connectBytes({ clientId: 'cid-XX', username: user, password: PW }),
          'XX',
          [0xc3, 0x28],
        ),
    },
    {
      what: 'user name',
      bytes: () =>
        patch(
          connectBytes({ clientId: 'cid-u', username: `${user}XX`, password: PW }),
          'XX',
          [0xed, 0xa0],
        ),
    },
    {
      what: 'will topic',
      bytes: () =>
        patch(
          connectBytes({
            clientId: 'cid-w',
            username: user,
            password: PW,
            will: { topic: 'will/XX', payload: Buffer.from('bye'), qos: 0, retain: false },
          }),
          'XX',
          [0xff, 0x41],
        ),
    },
  ];
  for (const row of utf8Rows) {
    it(`a CONNECT whose ${row.what} is ill-formed UTF-8 closes the connection without CONNACK [MQTT-1.5.3-1]`, async () => {
      const r = await RawMqtt.connect(node.mqttPorts().mqtt);
      r.send(row.bytes());
      assert.equal(await r.waitClosed(3000), true, 'closed');
      assert.deepEqual(
        r.packets.map((p) => p.cmd),
        [],
      );
    });
  }

  it('TLS: connections are counted from TCP accept, and a handshake that never comes is cut after tlsHandshakeTimeoutMs', async () => {
    const port = node.mqttPorts().mqtts;
    const idle: net.Socket[] = [];
    const closed: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      const s = net.connect({ host: '127.0.0.1', port });
      s.on('error', () => {});
      s.on('close', () => (closed[i] = true));
      s.resume(); // read, so the server's close is seen
      idle.push(s);
      await new Promise<void>((r) => s.once('connect', () => r()));
    }
    await sleepMs(100);
    // maxConnectionsPerIp is 3, all taken by handshakes not yet made.
    await assert.rejects(
      mqttConnect(port, { tls: true, username: user, password: PW, clientId: 'tls-refused' }),
    );
    for (let i = 0; i < 80 && closed.filter(Boolean).length < 3; i++) await sleepMs(50);
    assert.equal(closed.filter(Boolean).length, 3, 'the idle handshakes were cut');
    const ok = await mqttConnect(port, {
      tls: true,
      username: user,
      password: PW,
      clientId: 'tls-ok',
    });
    assert.equal(ok.connected, true);
    for (const s of idle) s.destroy();
  });
});
