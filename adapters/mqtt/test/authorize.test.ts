import assert from 'node:assert/strict';
import type { AclRule } from '../acl.ts';
import {
  collect,
  grantedQos,
  nextMessage,
  RawMqtt,
  sleepMs,
  startHarness,
  type Harness,
} from './harness.ts';

const rules: AclRule[] = [
  { effect: 'deny', topic: 'secret/#', access: 'read' },
  { effect: 'allow', topic: 'users/%u/#', access: 'readwrite' },
  { effect: 'allow', topic: 'devices/%c/#', access: 'write' },
  { effect: 'allow', topic: '#', access: 'read' },
  { effect: 'allow', topic: 'secret/#', access: 'write' },
  { effect: 'allow', topic: 'chat/#', access: 'write' },
];

describe('mqtt authorisation: ACL rules, $SYS, denied publishes', () => {
  let h: Harness;
  afterEach(() => h.stop());

  it('refuses a subscription the rules do not allow with 0x80 [MQTT-3.9.3-2]', async () => {
    h = await startHarness({ acl: rules });
    const c = await h.login('alice', 'a');
    assert.deepEqual(await grantedQos(c, ['users/alice/#', 'secret/x', '#'], 1), [1, 128, 1]);
    const narrow = await startHarness({
      acl: [{ effect: 'allow', topic: 'users/%u/#', access: 'readwrite' }],
    });
    try {
      const d = await narrow.login('alice', 'n');
      assert.deepEqual(
        await grantedQos(d, ['users/alice/+', 'users/bob/#', 'users/#'], 1),
        [1, 128, 128],
      );
    } finally {
      await narrow.stop();
    }
  });

  it('holds back messages a wildcard subscription may not read, one by one', async () => {
    h = await startHarness({ acl: rules });
    const reader = await h.login('bob', 'r');
    await reader.subscribeAsync('#');
    const secret = collect(reader, 'secret/plan');
    const open = nextMessage(reader, 'users/alice/x');
    const writer = await h.login('alice', 'w');
    await writer.publishAsync('secret/plan', 'hidden', { qos: 1 });
    await writer.publishAsync('users/alice/x', 'visible', { qos: 1 });
    assert.equal((await open).payload, 'visible');
    assert.deepEqual(secret, []);
  });

  it('acknowledges and drops a denied publish by default [MQTT-3.3.5-2]', async () => {
    h = await startHarness({ acl: rules });
    const reader = await h.login('bob', 'r');
    await reader.subscribeAsync('users/#');
    const seen = collect(reader, 'users/bob/x');
    const writer = await h.login('alice', 'w');
    await writer.publishAsync('users/bob/x', 'not mine', { qos: 1 }); // PUBACK arrives
    await sleepMs(100);
    assert.deepEqual(seen, []);
    assert.equal(writer.connected, true);
  });

  it('closes the connection on a denied publish when deniedPublish is disconnect [MQTT-3.3.5-2]', async () => {
    h = await startHarness({ acl: rules, deniedPublish: 'disconnect' });
    const writer = await h.login('alice', 'w');
    const closed = new Promise<void>((r) => writer.once('close', () => r()));
    writer.publish('users/bob/x', 'not mine', { qos: 1 });
    await closed;
  });

  it('keeps $SYS read-only and readable for authenticated clients', async () => {
    h = await startHarness({ sysIntervalMs: 100 });
    const c = await h.login('alice', 'a');
    const uptime = nextMessage(c, '$SYS/broker/uptime');
    await c.subscribeAsync('$SYS/broker/#');
    assert.match((await uptime).payload, /^\d+ seconds$/);
    const seen = collect(c, '$SYS/broker/fake');
    await c.publishAsync('$SYS/broker/fake', 'x', { qos: 1 });
    await sleepMs(150);
    assert.deepEqual(seen, []);
    assert.deepEqual(
      await grantedQos(c, ['$SYS/#', '$parley/consumed']),
      [128, 128],
      'aedes internals and the sink stay hidden',
    );
  });

  it('gives anonymous clients no chat identity', async () => {
    h = await startHarness({ allowAnonymous: true });
    const anon = await h.connect({ clientId: 'anon' });
    assert.deepEqual(
      await grantedQos(anon, ['chat/alice', 'presence/alice', 'plain/topic']),
      [128, 128, 0],
    );
  });

  it('closes a connection that announces a packet over maxPacketSize', async () => {
    h = await startHarness({ maxPacketSize: 1024 });
    const c = await h.login('alice', 'big');
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    c.publish('plain/topic', Buffer.alloc(2000));
    await closed;
    const other = await h.login('bob', 'fine');
    assert.equal(other.connected, true, 'nothing else noticed');
  });

  it('accepts a packet of exactly maxPacketSize', async () => {
    h = await startHarness({ maxPacketSize: 1024 });
    const r: RawMqtt = await h.raw();
    r.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: 'x',
      keepalive: 0,
      username: 'alice',
      password: Buffer.from('alice-pw'),
    });
    assert.equal(await r.connack(), 0);
    // remaining length = 2 + topic (5) + 2 (id) + payload
    r.send({
      cmd: 'publish',
      topic: 'a/b/c',
      qos: 1,
      messageId: 1,
      payload: Buffer.alloc(1024 - 9),
      retain: false,
      dup: false,
    });
    await r.next((p) => p.cmd === 'puback');
  });
});
