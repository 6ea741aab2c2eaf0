// Black-box: receipts [XEP-0184], chat markers [XEP-0333], chat states
// [XEP-0085], hints [XEP-0334], stanza ids [XEP-0359], retraction [XEP-0424]
// and correction [XEP-0308] between XMPP clients (@xmpp/client) and an MQTT
// device (mqtt), checked on what each receives and in MAM.
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import {
  DOMAIN,
  isMessage,
  nextId,
  ping,
  presence,
  stanzaError,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type Element,
  type TestClient,
} from '../helpers.ts';
import { mam, NS_FORWARD, NS_SID } from '../mam-helpers.ts';
import {
  addUsers,
  collect,
  endAllMqtt,
  mqttConnect,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

const NS_RECEIPTS = 'urn:xmpp:receipts';
const NS_MARKERS = 'urn:xmpp:chat-markers:0';
const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
const NS_HINTS = 'urn:xmpp:hints';
const NS_RETRACT = 'urn:xmpp:message-retract:1';
const NS_CORRECT = 'urn:xmpp:message-correct:0';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const PW = 'conv-pw';

/** The message a MAM result forwards. */
const inner = (r: Element) => r.getChild('forwarded', NS_FORWARD)!.getChild('message')!;

/** Waits until a JSON payload matching `pred` is in `list` (collected from a topic). */
async function jsonWhere(
  list: string[],
  pred: (o: Record<string, unknown>) => boolean,
  what: string,
  ms = 5000,
): Promise<Record<string, unknown>> {
  const end = Date.now() + ms;
  for (;;) {
    const hit = list.map((p) => JSON.parse(p) as Record<string, unknown>).find(pred);
    if (hit) return hit;
    if (Date.now() > end) throw new Error(`no ${what} in ${JSON.stringify(list)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('conversations: receipts, markers, chat states, hints, retraction, correction (XMPP + MQTT)', function () {
  this.timeout(60_000);
  let node: MqttTestNode;
  const alice = uniqueName('cva');
  const bob = uniqueName('cvb');
  const eve = uniqueName('cve');
  const at = (u: string) => `${u}@${DOMAIN}`;
  let a1: TestClient;
  let a2: TestClient;
  let b: TestClient;
  let e: TestClient;
  let bm: MqttClient;
  let bobDevice: string[];

  const login = async (u: string, res: string, carbons = false) => {
    const c = await xmppClient({ port: node.ports.xmpp, username: u, password: PW, resource: res });
    if (carbons)
      assert.equal(
        (await c.request(xml('iq', { type: 'set' }, xml('enable', { xmlns: NS_CARBONS })))).attrs
          .type,
        'result',
      );
    await c.send(presence());
    await ping(c);
    return c;
  };
  const chat = (to: string, id: string, ...children: Element[]) =>
    xml('message', { to, type: 'chat', id }, ...children);
  const body = (t: string) => xml('body', {}, t);
  const withId = (c: TestClient, id: string) => c.waitFor(isMessage({ id }), 5000, `message ${id}`);
  /** Bob's archive with alice, as [message, archive id] newest last. */
  const bobArchive = async () => {
    const p = await mam(b, { form: { with: at(alice) }, max: 250 });
    assert.equal(p.iq.attrs.type, 'result');
    return p.results.map((r) => ({ msg: inner(r), id: r.attrs.id as string }));
  };

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode();
    await addUsers(node, { [alice]: PW, [bob]: PW, [eve]: PW });
    a1 = await login(alice, 'one', true);
    a2 = await login(alice, 'two', true);
    b = await login(bob, 'desk');
    e = await login(eve, 'x');
    bm = await mqttConnect(node.mqttPorts().mqtt, {
      username: bob,
      password: PW,
      clientId: 'bob-phone',
    });
    await bm.subscribeAsync(`chat/${bob}`, { qos: 1 });
    bobDevice = collect(bm, `chat/${bob}`);
  });
  after(async () => {
    await endAllMqtt();
    await stopAllClients();
    await node?.dispose();
  });

  it('a receipt request and markable reach every device; receipts and markers come back, are archived with their ids and carbon-copied [XEP-0184 5] [XEP-0333 3] [XEP-0313] [XEP-0280 5]', async () => {
    const id = nextId('m');
    await a1.send(
      chat(
        at(bob),
        id,
        body('read me'),
        xml('request', { xmlns: NS_RECEIPTS }),
        xml('markable', { xmlns: NS_MARKERS }),
      ),
    );
    const got = await withId(b, id);
    assert.ok(got.getChild('request', NS_RECEIPTS) && got.getChild('markable', NS_MARKERS));
    const sid = got.getChild('stanza-id', NS_SID)!.attrs.id as string;
    const dev = await jsonWhere(bobDevice, (o) => o.id === id, 'the message on the device');
    assert.deepEqual([dev.body, dev.markable, dev.archiveId], ['read me', true, sid]);
    // Bob's desk sends a receipt, his phone the displayed marker.
    const rid = nextId('r');
    await b.send(chat(at(alice), rid, xml('received', { xmlns: NS_RECEIPTS, id })));
    await bm.publishAsync(`chat/${alice}`, JSON.stringify({ displayed: id, id: 'disp-1' }), {
      qos: 1,
    });
    for (const c of [a1, a2]) {
      const r = await withId(c, rid);
      assert.equal(r.getChild('received', NS_RECEIPTS)?.attrs.id, id);
      assert.ok(r.getChild('stanza-id', NS_SID), 'the receipt has its archive id [XEP-0359]');
      const d = await withId(c, 'disp-1');
      assert.equal(d.getChild('displayed', NS_MARKERS)?.attrs.id, id);
    }
    // Alice's phone marks it too: her other resource gets the sent carbon.
    await a1.send(chat(at(bob), 'a-disp', xml('displayed', { xmlns: NS_MARKERS, id: 'whatever' })));
    const sentCopy = (el: Element) =>
      el.getChild('sent', NS_CARBONS)?.getChild('forwarded', NS_FORWARD)?.getChild('message');
    const copy = await a2.waitFor(
      (el) => sentCopy(el)?.attrs.id === 'a-disp',
      5000,
      'sent carbon of the marker',
    );
    const fwd = sentCopy(copy)!;
    assert.equal(fwd.getChild('displayed', NS_MARKERS)?.attrs.id, 'whatever');
    // In the archive: the message, the receipt and both markers, each with an id.
    const arch = await bobArchive();
    const byMsgId = new Map(arch.map((x) => [x.msg.attrs.id as string, x]));
    assert.equal(byMsgId.get(id)?.id, sid);
    assert.equal(byMsgId.get(rid)?.msg.getChild('received', NS_RECEIPTS)?.attrs.id, id);
    assert.equal(byMsgId.get('disp-1')?.msg.getChild('displayed', NS_MARKERS)?.attrs.id, id);
    assert.ok(byMsgId.get('a-disp'), 'a marker alice sent');
  });

  it('chat states are relayed, never archived [XEP-0085 5.6]; no-permanent-store is delivered and not archived, store archives a body-less message [XEP-0334 4]', async () => {
    await a1.send(chat(at(bob), 'cs-1', xml('composing', { xmlns: NS_CHATSTATES })));
    assert.ok((await withId(b, 'cs-1')).getChild('composing', NS_CHATSTATES));
    await a1.send(
      chat(at(bob), 'npm-1', body('ephemeral'), xml('no-permanent-store', { xmlns: NS_HINTS })),
    );
    assert.equal((await withId(b, 'npm-1')).getChildText('body'), 'ephemeral');
    await a1.send(
      chat(
        at(bob),
        'st-1',
        xml('x', { xmlns: 'urn:example:custom' }),
        xml('store', { xmlns: NS_HINTS }),
      ),
    );
    assert.ok((await withId(b, 'st-1')).getChild('x', 'urn:example:custom'));
    await ping(a1);
    const ids = (await bobArchive()).map((x) => x.msg.attrs.id);
    assert.ok(!ids.includes('cs-1'), 'chat state not archived');
    assert.ok(!ids.includes('npm-1'), 'no-permanent-store not archived');
    assert.ok(ids.includes('st-1'), 'store hint archived');
  });

  it('no-store keeps a message out of the offline queue [XEP-0334 4.2]; the origin-id is kept [XEP-0359 4]', async () => {
    await e.stop();
    await a1.send(
      chat(at(eve), 'ns-1', body('not for later'), xml('no-store', { xmlns: NS_HINTS })),
    );
    await a1.send(
      chat(
        at(eve),
        'ns-2',
        body('for later'),
        xml('origin-id', { xmlns: NS_SID, id: 'origin-ns-2' }),
      ),
    );
    await ping(a1);
    e = await xmppClient({ port: node.ports.xmpp, username: eve, password: PW, resource: 'x' });
    await e.send(presence());
    const later = await withId(e, 'ns-2');
    assert.equal(later.getChild('origin-id', NS_SID)?.attrs.id, 'origin-ns-2');
    await e.expectNone(isMessage({ id: 'ns-1' }), 300, 'the no-store message');
  });

  it('a retraction reaches every device of both parties; the message becomes a tombstone in both archives, same id [XEP-0424 4, 5]', async () => {
    await a1.send(
      chat(
        at(bob),
        'oops-1',
        body('wrong chat'),
        xml('origin-id', { xmlns: NS_SID, id: 'oops-1' }),
      ),
    );
    const sid = (await withId(b, 'oops-1')).getChild('stanza-id', NS_SID)!.attrs.id as string;
    await a1.send(
      chat(
        at(bob),
        'retract-1',
        xml('retract', { xmlns: NS_RETRACT, id: 'oops-1' }),
        body('fallback'),
        xml('store', { xmlns: NS_HINTS }),
      ),
    );
    assert.equal(
      (await withId(b, 'retract-1')).getChild('retract', NS_RETRACT)?.attrs.id,
      'oops-1',
    );
    const copy = await a2.waitFor(
      (el) =>
        el.getChild('sent', NS_CARBONS)?.getChild('forwarded', NS_FORWARD)?.getChild('message')
          ?.attrs.id === 'retract-1',
      5000,
      'carbon',
    );
    assert.ok(copy);
    await jsonWhere(bobDevice, (o) => o.retract === 'oops-1', 'the retraction on the device');
    const tomb = (await bobArchive()).find((x) => x.id === sid)!;
    assert.ok(tomb.msg.getChild('retracted', NS_RETRACT)?.attrs.stamp, 'tombstone');
    assert.equal(tomb.msg.getChild('body'), undefined, 'no body left');
    assert.equal(tomb.msg.getChild('origin-id', NS_SID)?.attrs.id, 'oops-1');
    const mine = await mam(a1, { form: { with: at(bob) }, max: 250 });
    const own = mine.results.find((r) => inner(r).attrs.id === 'oops-1')!;
    assert.ok(
      inner(own).getChild('retracted', NS_RETRACT),
      "alice's archive shows the tombstone as well",
    );
    // The device's history shows the tombstone too.
    await bm.subscribeAsync(`history/response/${bob}`, { qos: 1 });
    const histList = collect(bm, `history/response/${bob}`);
    await bm.publishAsync(`history/request/${bob}`, JSON.stringify({ with: alice, max: 250 }), {
      qos: 1,
    });
    const page = await jsonWhere(histList, (o) => Array.isArray(o.messages), 'history page');
    const t = (page.messages as Record<string, unknown>[]).find((m) => m.archiveId === sid)!;
    assert.ok(t.retracted && t.body === undefined, JSON.stringify(t));
  });

  it("only the sender retracts: another party's message is forbidden, an id of another conversation or a forged one item-not-found, nothing relayed [XEP-0424 7]", async () => {
    await a1.send(chat(at(bob), 'keep-1', body('stays')));
    const sid = (await withId(b, 'keep-1')).getChild('stanza-id', NS_SID)!.attrs.id as string;
    const cases: [TestClient, string, string, string][] = [
      [b, at(alice), 'keep-1', 'forbidden'], // bob retracts alice's message
      [e, at(bob), 'keep-1', 'item-not-found'], // eve names a message of alice|bob
      [a1, at(bob), 'never-sent', 'item-not-found'], // forged id
    ];
    for (const [c, to, target, condition] of cases) {
      const rid = nextId('bad');
      await c.send(chat(to, rid, xml('retract', { xmlns: NS_RETRACT, id: target })));
      const err = await c.waitFor(
        isMessage({ id: rid, type: 'error' }),
        5000,
        `${condition} for ${rid}`,
      );
      assert.equal(stanzaError(err).condition, condition);
    }
    // Bob's correction of alice's message is refused as well [XEP-0308 5].
    await b.send(
      chat(
        at(alice),
        'bad-fix',
        body('edited by bob'),
        xml('replace', { xmlns: NS_CORRECT, id: 'keep-1' }),
      ),
    );
    const err = await b.waitFor(
      isMessage({ id: 'bad-fix', type: 'error' }),
      5000,
      'forbidden correction',
    );
    assert.equal(stanzaError(err).condition, 'forbidden');
    await a1.expectNone(
      (el) => !!el.getChild('retract', NS_RETRACT) || !!el.getChild('replace', NS_CORRECT),
      300,
      'a refused retraction or correction',
    );
    const kept = (await bobArchive()).find((x) => x.id === sid)!;
    assert.equal(kept.msg.getChildText('body'), 'stays');
  });

  it('a correction is relayed and archived; MAM returns the original and the correction [XEP-0308 3]', async () => {
    await a1.send(chat(at(bob), 'typo-1', body('helo')));
    await withId(b, 'typo-1');
    await a1.send(
      chat(at(bob), 'fix-1', body('hello'), xml('replace', { xmlns: NS_CORRECT, id: 'typo-1' })),
    );
    const fix = await withId(b, 'fix-1');
    assert.equal(fix.getChild('replace', NS_CORRECT)?.attrs.id, 'typo-1');
    await jsonWhere(
      bobDevice,
      (o) => o.replace === 'typo-1' && o.body === 'hello',
      'the correction on the device',
    );
    const arch = await bobArchive();
    assert.equal(arch.find((x) => x.msg.attrs.id === 'typo-1')?.msg.getChildText('body'), 'helo');
    assert.equal(
      arch.find((x) => x.msg.attrs.id === 'fix-1')?.msg.getChild('replace', NS_CORRECT)?.attrs.id,
      'typo-1',
    );
  });

  it('an MQTT device retracts and corrects its own messages with JSON on chat/ and gets precise errors for others [XEP-0424] [XEP-0308]', async () => {
    await bm.publishAsync(`chat/${alice}`, JSON.stringify({ body: 'from the phone', id: 'ph-1' }), {
      qos: 1,
    });
    await withId(a1, 'ph-1');
    await bm.publishAsync(
      `chat/${alice}`,
      JSON.stringify({ replace: 'ph-1', body: 'from my phone', id: 'ph-2' }),
      { qos: 1 },
    );
    assert.equal((await withId(a1, 'ph-2')).getChild('replace', NS_CORRECT)?.attrs.id, 'ph-1');
    await bm.publishAsync(`chat/${alice}`, JSON.stringify({ retract: 'ph-1', id: 'ph-3' }), {
      qos: 1,
    });
    assert.equal((await withId(a1, 'ph-3')).getChild('retract', NS_RETRACT)?.attrs.id, 'ph-1');
    // alice's message, from bob's phone: forbidden, on the device's own chat topic
    await bm.publishAsync(`chat/${alice}`, JSON.stringify({ retract: 'keep-1', id: 'ph-4' }), {
      qos: 1,
    });
    const err = await jsonWhere(
      bobDevice,
      (o) => o.type === 'error' && o.id === 'ph-4',
      'the error',
    );
    assert.equal((err.error as { condition: string }).condition, 'forbidden');
    // Malformed: two things at once, a correction without a body.
    const badRequests = () =>
      bobDevice.filter(
        (p) =>
          (JSON.parse(p) as { error?: { condition: string } }).error?.condition === 'bad-request',
      ).length;
    for (const [n, bad] of [{ retract: 'x', displayed: 'y' }, { replace: 'x' }].entries()) {
      await bm.publishAsync(`chat/${alice}`, JSON.stringify(bad), { qos: 1 });
      await jsonWhere(
        bobDevice,
        () => badRequests() === n + 1,
        `bad-request for ${JSON.stringify(bad)}`,
      );
    }
    const tomb = (await bobArchive()).find((x) => x.msg.attrs.id === 'ph-1')!;
    assert.ok(tomb.msg.getChild('retracted', NS_RETRACT));
  });
});
