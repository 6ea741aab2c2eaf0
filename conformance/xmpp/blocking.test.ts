// Black-box XEP-0191 blocking across protocols: the list is pushed to every
// resource; a blocked user's messages, presence and IQs reach none of the
// blocker's XMPP resources nor its MQTT device (`chat/`), in either
// direction, and unblocking restores them.
import assert from 'node:assert/strict';
import type { Element } from '@xmpp/xml';
import {
  makeFriends,
  DOMAIN,
  isMessage,
  ping,
  presence,
  stanzaError,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
} from '../helpers.ts';
import {
  addUsers,
  collect,
  endAllMqtt,
  mqttConnect,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

const PW = 'pw-block';
const NS_BLOCKING = 'urn:xmpp:blocking';

const blockIq = (what: 'block' | 'unblock', ...jids: string[]) =>
  xml(
    'iq',
    { type: 'set' },
    xml(what, { xmlns: NS_BLOCKING }, ...jids.map((jid) => xml('item', { jid }))),
  );
const isPush = (what: 'block' | 'unblock', jid?: string) => (el: Element) =>
  el.name === 'iq' &&
  el.attrs.type === 'set' &&
  !!el.getChild(what, NS_BLOCKING) &&
  (jid === undefined ||
    el
      .getChild(what, NS_BLOCKING)!
      .getChildren('item')
      .some((i) => i.attrs.jid === jid));

describe('XEP-0191 blocking (XMPP and MQTT)', function () {
  this.timeout(30_000);
  let node: MqttTestNode;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const A = `${alice}@${DOMAIN}`;
  const B = `${bob}@${DOMAIN}`;

  const login = async (user: string, resource: string): Promise<TestClient> => {
    const c = await xmppClient({ port: node.ports.xmpp, username: user, password: PW, resource });
    c.xmpp.iqCallee.set(NS_BLOCKING, 'block', () => true);
    c.xmpp.iqCallee.set(NS_BLOCKING, 'unblock', () => true);
    await c.send(presence());
    await ping(c);
    return c;
  };

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode();
    await addUsers(node, { [alice]: PW, [bob]: PW });
    await makeFriends(node, alice, bob, PW);
  });
  afterEach(async () => {
    await endAllMqtt();
    await stopAllClients();
  });
  after(async () => node?.dispose());

  it('block: pushed to every resource; nothing from bob reaches alice on XMPP or MQTT; alice cannot message bob; unblock restores [XEP-0191 3.2-3.7]', async () => {
    const a1 = await login(alice, 'one');
    const a2 = await login(alice, 'two');
    const dev = await mqttConnect(node.mqttPorts().mqtt, {
      username: alice,
      password: PW,
      clientId: `watch-${alice}`,
      clean: true,
    });
    await dev.subscribeAsync(`chat/${alice}`, { qos: 1 });
    const devGot = collect(dev, `chat/${alice}`);
    const b = await login(bob, 'b');
    const bdev = await mqttConnect(node.mqttPorts().mqtt, {
      username: bob,
      password: PW,
      clientId: `dev-${bob}`,
      clean: true,
    });

    // disco and an empty list first [XEP-0191 2, 3.1]
    const disco = await a1.request(
      xml(
        'iq',
        { type: 'get', to: DOMAIN },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }),
      ),
    );
    assert.ok(
      disco
        .getChild('query')!
        .getChildren('feature')
        .some((f) => f.attrs.var === NS_BLOCKING),
    );
    const empty = await a1.request(
      xml('iq', { type: 'get' }, xml('blocklist', { xmlns: NS_BLOCKING })),
    );
    assert.equal(empty.getChild('blocklist', NS_BLOCKING)!.getChildren('item').length, 0);

    const r = await a1.request(blockIq('block', B));
    assert.equal(r.attrs.type, 'result', r.toString());
    for (const c of [a1, a2]) await c.waitFor(isPush('block', B), 3000, 'block push'); // [XEP-0191 3.2] every resource
    for (const c of [a1, a2]) c.drain(); // what bob sent before the block
    // [XEP-0191 3.3] bob sees alice go unavailable
    await b.waitFor(
      (e) =>
        e.name === 'presence' &&
        e.attrs.type === 'unavailable' &&
        e.attrs.from?.startsWith(`${A}/`),
      3000,
      "alice's unavailable",
    );
    const list = await a2.request(
      xml('iq', { type: 'get' }, xml('blocklist', { xmlns: NS_BLOCKING })),
    );
    assert.deepEqual(
      list
        .getChild('blocklist')!
        .getChildren('item')
        .map((i) => i.attrs.jid),
      [B],
    );

    // [XEP-0191 3.4] a message from bob: service-unavailable to bob, nothing to alice anywhere
    await b.send(xml('message', { to: A, type: 'chat', id: 'blk1' }, xml('body', {}, 'hello?')));
    const err = await b.waitFor(isMessage({ id: 'blk1', type: 'error' }), 3000, 'the error');
    assert.equal(stanzaError(err).condition, 'service-unavailable');
    // from bob's MQTT device too
    await bdev.publishAsync(`chat/${alice}`, JSON.stringify({ body: 'via mqtt', id: 'blk2' }), {
      qos: 1,
    });
    // an IQ to one of alice's full JIDs
    const iqr = await b.request(
      xml('iq', { type: 'get', to: `${A}/one` }, xml('query', { xmlns: 'jabber:iq:version' })),
    );
    assert.equal(stanzaError(iqr).condition, 'service-unavailable');
    // presence: bob's update does not reach alice
    await b.send(xml('presence', {}, xml('status', {}, 'blocked status')));
    await ping(b);
    for (const c of [a1, a2]) {
      await c.expectNone(
        (e) =>
          e.attrs.from?.startsWith(B) &&
          (e.name === 'message' ||
            e.name === 'presence' ||
            (e.name === 'iq' && e.attrs.type === 'get')),
        300,
        'a stanza from bob',
      );
    }
    await sleepMs(200);
    assert.deepEqual(
      devGot.filter((p) => p.includes(bob)),
      [],
      'nothing from bob on chat/',
    );

    // [XEP-0191 3.5] alice writing to bob: not-acceptable with <blocked/>
    await a1.send(xml('message', { to: B, type: 'chat', id: 'out1' }, xml('body', {}, 'psst')));
    const out = await a1.waitFor(
      isMessage({ id: 'out1', type: 'error' }),
      3000,
      'the blocked error',
    );
    assert.equal(stanzaError(out).condition, 'not-acceptable');
    assert.ok(out.getChild('error')!.getChild('blocked', 'urn:xmpp:blocking:errors'));
    await b.expectNone(isMessage({ id: 'out1' }), 200, "alice's message");

    // [XEP-0191 3.6] unblock: pushed, and messages flow again on every protocol
    assert.equal((await a2.request(blockIq('unblock', B))).attrs.type, 'result');
    for (const c of [a1, a2]) await c.waitFor(isPush('unblock', B), 3000, 'unblock push');
    await b.send(xml('message', { to: A, type: 'chat', id: 'ok1' }, xml('body', {}, 'back')));
    for (const c of [a1, a2])
      await c.waitFor(isMessage({ id: 'ok1' }), 3000, 'the message after unblocking');
    for (let i = 0; i < 30 && !devGot.some((p) => p.includes('ok1')); i++) await sleepMs(100);
    assert.ok(
      devGot.some((p) => p.includes('ok1')),
      'the MQTT device gets it too',
    );
  });

  it('block requests without items, or with a bad JID, are refused [XEP-0191 3.2]', async () => {
    const a = await login(alice, 'bad');
    assert.equal(stanzaError(await a.request(blockIq('block'))).condition, 'bad-request');
    assert.equal(
      stanzaError(await a.request(blockIq('block', 'not a jid@@'))).condition,
      'jid-malformed',
    );
  });
});
