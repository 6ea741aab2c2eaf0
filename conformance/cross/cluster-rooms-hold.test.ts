// Black-box, rooms across three nodes on loopback joined by a real
// redis-server (docs/cluster.md, "Rooms"): the service's disco#items and
// `parley room list` show the rooms of every node; an MQTT SUBSCRIBE to a
// room homed elsewhere gets the home's refusal in its SUBACK; a room's home killed
// with SIGKILL, the groupchat messages sent to it before the reap are held
// on their node and reach the room at its next home, in order, once; a
// sender that does not rejoin gets service-unavailable when the hold runs out;
// a node cut from Redis for a moment holds its room requests and runs them at
// the same home once the link is back.
import assert from 'node:assert/strict';
import { rendezvous } from '../../broker/index.ts';
import {
  afterClusterTest,
  clusterStatus,
  converged,
  clusterYaml,
  eventually,
  onlineClient,
  readyz,
  startCluster,
  type TestCluster,
} from '../cluster-helpers.ts';
import { ping, stopAllClients, xml, type Element, type TestClient } from '../helpers.ts';
import {
  addUsers,
  grantedQos,
  mqttConnect,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';
import {
  codes,
  errorCondition,
  fromOccupant,
  isGroupchat,
  join,
  MUC,
  NS_DISCO_ITEMS,
  roomConfig,
  say,
} from '../muc-helpers.ts';
import { CutProxy, startRedis, type TestRedis } from '../redis-server.ts';

const PW = 'pw-hold';
const NODES = ['n1', 'n2', 'n3'];
// dead after 3 missed beats of 1.5 s; held for 4 beats plus 20 s (26 s: room for a loaded machine's reap)
const HOLD_SECONDS = 20;

describe('rooms across a cluster: listings of every node, and requests held while a home is unreachable', function () {
  this.timeout(120_000);
  let cl: TestCluster;
  let n = 0;

  /** A fresh room name whose home is `node` when `live` are the live nodes, and `next` once `node` is gone. */
  const roomOn = (node: string, next?: string): string => {
    for (;;) {
      const name = `h${cl.tag}${n++}`;
      if (
        rendezvous(name, NODES) === node &&
        (!next ||
          rendezvous(
            name,
            NODES.filter((x) => x !== node),
          ) === next)
      )
        return name;
    }
  };
  const names = async (count: number): Promise<string[]> => {
    const list = Array.from({ length: count }, (_, i) => `u${cl.tag}${n++}x${i}`);
    await addUsers(cl.nodes.n1, Object.fromEntries(list.map((u) => [u, PW])));
    return list;
  };
  const users = async (...on: string[]): Promise<TestClient[]> => {
    const list = await names(on.length);
    return Promise.all(on.map((node, i) => cl.login(node, list[i], PW, `on-${node}`)));
  };
  const items = async (c: TestClient): Promise<Map<string, string>> => {
    const r = await c.request(
      xml('iq', { type: 'get', to: MUC }, xml('query', { xmlns: NS_DISCO_ITEMS })),
    );
    assert.equal(r.attrs.type, 'result');
    return new Map(
      r
        .getChild('query', NS_DISCO_ITEMS)!
        .getChildren('item')
        .map((i: Element) => [i.attrs.jid as string, i.attrs.name as string]),
    );
  };

  before(async function () {
    this.timeout(120_000);
    cl = await startCluster(NODES, {
      heartbeatMs: 1500,
      cluster: `roomHoldSeconds: ${HOLD_SECONDS}`,
    });
    await cl.converged();
  });
  afterEach(function () {
    return afterClusterTest(this.currentTest, cl, /dead|reap|homed|held|warn|"level":[45]0/);
  });
  after(async () => {
    await cl?.dispose();
  });

  it("the service's disco#items on one node lists the public rooms of every node: temporary ones homed elsewhere, persistent ones from the store; not the hidden ones [XEP-0045 6.3, XEP-0030]", async () => {
    const temp = roomOn('n2');
    const kept = roomOn('n3');
    const hidden = roomOn('n2');
    const [a, b] = await users('n2', 'n3');
    await join(a, temp, 'anna');
    await join(a, hidden, 'anna');
    let r = await a.request(roomConfig(hidden, { 'muc#roomconfig_publicroom': '0' }));
    assert.equal(r.attrs.type, 'result');
    await join(b, kept, 'bert');
    r = await b.request(
      roomConfig(kept, {
        'muc#roomconfig_persistentroom': '1',
        'muc#roomconfig_roomname': 'Kept',
      }),
    );
    assert.equal(r.attrs.type, 'result');
    // asked on n1, which homes none of them and had none of them in memory at its start
    const [c] = await users('n1');
    // (a node slower than the listing's 1.5 s is left out of that answer: asked again on a loaded machine)
    await eventually(async () => {
      const listed = await items(c);
      assert.equal(listed.get(`${temp}@${MUC}`), temp, 'a temporary public room homed on n2');
      assert.equal(listed.get(`${kept}@${MUC}`), 'Kept', 'a persistent public room, with its name');
      assert.ok(!listed.has(`${hidden}@${MUC}`), 'a hidden room is not listed');
    }, 15_000);

    // the operator's listing, from n1, has the rooms of n2 and n3 with their homes and occupants
    await eventually(async () => {
      const out = await cl.cli('n1', 'room', 'list');
      assert.equal(out.code, 0, out.stderr);
      const rooms = JSON.parse(out.stdout) as { room: string; node?: string; occupants: number }[];
      const of = (local: string) => rooms.find((x) => x.room === `${local}@${MUC}`);
      assert.deepEqual([of(temp)?.node, of(temp)?.occupants], ['n2', 1]);
      assert.deepEqual([of(hidden)?.node, of(kept)?.node], ['n2', 'n3']);
    }, 20_000);
  });

  it("an MQTT SUBSCRIBE to a room homed on another node carries the home's refusal in its SUBACK (0x80) as on one node; with the password it is granted and joins [MQTT-3.9.3-2, XEP-0045 7.2.6]", async () => {
    const room = roomOn('n2');
    const [x] = await users('n3');
    const [dev] = await names(1);
    await join(x, room, 'owner');
    const r = await x.request(
      roomConfig(room, {
        'muc#roomconfig_roomsecret': 'pw1',
        'muc#roomconfig_passwordprotectedroom': '1',
      }),
    );
    assert.equal(r.attrs.type, 'result');
    const d = await mqttConnect(cl.nodes.n1.mqttPorts().mqtt, {
      username: dev,
      password: PW,
      clientId: `d${cl.tag}${n++}`,
    });
    assert.deepEqual(await grantedQos(d, [`rooms/${room}`], 1), [128], 'no password');
    await d.publishAsync(`rooms/${room}/join`, JSON.stringify({ password: 'pw1' }), { qos: 1 });
    assert.deepEqual(await grantedQos(d, [`rooms/${room}`], 1), [1], 'with the password');
    await x.waitFor(fromOccupant(room, dev), 10_000, 'the device joins, seen from n3');
  });

  it('the home killed (SIGKILL): groupchat messages (XMPP and MQTT) sent before the reap are held, and reach the room at its next home in order, once, after the sender rejoins; one that never rejoins gets service-unavailable when the hold runs out [XEP-0045 7.4, 7.2.11, RFC6120 8.3.3.19]', async () => {
    // home n2; once n2 is gone, n3 (the held messages then cross the bus again)
    const room = roomOn('n2', 'n3');
    const [a, b, c] = await users('n1', 'n3', 'n1');
    const [dev] = await names(1);
    await join(a, room, 'anna');
    const r = await a.request(roomConfig(room, { 'muc#roomconfig_persistentroom': '1' }));
    assert.equal(r.attrs.type, 'result');
    await join(b, room, 'bert');
    await join(c, room, 'cleo');
    // an MQTT device on n1 in the room too
    const d = await mqttConnect(cl.nodes.n1.mqttPorts().mqtt, {
      username: dev,
      password: PW,
      clientId: `d${cl.tag}${n++}`,
    });
    const presences: Record<string, unknown>[] = [];
    d.on('message', (topic, payload) => {
      if (topic === `rooms/${room}/presence`)
        presences.push(JSON.parse(payload.toString()) as Record<string, unknown>);
    });
    assert.deepEqual(await grantedQos(d, [`rooms/${room}/presence`, `rooms/${room}`], 1), [1, 1]);
    await b.waitFor(fromOccupant(room, dev), 10_000, 'the device joins');
    await say(a, room, 'before');

    await cl.nodes.n2.kill9();
    const bodies = ['m1', 'm2', 'm3', 'm4', 'm5'];
    for (const body of bodies)
      await a.send(
        xml('message', { to: `${room}@${MUC}`, type: 'groupchat' }, xml('body', {}, body)),
      );
    await c.send(
      xml(
        'message',
        { to: `${room}@${MUC}`, type: 'groupchat', id: 'lost' },
        xml('body', {}, 'never rejoined'),
      ),
    );
    // the device's PUBACKs come while its messages are held (its session goes on)
    for (const body of ['q1', 'q2']) await d.publishAsync(`rooms/${room}`, body, { qos: 1 });

    // the reap: every occupant is told the room went away [XEP-0045 7.2.11]
    for (const [x, nick] of [
      [a, 'anna'],
      [b, 'bert'],
      [c, 'cleo'],
    ] as const) {
      const gone = await x.waitFor(
        fromOccupant(room, nick, 'unavailable'),
        30_000,
        `332 for ${nick}`,
      );
      assert.deepEqual(codes(gone), [110, 332]);
    }
    const errors = (x: TestClient) =>
      x.received.filter((el) => el.name === 'message' && el.attrs.type === 'error');
    assert.deepEqual(errors(a), [], 'no error while held');

    // the device is told too ("shutdown", 332), and subscribes again to rejoin: its held messages follow
    await eventually(() => {
      assert.ok(
        presences.some(
          (p) =>
            p.self === true &&
            p.available === false &&
            (p.reasons as string[] | undefined)?.includes('shutdown'),
        ),
        JSON.stringify(presences),
      );
    }, 30_000);
    await join(b, room, 'bert');
    const before = a.received.length;
    await join(a, room, 'anna');
    assert.deepEqual(await grantedQos(d, [`rooms/${room}`], 1), [1]);
    await eventually(() => {
      const fromDev = b.received
        .filter((el) => isGroupchat(room)(el) && el.attrs.from === `${room}@${MUC}/${dev}`)
        .map((el) => el.getChildText('body'));
      assert.deepEqual(fromDev, ['q1', 'q2']);
    }, 20_000);
    // a's held messages follow its join, in order, once; b (joined first) sees them live
    const talk = (x: TestClient, from = 0) =>
      x.received
        .slice(from)
        .filter(
          (el) =>
            isGroupchat(room)(el) &&
            /^m\d$/.test(el.getChildText('body') ?? '') &&
            !el.getChild('delay', 'urn:xmpp:delay'),
        )
        .map((el) => el.getChildText('body'));
    await eventually(() => {
      assert.deepEqual(talk(a, before), bodies);
      assert.deepEqual(talk(b), bodies);
    }, 20_000);
    for (const el of a.received.slice(before).filter(isGroupchat(room)))
      if (/^m\d$/.test(el.getChildText('body') ?? ''))
        assert.equal(el.attrs.from, `${room}@${MUC}/anna`);
    assert.deepEqual(errors(a), [], 'the sender got no error');

    // c never rejoins: its message bounces when the hold runs out, with the error it gets without the hold
    const bounced = await c.waitFor(
      (el) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === 'lost',
      40_000,
      'the bounce of the held message',
    );
    assert.equal(errorCondition(bounced), 'service-unavailable');
    assert.ok(!b.received.some(isGroupchat(room, 'never rejoined')), 'never run');
    // nothing ran twice
    assert.deepEqual(talk(b), bodies);
  });
});

describe('rooms across a cluster: requests held while the Redis link is down run at the same home when it is back', function () {
  this.timeout(120_000);
  let store: TestRedis;
  let redis: TestRedis;
  let proxy: CutProxy;
  const nodes: Record<string, MqttTestNode> = {};
  const tag = Math.random().toString(36).slice(2, 8);

  before(async function () {
    this.timeout(120_000);
    store = await startRedis();
    redis = await startRedis();
    proxy = new CutProxy(redis);
    await proxy.start();
    // n1 reaches the cluster's Redis through the proxy, so that its link alone can be cut
    for (const [id, url] of [
      ['n1', proxy.url],
      ['n2', redis.url],
    ])
      nodes[id] = await startMqttNode(
        clusterYaml({ id, redisUrl: url, tag, heartbeatMs: 1500, storeUrl: store.url }),
      );
    for (const id of ['n1', 'n2'])
      await eventually(async () => {
        assert.equal((await clusterStatus(nodes[id])).nodes.length, 2);
      }, 30_000);
    // the status is read from Redis; a node that joins before its own view lists the other homes the room itself
    await converged(Object.values(nodes));
  });
  afterEach(stopAllClients);
  after(async () => {
    for (const node of Object.values(nodes)) await node.dispose();
    await proxy?.stop();
    await redis?.dispose();
    await store?.dispose();
  });

  it('groupchat messages sent while their node cannot reach Redis reach the room on the other node in order, once, when the link is back; no error, no 332 [XEP-0045 7.4]', async () => {
    let i = 0;
    let room: string;
    do room = `l${tag}${i++}`;
    while (rendezvous(room, ['n1', 'n2']) !== 'n2');
    const [ua, ub] = [`a${tag}`, `b${tag}`];
    await addUsers(nodes.n1, { [ua]: PW, [ub]: PW });
    const a = await onlineClient(nodes.n1, ua, PW, 'desk');
    const b = await onlineClient(nodes.n2, ub, PW, 'desk');
    await join(a, room, 'anna');
    await join(b, room, 'bert');
    await say(a, room, 'before');

    proxy.cut('reset');
    await eventually(async () => assert.equal(await readyz(nodes.n1), 503), 20_000);
    const bodies = ['l1', 'l2', 'l3'];
    for (const body of bodies)
      await a.send(
        xml('message', { to: `${room}@${MUC}`, type: 'groupchat' }, xml('body', {}, body)),
      );
    await ping(a); // handled (held) while the link is down
    proxy.heal();

    const talk = (x: TestClient) =>
      x.received
        .filter((el) => isGroupchat(room)(el) && /^l\d$/.test(el.getChildText('body') ?? ''))
        .map((el) => el.getChildText('body'));
    await eventually(() => {
      assert.deepEqual(talk(b), bodies);
      assert.deepEqual(talk(a), bodies);
    }, 30_000);
    assert.ok(
      !a.received.some((el) => el.name === 'message' && el.attrs.type === 'error'),
      'no error',
    );
    assert.ok(!a.received.some((el) => codes(el).includes(332)), 'still in the room');
  });
});
