// Black-box: unread counts from the last displayed marker of each user, moved
// by chat markers [XEP-0333] from an XMPP client and an MQTT device and by
// XEP-0490 publishes, seen on MQTT `unread/{me}` and as XEP-0490 PEP
// notifications. Real clients: @xmpp/client and mqtt.
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import {
  DOMAIN,
  isMessage,
  ping,
  presence,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type Element,
  type TestClient,
} from '../helpers.ts';
import { loginWithNotify } from '../caps-helpers.ts';
import { NS_SID } from '../mam-helpers.ts';
import {
  addUsers,
  collect,
  endAllMqtt,
  grantedQos,
  mqttConnect,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

const NS_MARKERS = 'urn:xmpp:chat-markers:0';
const NS_MDS = 'urn:xmpp:mds:displayed:0';
const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const NS_PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event';
const NS_RETRACT = 'urn:xmpp:message-retract:1';
const PW = 'unread-pw';

interface Unread {
  total: number;
  conversations: Record<string, number>;
}

/** Waits until the last payload collected from `unread/{me}` satisfies `pred`. */
async function unreadWhere(
  list: string[],
  pred: (u: Unread) => boolean,
  what: string,
  ms = 5000,
): Promise<Unread> {
  const end = Date.now() + ms;
  for (;;) {
    const last = list.length ? (JSON.parse(list[list.length - 1]) as Unread) : undefined;
    if (last && pred(last)) return last;
    if (Date.now() > end) throw new Error(`unread/ never showed ${what}: ${JSON.stringify(list)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The XEP-0490 item of a PEP notification, if `el` is one: [item id, stanza-id]. */
function mdsItem(el: Element): [string, string] | undefined {
  const item = el.getChild('event', NS_PUBSUB_EVENT)?.getChild('items')?.getChild('item');
  if (!item || el.getChild('event', NS_PUBSUB_EVENT)?.getChild('items')?.attrs.node !== NS_MDS)
    return undefined;
  return [
    item.attrs.id as string,
    item.getChild('displayed', NS_MDS)?.getChild('stanza-id', NS_SID)?.attrs.id as string,
  ];
}

describe('unread counts from displayed markers: XMPP and MQTT devices, XEP-0490 [XEP-0333] [XEP-0490]', function () {
  this.timeout(60_000);
  let node: MqttTestNode;
  const alice = uniqueName('una');
  const bob = uniqueName('unb');
  const carol = uniqueName('unc');
  const at = (u: string) => `${u}@${DOMAIN}`;
  let ax: TestClient;
  let cx: TestClient;
  let bx: TestClient;
  let bm: MqttClient;
  let counts: string[];
  /** bob's archive ids of the messages he got, by message id */
  const sids = new Map<string, string>();

  const xmppLogin = async (u: string) => {
    const c = await xmppClient({ port: node.ports.xmpp, username: u, password: PW, resource: 'r' });
    await c.send(presence());
    await ping(c);
    return c;
  };
  const send = async (from: TestClient, id: string) => {
    await from.send(
      xml(
        'message',
        { to: at(bob), type: 'chat', id },
        xml('body', {}, id),
        xml('markable', { xmlns: NS_MARKERS }),
      ),
    );
    const got = await bx.waitFor(isMessage({ id }), 5000, id);
    sids.set(id, got.getChild('stanza-id', NS_SID)!.attrs.id as string);
  };
  const marker = (to: string, id: string) =>
    xml(
      'message',
      { to, type: 'chat', id: `d-${id}` },
      xml('displayed', { xmlns: NS_MARKERS, id }),
    );

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode();
    await addUsers(node, { [alice]: PW, [bob]: PW, [carol]: PW });
    ax = await xmppLogin(alice);
    cx = await xmppLogin(carol);
    bx = await loginWithNotify(node.ports.xmpp, bob, PW, 'desk', [NS_MDS]);
    bm = await mqttConnect(node.mqttPorts().mqtt, {
      username: bob,
      password: PW,
      clientId: 'bob-watch',
    });
    counts = collect(bm, `unread/${bob}`);
    await bm.subscribeAsync(`unread/${bob}`, { qos: 1 });
  });
  after(async () => {
    await endAllMqtt();
    await stopAllClients();
    await node?.dispose();
  });

  it('a device subscribing to unread/{me} gets the current counts, then every change [docs/mqtt-mapping.md]', async () => {
    await unreadWhere(counts, (u) => u.total === 0, 'the first snapshot');
    for (const id of ['a1', 'a2', 'a3']) await send(ax, id);
    for (const id of ['c1', 'c2']) await send(cx, id);
    const u = await unreadWhere(counts, (x) => x.total === 5, 'five unread');
    assert.deepEqual(u.conversations, { [at(alice)]: 3, [at(carol)]: 2 });
  });

  it('a displayed marker from the XMPP client and one from the MQTT device move the counts and reach the XMPP client as XEP-0490 notifications [XEP-0333 3] [XEP-0490 4]', async () => {
    await bx.send(marker(at(alice), 'a2'));
    let u = await unreadWhere(counts, (x) => x.conversations[at(alice)] === 1, 'alice at 1');
    assert.deepEqual(u, { total: 3, conversations: { [at(alice)]: 1, [at(carol)]: 2 } });
    const n1 = await bx.waitFor(
      (el) => mdsItem(el)?.[0] === at(alice),
      5000,
      'MDS notification for alice',
    );
    assert.equal(mdsItem(n1)![1], sids.get('a2'));
    // The marker itself reaches alice, relayed.
    assert.equal(
      (await ax.waitFor(isMessage({ id: 'd-a2' }), 5000, 'the marker')).getChild(
        'displayed',
        NS_MARKERS,
      )?.attrs.id,
      'a2',
    );
    await bm.publishAsync(`chat/${carol}`, JSON.stringify({ displayed: 'c2' }), { qos: 1 });
    u = await unreadWhere(counts, (x) => x.total === 1, 'carol read');
    assert.deepEqual(u.conversations, { [at(alice)]: 1 });
    const n2 = await bx.waitFor(
      (el) => mdsItem(el)?.[0] === at(carol),
      5000,
      'MDS notification for carol',
    );
    assert.equal(mdsItem(n2)![1], sids.get('c2'));
  });

  it('a XEP-0490 publish by the XMPP client moves the counts MQTT devices see; a new subscriber gets the value [XEP-0490 4]', async () => {
    const item = (peer: string, sid: string) =>
      xml(
        'iq',
        { type: 'set' },
        xml(
          'pubsub',
          { xmlns: NS_PUBSUB },
          xml(
            'publish',
            { node: NS_MDS },
            xml(
              'item',
              { id: peer },
              xml(
                'displayed',
                { xmlns: NS_MDS },
                xml('stanza-id', { xmlns: NS_SID, by: at(bob), id: sid }),
              ),
            ),
          ),
        ),
      );
    assert.equal((await bx.request(item(at(alice), sids.get('a3')!))).attrs.type, 'result');
    await unreadWhere(counts, (x) => x.total === 0, 'all read');
    const late = await mqttConnect(node.mqttPorts().mqtt, {
      username: bob,
      password: PW,
      clientId: 'bob-late',
    });
    const lateCounts = collect(late, `unread/${bob}`);
    await late.subscribeAsync(`unread/${bob}`, { qos: 0 });
    assert.deepEqual(await unreadWhere(lateCounts, () => true, 'a snapshot'), {
      total: 0,
      conversations: {},
    });
  });

  it('positions never go back and only move within their conversation: an older marker, a forged id, a stanza-id of another conversation change nothing', async () => {
    await send(ax, 'a4');
    await unreadWhere(counts, (x) => x.total === 1, 'one new');
    const before = counts.length;
    await bx.send(marker(at(alice), 'a1')); // older than the position
    await bx.send(marker(at(alice), 'no-such-message'));
    // carol's message id named as the position of the conversation with alice
    await bx.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'pubsub',
          { xmlns: NS_PUBSUB },
          xml(
            'publish',
            { node: NS_MDS },
            xml(
              'item',
              { id: at(alice) },
              xml(
                'displayed',
                { xmlns: NS_MDS },
                xml('stanza-id', { xmlns: NS_SID, by: at(bob), id: sids.get('c2')! }),
              ),
            ),
          ),
        ),
      ),
    );
    await ping(bx);
    await bx.send(marker(at(alice), 'a4'));
    await unreadWhere(counts, (x) => x.total === 0, 'a4 read');
    // Only the last marker changed anything: one update after the three that did not.
    assert.equal(counts.length, before + 1, counts.slice(before).join(' '));
  });

  it("a retraction takes the message out of the count [XEP-0424]; unread/ is the owner's alone", async () => {
    await send(ax, 'a5');
    await unreadWhere(counts, (x) => x.total === 1, 'a5 unread');
    await ax.send(
      xml(
        'message',
        { to: at(bob), type: 'chat', id: 'r5' },
        xml('retract', { xmlns: NS_RETRACT, id: 'a5' }),
      ),
    );
    await unreadWhere(counts, (x) => x.total === 0, 'a5 retracted');
    assert.deepEqual(await grantedQos(bm, [`unread/${alice}`]), [128]);
    await bm.publishAsync(`unread/${bob}`, JSON.stringify({ total: 99, conversations: {} }), {
      qos: 1,
    });
    await ping(bx);
    assert.ok(
      counts.every((p) => (JSON.parse(p) as Unread).total !== 99),
      'a client cannot publish counts',
    );
  });
});
