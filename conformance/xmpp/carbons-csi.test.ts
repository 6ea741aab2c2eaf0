// Black-box XEP-0280 carbons (three XMPP resources and one MQTT device of
// one user), XEP-0352 CSI (presence and chat states held for an inactive
// client) and the interop leniency for an empty <show/>.
import assert from 'node:assert/strict';
import type { Element } from '@xmpp/xml';
import {
  closeAllRaw,
  isMessage,
  isPresence,
  ping,
  presence,
  rawLogin,
  sleep,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
} from '../helpers.ts';
import {
  addUsers,
  endAllMqtt,
  mqttConnect,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_CSI = 'urn:xmpp:csi:0';
const PW = 'pw-sync';

/** The forwarded message inside a carbon of this kind, if el is one. */
function carbon(el: Element, kind: 'sent' | 'received'): Element | undefined {
  return el.getChild(kind, NS_CARBONS)?.getChild('forwarded', NS_FORWARD)?.getChild('message');
}

describe('XEP-0280 carbons, XEP-0352 CSI, leniency', function () {
  this.timeout(30_000);
  let node: MqttTestNode;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const A = `${alice}@localhost`;
  const B = `${bob}@localhost`;

  const login = async (user: string, resource: string, carbons = false): Promise<TestClient> => {
    const c = await xmppClient({ port: node.ports.xmpp, username: user, password: PW, resource });
    if (carbons) {
      const r = await c.request(xml('iq', { type: 'set' }, xml('enable', { xmlns: NS_CARBONS })));
      assert.equal(r.attrs.type, 'result', 'carbons enabled [XEP-0280 4]');
    }
    await c.send(presence());
    await ping(c);
    return c;
  };

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode();
    await addUsers(node, { [alice]: PW, [bob]: PW });
  });
  afterEach(async () => {
    closeAllRaw();
    await endAllMqtt();
    await stopAllClients();
  });
  after(async () => node?.dispose());

  it('disco#info of the server lists carbons [XEP-0280 3]', async () => {
    const c = await login(alice, 'disco');
    const r = await c.request(
      xml(
        'iq',
        { type: 'get', to: 'localhost' },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }),
      ),
    );
    const features = r
      .getChild('query')!
      .getChildren('feature')
      .map((f) => f.attrs.var);
    assert.ok(features.includes(NS_CARBONS));
  });

  it('three resources and an MQTT device: sent and received copies go to the resources that enabled carbons, private ones to none [XEP-0280 5, 7]', async () => {
    const a1 = await login(alice, 'one'); // carbons off
    const a2 = await login(alice, 'two', true);
    const a3 = await login(alice, 'three', true);
    const dev = await mqttConnect(node.mqttPorts().mqtt, {
      username: alice,
      password: PW,
      clientId: 'watch',
      clean: true,
    });
    await dev.subscribeAsync(`chat/${alice}`, { qos: 1 });
    const devGot: string[] = [];
    dev.on('message', (_t, p) => devGot.push(p.toString()));
    const b = await login(bob, 'b');

    // received: bob → alice/one (full JID)
    await b.send(
      xml('message', { to: `${A}/one`, type: 'chat', id: 'r1' }, xml('body', {}, 'to one')),
    );
    await a1.waitFor(isMessage({ id: 'r1' }));
    for (const c of [a2, a3]) {
      const el = await c.waitFor((e) => !!carbon(e, 'received'), 3000, 'received carbon');
      assert.equal(el.attrs.from, A, 'a carbon comes from the bare JID [XEP-0280 5]');
      assert.equal(carbon(el, 'received')!.attrs.id, 'r1');
      assert.equal(carbon(el, 'received')!.getChildText('body'), 'to one');
    }
    await a1.expectNone(
      (e) => !!carbon(e, 'received'),
      200,
      'a carbon on the resource that did not enable them',
    );

    // sent: alice/one → bob
    await a1.send(xml('message', { to: B, type: 'chat', id: 's1' }, xml('body', {}, 'from one')));
    for (const c of [a2, a3]) {
      const el = await c.waitFor((e) => !!carbon(e, 'sent'), 3000, 'sent carbon');
      assert.equal(carbon(el, 'sent')!.attrs.from, `${A}/one`);
      assert.equal(carbon(el, 'sent')!.attrs.to, B);
    }

    // sent from the MQTT device: the XMPP resources with carbons see it
    await dev.publishAsync(`chat/${bob}`, JSON.stringify({ body: 'from the watch', id: 'm1' }), {
      qos: 1,
    });
    await b.waitFor(isMessage({ id: 'm1' }));
    for (const c of [a2, a3]) {
      const el = await c.waitFor(
        (e) => carbon(e, 'sent')?.attrs.id === 'm1',
        3000,
        'sent carbon of the MQTT message',
      );
      assert.equal(carbon(el, 'sent')!.attrs.from, `${A}/watch`);
    }

    // private: no copies [XEP-0280 7]; no-copy likewise [XEP-0334]
    await b.send(
      xml(
        'message',
        { to: `${A}/one`, type: 'chat', id: 'p1' },
        xml('body', {}, 'secret'),
        xml('private', { xmlns: NS_CARBONS }),
      ),
    );
    await a1.send(
      xml(
        'message',
        { to: B, type: 'chat', id: 'p2' },
        xml('body', {}, 'secret too'),
        xml('no-copy', { xmlns: 'urn:xmpp:hints' }),
      ),
    );
    await a1.waitFor(isMessage({ id: 'p1' }));
    await b.waitFor(isMessage({ id: 'p2' }));
    for (const c of [a2, a3])
      await c.expectNone(
        (e) =>
          ['p1', 'p2'].includes(
            carbon(e, 'received')?.attrs.id ?? carbon(e, 'sent')?.attrs.id ?? '',
          ),
        300,
        'a copy of a private message',
      );

    // to the bare JID: every available resource and the device get the original, once (Parley's multi-device rule)
    await b.send(xml('message', { to: A, type: 'chat', id: 'bare1' }, xml('body', {}, 'to all')));
    for (const c of [a1, a2, a3]) await c.waitFor(isMessage({ id: 'bare1', from: `${B}/b` }));
    await sleep(300);
    for (const c of [a2, a3])
      assert.ok(
        !c.received.some((e) => carbon(e, 'received')?.attrs.id === 'bare1'),
        'no carbon of a bare-JID message',
      );
    assert.equal(devGot.filter((p) => p.includes('to all')).length, 1, 'the device got it once');
  });

  it('an inactive client gets no presence churn and no chat states; messages with a body at once; on active, the latest presence per contact [XEP-0352]', async () => {
    // mutual subscription
    const a = await login(alice, 'csi');
    const b = await login(bob, 'csi-b');
    await a.send(xml('presence', { to: B, type: 'subscribe' }));
    await b.waitFor(isPresence({ type: 'subscribe' }));
    await b.send(xml('presence', { to: A, type: 'subscribed' }));
    await a.waitFor(
      isPresence({ from: `${B}/csi-b`, type: undefined }),
      3000,
      "bob's presence after the subscription",
    );
    const raw = await rawLogin(node.ports.xmpp, alice, PW, 'SCRAM-SHA-256', 'phone');
    raw.send(`<presence/>`);
    await raw.waitFor(/<presence[^>]*from='[^']*csi-b'/);
    raw.send(`<inactive xmlns='${NS_CSI}'/>`);
    await sleep(100);
    const mark = raw.text.length;
    await b.send(presence({ show: 'away' }));
    await b.send(presence({ show: 'dnd', status: 'busy' }));
    await b.send(
      xml(
        'message',
        { to: A, type: 'chat' },
        xml('composing', { xmlns: 'http://jabber.org/protocol/chatstates' }),
      ),
    );
    await sleep(300);
    assert.ok(
      !/<presence|composing/.test(raw.text.slice(mark)),
      `nothing while inactive; got ${raw.text.slice(mark)}`,
    );
    await b.send(xml('message', { to: A, type: 'chat', id: 'now' }, xml('body', {}, 'urgent')));
    await raw.waitFor(/urgent<\/body>/);
    assert.ok(
      !/<presence/.test(raw.text.slice(mark)),
      'a message with a body goes at once, presence still held',
    );
    raw.send(`<active xmlns='${NS_CSI}'/>`);
    const flushed = await raw.waitFor(/<presence[\s\S]*?<\/presence>/);
    assert.match(flushed, /<show>dnd<\/show>/, 'only the latest presence of the contact');
    await sleep(300);
    const after = raw.text.slice(mark);
    assert.equal(
      (after.match(/<presence/g) ?? []).length,
      1,
      `one presence after active; got ${after}`,
    );
    assert.ok(!/composing/.test(after), 'the chat state superseded by the message is gone');
  });

  it('an empty <show/> in initial presence counts as available: the session gets messages (docs/leniency.md)', async () => {
    const raw = await rawLogin(node.ports.xmpp, bob, PW, 'SCRAM-SHA-256', 'cli');
    raw.send(`<presence><show/></presence>`);
    raw.send(`<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>`);
    const upto = await raw.waitFor(/id='p1'[^>]*\/?>/);
    assert.ok(!/bad-request/.test(upto), `no error for the empty show; got ${upto}`);
    const a = await login(alice, 'sender');
    await a.send(
      xml('message', { to: B, type: 'chat', id: 'e1' }, xml('body', {}, 'reach the cli')),
    );
    await raw.waitFor(/reach the cli/);
  });
});
