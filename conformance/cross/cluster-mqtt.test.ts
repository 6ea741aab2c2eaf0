// Black-box, plain MQTT topics across a cluster: three `parley start`
// processes on loopback and a real redis-server (conformance/cluster-helpers.ts),
// real `mqtt` clients on different nodes. A message published on one node
// reaches the subscribers of every node once; wildcards work across nodes;
// topics holding Redis glob characters, `$` topics, the core's trees and
// the ACL do not let anything through that one node would not; retained
// messages and client-id takeover are cluster-wide (docs/cluster.md,
// "Plain MQTT topics").
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { Redis } from 'ioredis';
import { uniqueName } from '../helpers.ts';
import { addUsers, endAllMqtt, grantedQos, mqttConnect, nextMessage } from '../mqtt-helpers.ts';
import { eventually, startCluster, type TestCluster } from '../cluster-helpers.ts';

const PW = 'pw-cmqtt';

interface Got {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
}

describe('plain MQTT topics across a cluster of three nodes', function () {
  this.timeout(60_000);
  let cluster: TestCluster;
  let T: string;
  const [alice, bob, carol, eve] = ['alice', 'bob', 'carol', 'eve'].map((n) => uniqueName(n));
  /** every channel Redis carried for this cluster's MQTT fan-out */
  const channels: string[] = [];
  let watcher: Redis;

  const connect = async (node: string, user: string, clientId: string) =>
    mqttConnect(cluster.nodes[node].mqttPorts().mqtt, {
      username: user,
      password: PW,
      clientId: `${clientId}-${T}`,
    });
  /** Everything a client receives from now on. */
  const record = (c: MqttClient): Got[] => {
    const got: Got[] = [];
    c.on('message', (topic, payload, packet) =>
      got.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain }),
    );
    return got;
  };
  const suback = (c: MqttClient, filters: string[]) => grantedQos(c, filters, 1);
  let fences = 0;
  /**
   * Publish a fence from `from` and wait until every listed client has it:
   * what `from` published before is through (one publisher's messages keep
   * their order through Redis). Each client must hold `fence/<T>/#`.
   */
  const fence = async (from: MqttClient, ...logs: Got[][]) => {
    const topic = `fence/${T}/${++fences}`;
    await from.publishAsync(topic, 'f', { qos: 1 });
    await eventually(() => {
      for (const l of logs)
        assert.ok(
          l.some((g) => g.topic === topic),
          `no ${topic} yet`,
        );
    });
  };
  /** what a client got besides fences and its own presence and unread counts (a `#` subscriber holds those) */
  const plain = (log: Got[]) =>
    log.filter((g) => !g.topic.startsWith('fence/') && !/^(presence|unread)\/[^/]+$/.test(g.topic));

  before(async function () {
    this.timeout(120_000);
    cluster = await startCluster(['n1', 'n2', 'n3'], {
      mqttYaml: [
        '  heartbeatIntervalMs: 200', // aedes' $SYS/<id>/heartbeat crosses often
        '  acl:',
        '    - { effect: allow, topic: "private/%u/#", access: readwrite }',
        '    - { effect: deny, topic: "private/#", access: readwrite }',
        '    - { effect: allow, topic: "#", access: readwrite }',
        '    - { effect: allow, topic: "$SYS/broker/#", access: read, users: ["$authenticated"] }',
      ],
    });
    T = cluster.tag;
    await addUsers(cluster.nodes.n1, { [alice]: PW, [bob]: PW, [carol]: PW, [eve]: PW });
    watcher = new Redis(cluster.redis.url);
    await watcher.psubscribe(`c${T}:mqtt:*`);
    watcher.on('pmessage', (_p, ch) => channels.push(ch.slice(`c${T}:mqtt:`.length)));
  });
  afterEach(async () => {
    await endAllMqtt();
  });
  after(async () => {
    watcher?.disconnect();
    await cluster?.dispose();
  });

  it('QoS 0 and QoS 1 published on n1 reach subscribers on n1, n2 and n3 exactly once each, in order', async () => {
    const pub = await connect('n1', alice, 'pub');
    const subs: [string, string, string][] = [
      ['n1', carol, `t/${T}/x`],
      ['n2', bob, `t/${T}/x`],
      ['n3', carol, `t/${T}/x`],
      // a second subscriber on n3 by wildcard: that node holds both a channel and a pattern for the topic
      ['n3', bob, `t/${T}/+`],
    ];
    const logs: Got[][] = [];
    for (const [i, [node, user, filter]] of subs.entries()) {
      const c = await connect(node, user, `s${i}`);
      assert.deepEqual(await suback(c, [filter, `fence/${T}/#`]), [1, 1]);
      logs.push(record(c));
    }
    await pub.publishAsync(`t/${T}/x`, 'q0', { qos: 0 });
    await pub.publishAsync(`t/${T}/x`, 'q1', { qos: 1 });
    await fence(pub, ...logs);
    for (const [i, l] of logs.entries())
      assert.deepEqual(
        plain(l).map((g) => `${g.payload}@${g.qos}`),
        ['q0@0', 'q1@1'],
        `subscriber ${i} on ${subs[i][0]}`,
      );
  });

  it('wildcards across nodes: + is one level, # also the parent level [MQTT-4.7.1-2, MQTT-4.7.1-3]', async () => {
    const pub = await connect('n1', alice, 'wpub');
    const b = await connect('n2', bob, 'w1');
    const c = await connect('n3', carol, 'w2');
    assert.deepEqual(await suback(b, [`w/${T}/+/temp`, `fence/${T}/#`]), [1, 1]);
    assert.deepEqual(await suback(c, [`w/${T}/#`, `fence/${T}/#`]), [1, 1]);
    const [lb, lc] = [record(b), record(c)];
    for (const t of [`w/${T}/k1/temp`, `w/${T}/k1/hum`, `w/${T}/k1/x/temp`, `w/${T}`])
      await pub.publishAsync(t, 'v', { qos: 1 });
    await fence(pub, lb, lc);
    assert.deepEqual(
      plain(lb).map((g) => g.topic),
      [`w/${T}/k1/temp`],
    );
    assert.deepEqual(
      plain(lc).map((g) => g.topic),
      [`w/${T}/k1/temp`, `w/${T}/k1/hum`, `w/${T}/k1/x/temp`, `w/${T}`],
    );
  });

  it('filters holding Redis glob characters (* ? [ ] \\) match only their own topic on another node', async () => {
    const pub = await connect('n1', alice, 'gpub');
    const e = await connect('n2', eve, 'g');
    const filters = ['a*', '?', '[a-z]', '*/+', '\\', 'b?/#'].map((f) => `g/${T}/${f}`);
    assert.deepEqual(await suback(e, [...filters, `fence/${T}/#`]), [1, 1, 1, 1, 1, 1, 1]);
    const le = record(e);
    for (const t of ['ab', 'a', 'x', 'k/v', '\\x', 'bc/1', 'b'])
      await pub.publishAsync(`g/${T}/${t}`, 'not yours', { qos: 1 });
    await fence(pub, le);
    assert.deepEqual(plain(le), [], 'a glob character widened a subscription');
    // each filter still gets the topics it names
    for (const t of ['a*', '?', '[a-z]', '*/1', '\\', 'b?'])
      await pub.publishAsync(`g/${T}/${t}`, 'yours', { qos: 1 });
    await fence(pub, le);
    assert.deepEqual(
      plain(le)
        .map((g) => g.topic.slice(`g/${T}/`.length))
        .sort(),
      ['*/1', '?', '[a-z]', '\\', 'a*', 'b?'],
    );
  });

  it("'$' topics: # on another node gets none of the $SYS traffic that crosses, $SYS/# is refused, statistics stay on their node [MQTT-4.7.2-1]", async () => {
    const pub = await connect('n1', alice, 'dpub');
    const e = await connect('n2', eve, 'd');
    assert.deepEqual(await suback(e, ['#', '$SYS/#', '+/+']), [1, 128, 1]);
    const le = record(e);
    const from = channels.length;
    // aedes' heartbeats ($SYS/<broker id>/heartbeat) cross every 200 ms
    await eventually(() =>
      assert.ok(channels.slice(from).some((ch) => /^\$SYS\/parley-n1\/heartbeat$/.test(ch))),
    );
    await fence(pub, le);
    assert.deepEqual(
      le.filter((g) => g.topic.startsWith('$')),
      [],
    );
    assert.deepEqual(
      channels.filter((ch) => ch.startsWith('$SYS/broker/') || ch.startsWith('$parley/consumed')),
      [],
      'node-local topics went to Redis',
    );
  });

  it("chat/ is the core's: a message to a user on another node arrives once, others cannot read it, its payload never goes through the fan-out", async () => {
    const a = await connect('n1', alice, 'chat');
    const b = await connect('n2', bob, 'chat');
    const e = await connect('n3', eve, 'chat');
    assert.deepEqual(await suback(b, [`chat/${bob}`]), [1]);
    assert.deepEqual(await suback(e, [`chat/${bob}`, 'chat/+', '#']), [128, 1, 1]);
    const [lb, le] = [record(b), record(e)];
    const before = channels.length;
    await a.publishAsync(`chat/${bob}`, JSON.stringify({ body: `secret ${T}` }), { qos: 1 });
    await a.publishAsync(`chat/${bob}`, JSON.stringify({ body: 'last' }), { qos: 1 });
    await eventually(() => assert.equal(lb.filter((g) => g.payload.includes('last')).length, 1));
    await fence(a, le); // eve's # holds fence/
    assert.deepEqual(
      lb.map((g) => (JSON.parse(g.payload) as { body: string }).body),
      [`secret ${T}`, 'last'],
    );
    assert.deepEqual(plain(le), [], 'another user got a chat message');
    assert.deepEqual(
      channels.slice(before).filter((ch) => !ch.startsWith('$SYS/') && !ch.startsWith('fence/')),
      [],
      'chat traffic went through the plain-topic fan-out',
    );
  });

  it('the ACL holds across nodes: a denied filter is refused, a permitted # does not forward a denied topic', async () => {
    const a = await connect('n1', alice, 'acl');
    const own = await connect('n3', alice, 'acl2');
    const e = await connect('n2', eve, 'acl');
    assert.deepEqual(
      await suback(e, [`private/${alice}/#`, `private/+/inbox`, '#']),
      [128, 128, 1],
    );
    assert.deepEqual(await suback(own, [`private/${alice}/#`, `fence/${T}/#`]), [1, 1]);
    const [le, lo] = [record(e), record(own)];
    await a.publishAsync(`private/${alice}/inbox`, 'mine', { qos: 1 });
    await fence(a, le, lo);
    assert.deepEqual(
      plain(lo).map((g) => g.payload),
      ['mine'],
    );
    assert.deepEqual(plain(le), []);
  });

  it('a retained message published on n1 is sent to a new subscriber on n2; cleared on n2, a new subscriber on n3 gets none [MQTT-3.3.1-6, MQTT-3.3.1-10]', async () => {
    const a = await connect('n1', alice, 'ret');
    await a.publishAsync(`r/${T}/state`, 'on', { qos: 1, retain: true });
    // retained messages come in topic order (retained.ts): zzz after state
    await a.publishAsync(`r/${T}/zzz`, 'kept', { qos: 1, retain: true });
    await eventually(async () => {
      const b = await connect('n2', bob, 'ret');
      const got = nextMessage(b, `r/${T}/state`, 2000);
      await b.subscribeAsync(`r/${T}/+`, { qos: 1 });
      const m = await got;
      assert.equal(m.payload, 'on');
      assert.equal(m.retain, true);
      await b.publishAsync(`r/${T}/state`, '', { qos: 1, retain: true }); // clear it
    });
    await eventually(async () => {
      const c = await connect('n3', carol, 'ret');
      const lc = record(c);
      const last = nextMessage(c, `r/${T}/zzz`, 2000);
      await c.subscribeAsync(`r/${T}/+`, { qos: 1 });
      assert.equal((await last).retain, true);
      assert.deepEqual(
        lc.filter((g) => g.topic === `r/${T}/state`),
        [],
      );
    });
  });

  it('the same client id connecting on another node takes the session over: the first connection is closed [MQTT-3.1.4-2]', async () => {
    const first = await connect('n1', alice, 'same');
    const closed = new Promise<void>((r) => first.once('close', () => r()));
    const second = await connect('n2', alice, 'same');
    await closed;
    assert.equal(second.connected, true);
  });
});
