// Black-box, three nodes on loopback joined by a real redis-server (the
// cluster bus and registry) and sharing the Redis store: 1:1 chat, presence
// and MQTT ⇄ XMPP with the two parties on different nodes; a node killed
// with SIGKILL is purged by the others after 3 heartbeats; Redis killed and
// restarted; `parley cluster status` and `cluster drain` (docs/cluster.md).
import assert from 'node:assert/strict';
import {
  isMessage,
  isPresence,
  isStreamError,
  ping,
  presence,
  sleep,
  uniqueName,
  befriend,
} from '../helpers.ts';
import { addUsers, mqttConnect, nextMessage } from '../mqtt-helpers.ts';
import { chat, ClusterHarness, eventually, PW } from '../cluster-helpers.ts';

const HEARTBEAT_MS = 300;

describe('a cluster of three nodes on Redis', function () {
  this.timeout(60_000);
  // a grace long enough for the test to see the draining node answer 503 on a loaded machine
  const h = new ClusterHarness({ heartbeatMs: HEARTBEAT_MS, drainGraceMs: 3000 });
  const { nodes, tag } = h;
  const login = h.login.bind(h);
  const cli = h.cli.bind(h);
  const readyz = h.readyz.bind(h);
  const statusByCli = h.statusByCli.bind(h);
  const clusterStatus = h.clusterStatus.bind(h);

  h.hooks(['n1', 'n2', 'n3']);

  it('an account created on one node logs in on every node (shared store); cluster status lists the three nodes', async () => {
    const alice = uniqueName('alice');
    await addUsers(nodes.n1, { [alice]: PW });
    for (const n of ['n2', 'n3']) await login(n, alice, n);
    await eventually(async () => {
      const st = await statusByCli('n1');
      assert.equal(st.connected, true);
      assert.deepEqual(st.nodes.map((n) => n.id).sort(), ['n1', 'n2', 'n3']);
      assert.equal(st.nodes.find((n) => n.id === 'n2')?.sessions, 1);
    });
  });

  it('/metrics has the cluster gauges: nodes seen, bus messages both ways, bus latency, Redis up', async () => {
    const m = uniqueName('m');
    await addUsers(nodes.n1, { [m]: PW });
    await login('n1', m, 'pc'); // its registry entry goes out to the other nodes
    await eventually(async () => {
      const text = (await (await fetch(`http://127.0.0.1:${nodes.n1.ports.http}/metrics`)).text())
        .split('\n')
        .filter((l) => l.startsWith('parley_cluster'))
        .join('\n');
      assert.match(text, /^parley_cluster_nodes 3$/m);
      assert.match(text, /^parley_cluster_redis_up 1$/m);
      assert.match(text, /^parley_cluster_bus_messages_total\{direction="out"\} [1-9]/m);
      assert.match(text, /^parley_cluster_bus_messages_total\{direction="in"\} [1-9]/m);
      assert.match(text, /^parley_cluster_bus_latency_seconds_count [1-9]/m);
    });
  });

  it('1:1 chat and presence between users on different nodes [RFC6121 4.2.2, 8.5.2.1.1]', async () => {
    const [a, b] = [uniqueName('a'), uniqueName('b')];
    await addUsers(nodes.n1, { [a]: PW, [b]: PW });
    const ca = await login('n1', a, 'pc');
    const cb = await login('n2', b, 'phone');
    await befriend(ca, cb);
    await cb.send(chat(`${a}@localhost`, 'hello across nodes', 'x1'));
    const got = await ca.waitFor(
      isMessage({ from: `${b}@localhost/phone`, type: 'chat' }),
      5000,
      'message from the other node',
    );
    assert.equal(got.getChildText('body'), 'hello across nodes');
    // b's presence change on n2 reaches a on n1
    await cb.send(presence({ show: 'away' }));
    const p = await ca.waitFor(
      (el) =>
        isPresence({ from: `${b}@localhost/phone` })(el) && el.getChildText('show') === 'away',
      5000,
      'away from the other node',
    );
    assert.ok(p);
    // a logs in again on n3: b's presence (held on n2) is probed for the new session
    const ca3 = await login('n3', a, 'laptop');
    await ca3.waitFor(
      isPresence({ from: `${b}@localhost/phone` }),
      5000,
      "b's presence at login on a third node",
    );
  });

  it("MQTT ⇄ XMPP across nodes: an XMPP message reaches the device's chat topic on another node, and back", async () => {
    const [human, device] = [uniqueName('human'), uniqueName('device')];
    await addUsers(nodes.n1, { [human]: PW, [device]: PW });
    const dev = await mqttConnect(nodes.n3.mqttPorts().mqtt, {
      username: device,
      password: PW,
      clientId: `dev-${tag}`,
    });
    await dev.subscribeAsync(`chat/${device}`, { qos: 1 });
    const h = await login('n1', human, 'desk');
    const got = nextMessage(dev, `chat/${device}`, 5000);
    await h.send(chat(`${device}@localhost`, 'lights on', 'm1'));
    const json = JSON.parse((await got).payload) as { from: string; body: string; seq: number };
    assert.equal(json.from, `${human}@localhost`);
    assert.equal(json.body, 'lights on');
    assert.equal(typeof json.seq, 'number');
    await dev.publishAsync(`chat/${human}`, JSON.stringify({ body: 'done', id: 'r1' }), { qos: 1 });
    const back = await h.waitFor(
      isMessage({ from: `${device}@localhost/dev-${tag}` }),
      5000,
      'reply from the device',
    );
    assert.equal(back.getChildText('body'), 'done');
  });

  it('one conversation written from two nodes at once: every message has its own seq, from one counter in the store (no clock decides)', async () => {
    const [u, device] = [uniqueName('u'), uniqueName('device')];
    await addUsers(nodes.n1, { [u]: PW, [device]: PW });
    const dev = await mqttConnect(nodes.n3.mqttPorts().mqtt, {
      username: device,
      password: PW,
      clientId: `seq-${tag}`,
    });
    await dev.subscribeAsync(`chat/${device}`, { qos: 1 });
    const seqs: number[] = [];
    dev.on('message', (_t, payload) =>
      seqs.push((JSON.parse(payload.toString()) as { seq: number }).seq),
    );
    const [c1, c2] = [await login('n1', u, 'one'), await login('n2', u, 'two')];
    const N = 20;
    await Promise.all(
      [c1, c2].map((c, k) =>
        Promise.all(
          Array.from({ length: N }, (_, i) => c.send(chat(`${device}@localhost`, `m${k}-${i}`))),
        ),
      ),
    );
    await eventually(() => assert.equal(seqs.length, 2 * N));
    const sorted = [...seqs].sort((x, y) => x - y);
    assert.equal(new Set(seqs).size, 2 * N, `distinct: ${seqs.join(',')}`);
    assert.equal(
      sorted[2 * N - 1] - sorted[0],
      2 * N - 1,
      `one counter, no gaps: ${sorted.join(',')}`,
    );
  });

  it('MQTT wills with the state shared: never fired while their node lives, fired once by another node after it is killed', async () => {
    const [holder, watcher] = [uniqueName('will'), uniqueName('watch')];
    await addUsers(nodes.n1, { [holder]: PW, [watcher]: PW });
    const topic = `wills/${tag}/${holder}`;
    // Plain topics do not cross nodes yet: a watcher on each node that may fire it.
    const got: string[] = [];
    for (const n of ['n1', 'n2']) {
      const w = await mqttConnect(nodes[n].mqttPorts().mqtt, {
        username: watcher,
        password: PW,
        clientId: `watch-${n}-${tag}`,
      });
      await w.subscribeAsync(topic, { qos: 1 });
      w.on('message', (t, payload) => t === topic && got.push(`${n}:${payload}`));
    }
    await mqttConnect(nodes.n3.mqttPorts().mqtt, {
      username: holder,
      password: PW,
      clientId: `holder-${tag}`,
      will: { topic, payload: Buffer.from('gone'), qos: 1, retain: false },
      reconnectPeriod: 0,
    });
    // n1's and n2's aedes never hear n3's aedes heartbeat; 4 of their sweeps (every 4 × 200 ms) must leave the live client's will alone
    await sleep(3500);
    assert.deepEqual(got, [], 'a will of a client alive on another node fired');
    await nodes.n3.kill9();
    await eventually(() => assert.equal(got.length, 1), 15_000);
    assert.equal(got[0], 'n1:gone', 'fired by the live node first by id');
    await sleep(1000);
    assert.equal(got.length, 1, `fired once: ${got.join(', ')}`);
    await nodes.n3.restart();
    await eventually(async () =>
      assert.ok((await clusterStatus('n1')).nodes.some((n) => n.id === 'n3')),
    );
  });

  it('a node killed with SIGKILL: after 3 heartbeats its contacts see it go, messages to it wait offline, status drops it', async () => {
    const [a, b] = [uniqueName('a'), uniqueName('b')];
    await addUsers(nodes.n1, { [a]: PW, [b]: PW });
    const ca = await login('n1', a, 'pc');
    const cb = await login('n3', b, 'phone');
    await befriend(ca, cb);
    ca.drain();
    // n3's last beat, by the Redis clock: it may not be declared dead before 3 intervals after it.
    const ago = (await clusterStatus('n1')).nodes.find((n) => n.id === 'n3')!.lastBeatAgoMs;
    const t0 = Date.now();
    await nodes.n3.kill9();
    await ca.waitFor(
      isPresence({ from: `${b}@localhost/phone`, type: 'unavailable' }),
      10_000,
      "unavailable for the dead node's session",
    );
    const silent = Date.now() - t0 + ago;
    assert.ok(
      silent >= 3 * HEARTBEAT_MS - 20,
      `declared dead ${silent} ms after its last beat, before 3 heartbeats`,
    );
    await ca.expectNone(
      isPresence({ from: `${b}@localhost/phone`, type: 'unavailable' }),
      3 * HEARTBEAT_MS,
      'a second unavailable (only one node reaps)',
    );
    await ca.send(chat(`${b}@localhost`, 'are you there?', 'k1'));
    await ping(ca);
    await eventually(async () =>
      assert.deepEqual((await clusterStatus('n1')).nodes.map((n) => n.id).sort(), ['n1', 'n2']),
    );
    // b comes back on n2 and gets what waited [XEP-0160]
    const again = await login('n2', b, 'tablet');
    const m = await again.waitFor(
      isMessage({ from: `${a}@localhost/pc` }),
      5000,
      'the offline message',
    );
    assert.equal(m.getChildText('body'), 'are you there?');
    // n3 restarts with the same id and joins again
    await nodes.n3.restart();
    await eventually(async () =>
      assert.deepEqual((await clusterStatus('n1')).nodes.map((n) => n.id).sort(), [
        'n1',
        'n2',
        'n3',
      ]),
    );
  });

  it('a node frozen past 3 heartbeats (SIGSTOP) is declared dead; when it resumes it registers its sessions and announces their presence again', async () => {
    const [a, b] = [uniqueName('a'), uniqueName('b')];
    await addUsers(nodes.n1, { [a]: PW, [b]: PW });
    const ca = await login('n1', a, 'pc');
    const cb = await login('n2', b, 'phone');
    await befriend(ca, cb);
    ca.drain();
    process.kill(nodes.n2.pid!, 'SIGSTOP');
    try {
      await ca.waitFor(
        isPresence({ from: `${b}@localhost/phone`, type: 'unavailable' }),
        10_000,
        'unavailable while n2 is frozen',
      );
    } finally {
      process.kill(nodes.n2.pid!, 'SIGCONT');
    }
    await ca.waitFor(
      (el) => isPresence({ from: `${b}@localhost/phone` })(el) && !el.attrs.type,
      10_000,
      'available again once n2 is back',
    );
    await ca.send(chat(`${b}@localhost`, 'welcome back', 'w1'));
    const got = await cb.waitFor(
      isMessage({ from: `${a}@localhost/pc` }),
      5000,
      'a message to the session that lived through',
    );
    assert.equal(got.getChildText('body'), 'welcome back');
  });

  it('Redis killed and restarted: /readyz says not ready meanwhile; afterwards the nodes are ready and chat crosses again', async () => {
    const [a, b] = [uniqueName('a'), uniqueName('b')];
    await addUsers(nodes.n1, { [a]: PW, [b]: PW });
    const ca = await login('n1', a, 'pc');
    const cb = await login('n2', b, 'phone');
    assert.equal(await readyz('n1'), 200);
    await h.redis.kill9();
    await eventually(async () => assert.equal(await readyz('n1'), 503));
    await h.redis.restart();
    await eventually(async () => {
      assert.equal(await readyz('n1'), 200);
      assert.equal(await readyz('n2'), 200);
    }, 20_000);
    // the sessions that lived through the outage are found again across nodes
    await ca.send(chat(`${b}@localhost`, 'after the outage', 'o1'));
    const got = await cb.waitFor(
      isMessage({ from: `${a}@localhost/pc` }),
      10_000,
      'a message after Redis came back',
    );
    assert.equal(got.getChildText('body'), 'after the outage');
  });

  it('drain: not ready at once, then XMPP streams end with <system-shutdown/> [RFC6120 4.9.3.22], MQTT clients are disconnected, the node exits; they log in elsewhere', async () => {
    const [a, d] = [uniqueName('a'), uniqueName('dev')];
    await addUsers(nodes.n1, { [a]: PW, [d]: PW });
    const c = await login('n2', a, 'pc');
    const dev = await mqttConnect(nodes.n2.mqttPorts().mqtt, {
      username: d,
      password: PW,
      clientId: `drain-${tag}`,
      reconnectPeriod: 0,
    });
    const devClosed = new Promise<void>((r) => dev.once('close', () => r()));
    const r = await cli('n1', 'cluster', 'drain', 'n2');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).node, 'n2');
    // not ready before anything closes (drainGraceMs: 3000)
    assert.equal(await readyz('n2'), 503);
    await c.waitFor(isStreamError('system-shutdown'), 10_000, 'the stream error of the drain');
    await c.closed;
    await devClosed;
    await eventually(async () =>
      assert.deepEqual((await clusterStatus('n1')).nodes.map((n) => n.id).sort(), ['n1', 'n3']),
    );
    assert.ok(
      nodes.n2.log.some((l) => l.includes('drain asked by another node')),
      'n2 logged the drain',
    );
    await login('n1', a, 'pc');
    // an unknown node is refused
    const bad = await cli('n1', 'cluster', 'drain', 'nope');
    assert.notEqual(bad.code, 0);
    assert.equal(JSON.parse(bad.stdout).code, 'item-not-found');
  });
});
