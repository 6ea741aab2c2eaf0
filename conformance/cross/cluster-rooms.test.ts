// Black-box, rooms across three nodes on loopback joined by a real
// redis-server and sharing the Redis store (docs/cluster.md, "Rooms"): XMPP
// occupants on different nodes see each other's joins, messages and leaves
// with one stanza-id per message; nick conflicts across nodes; an MQTT device
// in the same room; history and private messages through a room homed
// elsewhere; the home node killed with SIGKILL.
import assert from 'node:assert/strict';
import { rendezvous } from '../../broker/index.ts';
import {
  afterClusterTest,
  eventually,
  startCluster,
  type TestCluster,
} from '../cluster-helpers.ts';
import { runCli, xml, type Element, type TestClient } from '../helpers.ts';
import { mam } from '../mam-helpers.ts';
import { addUsers, mqttConnect, nextMessage } from '../mqtt-helpers.ts';
import {
  codes,
  fromOccupant,
  isGroupchat,
  join,
  joinError,
  mucItem,
  MUC,
  NS_DISCO_INFO,
  NS_SID,
  roomConfig,
  say,
} from '../muc-helpers.ts';

const PW = 'pw-rooms';
const NS_MODERATE = 'urn:xmpp:message-moderate:1';
const NS_RETRACT = 'urn:xmpp:message-retract:1';
const NODES = ['n1', 'n2', 'n3'];

/** The room's stanza-id as its occupants see it [XEP-0359]. */
function stanzaId(el: Element, room: string): string | undefined {
  return el.getChildren('stanza-id', NS_SID).find((s) => s.attrs.by === `${room}@${MUC}`)?.attrs.id;
}

describe('rooms across a cluster of three nodes', function () {
  this.timeout(60_000);
  let cl: TestCluster;
  let n = 0;

  /** A fresh room name whose home is `node` when `live` are the live nodes. */
  const roomOn = (node: string, live = NODES): string => {
    for (;;) {
      const name = `r${cl.tag}${n++}`;
      if (rendezvous(name, live) === node) return name;
    }
  };
  /** Fresh users on the shared store, one XMPP client each on the given nodes. */
  const users = async (...on: string[]): Promise<{ names: string[]; clients: TestClient[] }> => {
    const names = on.map((_, i) => `u${cl.tag}${n++}x${i}`);
    await addUsers(cl.nodes.n1, Object.fromEntries(names.map((u) => [u, PW])));
    const clients: TestClient[] = [];
    for (let i = 0; i < on.length; i++)
      clients.push(await cl.login(on[i], names[i], PW, `on-${on[i]}`));
    return { names, clients };
  };

  before(async function () {
    this.timeout(120_000);
    // Heartbeats of 1.5 s (dead after 4.5 s): on a loaded machine 300 ms ones declare live nodes dead now and
    // then, and every such verdict moves rooms (their occupants get 332), which is what the last test checks.
    cl = await startCluster(NODES, { heartbeatMs: 1500 });
    await cl.converged();
  });
  afterEach(function () {
    return afterClusterTest(this.currentTest, cl, /dead|reap|homed|purged|warn|"level":[45]0/);
  });
  after(async () => {
    await cl?.dispose();
  });

  it('XMPP occupants on three nodes see each other join, talk and leave; every occupant sees the same messages in the same order with the same stanza-id [XEP-0045 7.2.3, 7.4, 7.14, XEP-0359]', async () => {
    const room = roomOn('n1');
    const {
      clients: [a, b, c],
    } = await users('n2', 'n3', 'n1');
    await join(a, room, 'anna');
    await join(b, room, 'bert');
    // a (on n2) sees b (on n3) join, through the home on n1 [XEP-0045 7.2.3]
    await a.waitFor(fromOccupant(room, 'bert'), 5000, 'bert joins, seen from n2');
    await join(c, room, 'cleo');
    for (const x of [a, b])
      await x.waitFor(fromOccupant(room, 'cleo'), 5000, 'cleo joins, seen from another node');
    // b saw anna when it joined (the others' presence first)
    await b.waitFor(fromOccupant(room, 'anna'), 5000, 'anna in the occupant list of n3');

    const N = 6;
    await Promise.all(
      [a, b].map((x, k) =>
        Promise.all(
          Array.from({ length: N }, (_, i) =>
            x.send(
              xml(
                'message',
                { to: `${room}@${MUC}`, type: 'groupchat' },
                xml('body', {}, `m${k}-${i}`),
              ),
            ),
          ),
        ),
      ),
    );
    const talk = (x: TestClient) =>
      x.received.filter(
        (el) => isGroupchat(room)(el) && /^m\d-\d$/.test(el.getChildText('body') ?? ''),
      );
    await eventually(() => {
      for (const x of [a, b, c]) assert.equal(talk(x).length, 2 * N);
    });
    const view = (x: TestClient) =>
      talk(x).map((el) => `${el.getChildText('body')}#${stanzaId(el, room)}`);
    assert.deepEqual(view(b), view(a), 'n3 and n2 see the same messages in the same order');
    assert.deepEqual(view(c), view(a), 'n1 (the home) and n2 see the same');
    const ids = talk(a).map((el) => Number(stanzaId(el, room)));
    assert.deepEqual(
      ids,
      [...ids].sort((x, y) => x - y),
      'stanza-ids increase in room order',
    );
    assert.equal(new Set(ids).size, 2 * N);

    // b leaves: the others, on n2 and n1, see it go [XEP-0045 7.14]
    await b.send(xml('presence', { to: `${room}@${MUC}/bert`, type: 'unavailable' }));
    const self = await b.waitFor(fromOccupant(room, 'bert', 'unavailable'), 5000, 'own leave');
    assert.ok(codes(self).includes(110));
    for (const x of [a, c])
      await x.waitFor(fromOccupant(room, 'bert', 'unavailable'), 5000, 'bert leaves');
    // a disconnects without leaving: its session end takes it out at the home
    await a.stop();
    await c.waitFor(fromOccupant(room, 'anna', 'unavailable'), 5000, 'anna gone with her session');
  });

  it('a nick taken on one node conflicts on another; private messages and a moderator retraction cross nodes [XEP-0045 7.2.8, 7.5, XEP-0425 4]', async () => {
    const room = roomOn('n3');
    const {
      clients: [a, b],
    } = await users('n1', 'n2');
    await join(a, room, 'neo');
    assert.equal(await joinError(b, room, 'neo'), 'conflict');
    await join(b, room, 'trinity');
    await b.send(
      xml(
        'message',
        { to: `${room}@${MUC}/neo`, type: 'chat', id: 'pm1' },
        xml('body', {}, 'psst'),
      ),
    );
    const pm = await a.waitFor(
      (el) => el.name === 'message' && el.attrs.from === `${room}@${MUC}/trinity`,
      5000,
      'private message from another node',
    );
    assert.equal(pm.attrs.type, 'chat');
    assert.equal(pm.getChildText('body'), 'psst');
    // the owner (a moderator, on n1) retracts trinity's message through the home on n3 [XEP-0425 4]
    const sid = stanzaId(await say(b, room, 'spam'), room)!;
    const r = await a.request(
      xml(
        'iq',
        { type: 'set', to: `${room}@${MUC}` },
        xml('moderate', { xmlns: NS_MODERATE, id: sid }, xml('retract', { xmlns: NS_RETRACT })),
      ),
    );
    assert.equal(r.attrs.type, 'result');
    for (const x of [a, b])
      await x.waitFor(
        (el) =>
          el.name === 'message' &&
          el.attrs.from === `${room}@${MUC}` &&
          el.getChild('retract', NS_RETRACT)?.attrs.id === sid,
        5000,
        'the retraction on both nodes',
      );
  });

  it('an MQTT device on a third node is an occupant of the same room: it sees XMPP messages with their seq, and XMPP sees its messages', async () => {
    const room = roomOn('n1');
    const {
      names: [, dev],
      clients: [a],
    } = await users('n2', 'n1');
    const device = await mqttConnect(cl.nodes.n3.mqttPorts().mqtt, {
      username: dev,
      password: PW,
      clientId: `d${cl.tag}`,
    });
    await join(a, room, 'anna');
    await device.subscribeAsync(`rooms/${room}`, { qos: 1 });
    await a.waitFor(fromOccupant(room, dev), 5000, 'the MQTT device joins, seen from n2');
    const got = nextMessage(device, `rooms/${room}`, 5000);
    const sent = await say(a, room, 'hello device');
    const json = JSON.parse((await got).payload) as { body: string; nick: string; seq: number };
    assert.equal(json.body, 'hello device');
    assert.equal(json.nick, 'anna');
    assert.equal(String(json.seq), stanzaId(sent, room), 'the seq is the stanza-id XMPP sees');
    await device.publishAsync(`rooms/${room}`, 'hello human', { qos: 1 });
    const back = await a.waitFor(isGroupchat(room, 'hello human'), 5000, 'from the device');
    assert.equal(back.attrs.from, `${room}@${MUC}/${dev}`);
    assert.equal(Number(stanzaId(back, room)), json.seq + 1);
    // unsubscribe leaves
    await device.unsubscribeAsync(`rooms/${room}`);
    await a.waitFor(fromOccupant(room, dev, 'unavailable'), 5000, 'the device leaves');
  });

  it('history on join and MAM on the room through a node that is not the home: the last messages with delay and stanza-id, then the subject [XEP-0045 7.2.14, 7.2.15, XEP-0313]', async () => {
    const room = roomOn('n2');
    const {
      clients: [a, b],
    } = await users('n2', 'n3');
    await join(a, room, 'anna');
    const ids: string[] = [];
    for (const body of ['h1', 'h2', 'h3']) ids.push(stanzaId(await say(a, room, body), room)!);
    await join(b, room, 'bert', { history: { maxstanzas: '2' } });
    const history = b.received.filter(
      (el) => isGroupchat(room)(el) && el.getChild('delay', 'urn:xmpp:delay'),
    );
    assert.deepEqual(
      history.map((el) => `${el.getChildText('body')}#${stanzaId(el, room)}`),
      [`h2#${ids[1]}`, `h3#${ids[2]}`],
    );
    // MAM on the room from the same node: the home answers, ids are the stanza-ids [XEP-0313]
    const page = await mam(b, { to: `${room}@${MUC}`, max: 10 });
    assert.deepEqual(page.bodies, ['h1', 'h2', 'h3']);
    assert.deepEqual(page.ids, ids);
  });

  it('the home node killed (SIGKILL): occupants on the other nodes get 332, rejoin at the new home; the persistent config, affiliations and history are still there', async () => {
    const room = roomOn('n3');
    const {
      clients: [a, b],
    } = await users('n1', 'n2');
    await join(a, room, 'owner');
    const r = await a.request(
      roomConfig(room, {
        'muc#roomconfig_persistentroom': '1',
        'muc#roomconfig_roomname': 'Survivors',
      }),
    );
    assert.equal(r.attrs.type, 'result');
    await say(a, room, 'before the crash');
    await join(b, room, 'guest');
    await cl.nodes.n3.kill9();
    for (const [x, nick] of [
      [a, 'owner'],
      [b, 'guest'],
    ] as const) {
      const gone = await x.waitFor(
        fromOccupant(room, nick, 'unavailable'),
        15_000,
        `332 for ${nick}`,
      );
      assert.deepEqual(codes(gone), [110, 332]);
    }
    // the survivors see n3 gone; the room's new home is one of them
    await eventually(async () =>
      assert.deepEqual((await cl.status('n1')).nodes.map((x) => x.id).sort(), ['n1', 'n2']),
    );
    const before = a.received.length;
    const self = await join(a, room, 'owner');
    const history = a.received
      .slice(before)
      .filter((el) => isGroupchat(room)(el) && el.getChild('delay', 'urn:xmpp:delay'));
    assert.equal(mucItem(self).affiliation, 'owner', 'the affiliation came from the store');
    assert.ok(!codes(self).includes(201), 'not a new room');
    assert.deepEqual(
      history.map((el) => el.getChildText('body')),
      ['before the crash'],
    );
    await join(b, room, 'guest');
    await a.waitFor(
      (el) => fromOccupant(room, 'guest')(el) && el.attrs.type === undefined,
      5000,
      'guest back, seen by owner',
    );
    const info = await b.request(
      xml('iq', { type: 'get', to: `${room}@${MUC}` }, xml('query', { xmlns: NS_DISCO_INFO })),
    );
    assert.equal(
      info.getChild('query', NS_DISCO_INFO)?.getChild('identity')?.attrs.name,
      'Survivors',
    );
    await say(b, room, 'after');
    await a.waitFor(isGroupchat(room, 'after'), 5000, 'talk goes on');

    // n3 comes back: the room is homed there again, so its present home sends everyone away (332) and they rejoin there
    await cl.nodes.n3.restart();
    for (const [x, nick] of [
      [a, 'owner'],
      [b, 'guest'],
    ] as const) {
      const moved = await x.waitFor(
        fromOccupant(room, nick, 'unavailable'),
        15_000,
        `332 for ${nick} when the home moves back`,
      );
      assert.deepEqual(codes(moved), [110, 332]);
    }
    await cl.converged();
    await join(a, room, 'owner');
    await join(b, room, 'guest');
    await a.waitFor(
      (el) => fromOccupant(room, 'guest')(el) && el.attrs.type === undefined,
      5000,
      'guest back on the old home',
    );
    await say(b, room, 'home again');
    await a.waitFor(isGroupchat(room, 'home again'), 5000, 'talk goes on at n3');
  });
  it('a home node drained: its rooms move first (332 while it still runs), the occupants rejoin at once on another node', async () => {
    await cl.converged();
    const room = roomOn('n2');
    const {
      clients: [a, b],
    } = await users('n1', 'n3');
    await join(a, room, 'anna');
    await say(a, room, 'before the drain');
    await join(b, room, 'bert');
    const r = await runCli(['--data-dir', cl.nodes.n1.dataDir, '--json', 'cluster', 'drain', 'n2']);
    assert.equal(r.code, 0, r.stderr);
    for (const [x, nick] of [
      [a, 'anna'],
      [b, 'bert'],
    ] as const) {
      const gone = await x.waitFor(
        fromOccupant(room, nick, 'unavailable'),
        10_000,
        `332 for ${nick}`,
      );
      assert.deepEqual(codes(gone), [110, 332]);
    }
    // A rejoin may go through a node that has not yet heard of the drain on to the draining node, which passes it
    // on to the new home (it used to take it there: anna in a room on n2, bert at the new home). One room: both ways.
    await join(a, room, 'anna');
    await join(b, room, 'bert');
    await say(b, room, 'after the drain');
    await a.waitFor(isGroupchat(room, 'after the drain'), 5000, 'talk goes on elsewhere');
    await say(a, room, 'and back');
    await b.waitFor(isGroupchat(room, 'and back'), 5000, 'talk goes on both ways');
  });
});
