// Black-box: Message Archive Management [XEP-0313] v2 and #extended on user
// archives, paged with Result Set Management [XEP-0059], archive
// preferences [XEP-0441], stanza ids [XEP-0359] on live messages, and a
// message from an MQTT device in the archive. Real client: @xmpp/client.
import assert from 'node:assert/strict';
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
import {
  addUsers,
  endAllMqtt,
  mqttConnect,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';
import { mam, NS_FORWARD, NS_MAM, NS_RSM, NS_SID, type Page, type Query } from '../mam-helpers.ts';

const PW = 'mam-pw';
const N = 1000;

const byId = (a: string, b: string) => (BigInt(a) < BigInt(b) ? -1 : 1);
const chat = (to: string, body: string, ...extra: Element[]) =>
  xml('message', { to, type: 'chat', id: nextId('m') }, xml('body', {}, body), ...extra);

describe('XMPP message archive [XEP-0313] [XEP-0059] [XEP-0359]', function () {
  this.timeout(60_000);
  let node: MqttTestNode;
  const alice = uniqueName('mama');
  const bob = uniqueName('mamb');
  const carol = uniqueName('mamc');
  const dave = uniqueName('mamd');
  const at = (u: string) => `${u}@${DOMAIN}`;
  let a: TestClient;
  let b: TestClient;
  /** alice's archive ids of her 1,000 messages to bob, oldest first */
  let all: Page;

  const login = async (u: string, res = 'r1') => {
    const c = await xmppClient({ port: node.ports.xmpp, username: u, password: PW, resource: res });
    await c.send(presence());
    await ping(c);
    return c;
  };

  before(async function () {
    this.timeout(120_000);
    node = await startMqttNode();
    await addUsers(node, { [alice]: PW, [bob]: PW, [carol]: PW, [dave]: PW });
    a = await login(alice);
    b = await login(bob);
    // 1,000 messages over one client, written back to back; the ping returns once all are routed.
    for (let i = 0; i < N; i++) void a.send(chat(at(bob), `m${i}`));
    await ping(a);
    await b.waitFor(
      (e) => e.name === 'message' && e.getChildText('body') === `m${N - 1}`,
      30_000,
      'the last of 1,000 messages',
    );
    a.drain();
    // Every id of alice's archive, in 4 pages of 250.
    const ids: string[] = [];
    const bodies: string[] = [];
    const stamps: number[] = [];
    let after: string | undefined;
    for (;;) {
      const p = await mam(a, { form: { with: at(bob) }, max: 250, ...(after ? { after } : {}) });
      if (p.iq.attrs.type !== 'result' || p.ids.length === 0)
        throw new Error(`MAM query failed: ${p.iq.toString()}`);
      ids.push(...p.ids);
      bodies.push(...p.bodies);
      stamps.push(...p.stamps);
      if (p.complete) break;
      after = p.last;
    }
    all = { iq: xml('iq'), results: [], ids, bodies, stamps, complete: true };
  });
  after(async () => {
    await endAllMqtt();
    await stopAllClients();
    await node?.dispose();
  });

  it("disco#info on the account's bare JID lists mam:2, mam:2#extended and sid:0 [XEP-0313 support] [XEP-0359 §3]", async () => {
    const r = await a.request(
      xml(
        'iq',
        { type: 'get', to: at(alice) },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }),
      ),
    );
    const features =
      r
        .getChild('query')
        ?.getChildren('feature')
        .map((f) => f.attrs.var) ?? [];
    for (const f of [NS_MAM, `${NS_MAM}#extended`, NS_SID])
      assert.ok(features.includes(f), `${f} in ${features.join(' ')}`);
  });

  it('pages forwards over 1,000 messages: chronological, exact count on every page, complete only on the last [XEP-0313 query-paging] [XEP-0059 2.2]', async () => {
    assert.deepEqual(
      all.bodies,
      Array.from({ length: N }, (_, i) => `m${i}`),
    );
    assert.deepEqual([...all.ids].sort(byId), all.ids, 'ids order the archive');
    assert.equal(new Set(all.ids).size, N);
    let after: string | undefined;
    const seen: string[] = [];
    for (let page = 0; page < 10; page++) {
      const p = await mam(a, { form: { with: at(bob) }, max: 100, ...(after ? { after } : {}) });
      assert.equal(p.count, N);
      assert.equal(p.ids.length, 100);
      assert.equal(p.first, p.ids[0]);
      assert.equal(p.last, p.ids[99]);
      assert.equal(p.complete, page === 9, `page ${page} complete=${p.complete}`);
      seen.push(...p.ids);
      after = p.last;
    }
    assert.deepEqual(seen, all.ids);
    // Past the end: an empty, complete page that still counts.
    const end = await mam(a, { form: { with: at(bob) }, max: 100, after });
    assert.deepEqual([end.ids.length, end.count, end.complete, end.first], [0, N, true, undefined]);
  });

  it('pages backwards from the last page (<before/>), each page chronological, complete at the start [XEP-0059 2.5] [XEP-0313 query-paging]', async () => {
    let before = '';
    const pages: string[][] = [];
    for (let page = 0; page < 7; page++) {
      const p = await mam(a, { form: { with: at(bob) }, max: 150, before });
      assert.equal(p.count, N);
      assert.deepEqual([...p.ids].sort(byId), p.ids, 'chronological within the page');
      assert.equal(p.complete, page === 6);
      pages.unshift(p.ids);
      before = p.first as string;
    }
    assert.equal(pages[0].length, N - 6 * 150);
    assert.deepEqual(pages.flat(), all.ids);
  });

  it("bob's archive holds the same 1,000, and each live message carried its id as stanza-id by bob [XEP-0359 §4]", async () => {
    const live = b.received.filter(
      (e) => e.name === 'message' && /^m\d+$/.test(e.getChildText('body') ?? ''),
    );
    assert.equal(live.length, N);
    const sids = live.map((e) => {
      const s = e.getChildren('stanza-id', NS_SID);
      assert.equal(s.length, 1, e.toString());
      assert.equal(s[0].attrs.by, at(bob));
      return s[0].attrs.id as string;
    });
    const ids: string[] = [];
    let after: string | undefined;
    for (;;) {
      const p = await mam(b, { form: { with: at(alice) }, max: 250, ...(after ? { after } : {}) });
      assert.equal(p.count, N);
      ids.push(...p.ids);
      if (p.complete) break;
      after = p.last;
    }
    assert.deepEqual(sids, ids);
  });

  it('filters by start and end (inclusive, archive time), with exact counts [XEP-0313 filter-time]', async () => {
    const start = all.stamps[300];
    const end = all.stamps[599];
    const expected = all.ids.filter((_, i) => all.stamps[i] >= start && all.stamps[i] <= end);
    const iso = (t: number) => new Date(t).toISOString();
    const p = await mam(a, {
      form: { with: at(bob), start: iso(start), end: iso(end) },
      max: 1000,
    });
    assert.deepEqual(p.ids, expected.slice(0, 250), 'a page of at most 250 (the server maximum)');
    assert.equal(p.count, expected.length);
    assert.ok(expected.length >= 300);
    const tail = await mam(a, { form: { start: iso(all.stamps[N - 1]) } });
    assert.ok(tail.ids.includes(all.ids[N - 1]));
    const bad = await mam(a, { form: { start: 'yesterday' } });
    assert.deepEqual(stanzaError(bad.iq), { type: 'modify', condition: 'bad-request' });
  });

  it('filters by with: only that conversation, either direction [XEP-0313 filter-jid]', async () => {
    const c = await login(carol);
    await c.send(chat(at(alice), 'from carol'));
    await a.send(chat(at(carol), 'to carol'));
    await ping(c);
    await ping(a);
    const p = await mam(a, { form: { with: at(carol) } });
    assert.deepEqual([p.bodies, p.count, p.complete], [['from carol', 'to carol'], 2, true]);
    const every = await mam(a, { max: 0 });
    assert.equal(every.count, N + 2);
  });

  it('with a full JID matches only that exact JID, a bare JID every resource; paged, no count [XEP-0313 4.1.1] [XEP-0059 2.6]', async () => {
    const [eve, fay] = [uniqueName('mame'), uniqueName('mamf')];
    await addUsers(node, { [eve]: PW, [fay]: PW });
    const e = await login(eve);
    const [f1, f2] = [await login(fay, 'desk'), await login(fay, 'phone')];
    const phone = `${at(fay)}/phone`;
    for (let i = 0; i < 4; i++) {
      await f1.send(chat(at(eve), `desk ${i}`));
      await f2.send(chat(at(eve), `phone ${i}`));
    }
    await Promise.all([ping(f1), ping(f2)]);
    await e.send(chat(phone, 'to the phone'));
    await e.send(chat(at(fay), 'to fay'));
    await ping(e);
    const bare = await mam(e, { form: { with: at(fay) } });
    assert.equal(bare.count, 10, 'a bare JID: every resource, both directions');
    const full = await mam(e, { form: { with: phone } });
    assert.deepEqual(full.bodies, ['phone 0', 'phone 1', 'phone 2', 'phone 3', 'to the phone']);
    assert.equal(full.complete, true);
    assert.equal(
      full.iq.getChild('fin', NS_MAM)?.getChild('set', NS_RSM)?.getChild('count'),
      undefined,
    );
    // Paged two at a time, forwards then backwards: the same five, in order.
    const pages: string[][] = [];
    let after: string | undefined;
    for (let n = 0; n < 5; n++) {
      const p = await mam(e, { form: { with: phone }, max: 2, ...(after ? { after } : {}) });
      pages.push(p.bodies);
      if (p.complete) break;
      after = p.last;
    }
    assert.deepEqual(pages, [['phone 0', 'phone 1'], ['phone 2', 'phone 3'], ['to the phone']]);
    const lastPage = await mam(e, { form: { with: phone }, max: 2, before: '' });
    assert.deepEqual([lastPage.bodies, lastPage.complete], [['phone 3', 'to the phone'], false]);
    const firstPage = await mam(e, { form: { with: phone }, max: 2, before: lastPage.first });
    assert.deepEqual(firstPage.bodies, ['phone 1', 'phone 2']);
    const none = await mam(e, { form: { with: `${at(fay)}/tablet` } });
    assert.deepEqual([none.bodies, none.complete], [[], true]);
  });

  it('after-id / before-id bound the result set and its count; ids fetches given messages [XEP-0313 query-limit-id]', async () => {
    const p = await mam(a, {
      form: { with: at(bob), 'after-id': all.ids[10], 'before-id': all.ids[20] },
    });
    assert.deepEqual([p.ids, p.count, p.complete], [all.ids.slice(11, 20), 9, true]);
    const picked = [all.ids[700], all.ids[3], all.ids[512]];
    const q = await mam(a, { form: { ids: picked } });
    assert.deepEqual([q.ids, q.count], [[all.ids[3], all.ids[512], all.ids[700]], 3]);
    assert.deepEqual(q.bodies, ['m3', 'm512', 'm700']);
  });

  it('flip-page sends the same page newest first [XEP-0313 query-paging-flip]', async () => {
    const p = await mam(a, { form: { with: at(bob) }, max: 5, after: all.ids[100], flip: true });
    assert.deepEqual(p.ids, all.ids.slice(101, 106).reverse());
    assert.deepEqual([p.first, p.last, p.count], [all.ids[105], all.ids[101], N]);
  });

  it("an id not in the requester's archive is item-not-found, in RSM and in the form [XEP-0313 query-paging] [XEP-0059 2.6]", async () => {
    const c = await login(carol, 'r2');
    await c.send(chat(at(dave), "not alice's"));
    await ping(c);
    const carols = await mam(c, { form: { with: at(dave) } });
    const foreign = carols.ids[0];
    assert.ok(foreign);
    for (const q of [
      { after: foreign },
      { before: '123' },
      { form: { 'after-id': foreign } },
      { form: { 'before-id': 'nope' } },
      { form: { ids: [all.ids[0], foreign] } },
    ] as Query[]) {
      const r = await mam(a, q);
      assert.deepEqual(
        stanzaError(r.iq),
        { type: 'cancel', condition: 'item-not-found' },
        JSON.stringify(q),
      );
      assert.equal(r.results.length, 0);
    }
  });

  it("another user's archive is forbidden; an unknown field is feature-not-implemented [XEP-0313 security-privacy] [XEP-0313 query-form]", async () => {
    const r = await mam(a, { to: at(bob) });
    assert.deepEqual(stanzaError(r.iq), { type: 'auth', condition: 'forbidden' });
    assert.equal(r.results.length, 0);
    const f = await mam(a, { form: { 'urn:example:search': 'x' } });
    assert.equal(stanzaError(f.iq).condition, 'feature-not-implemented');
  });

  it('the query form lists the extended fields, and metadata gives the first and last ids [XEP-0313 query-form] [XEP-0313 archive-metadata]', async () => {
    const form = await a.request(xml('iq', { type: 'get' }, xml('query', { xmlns: NS_MAM })));
    const vars = form
      .getChild('query', NS_MAM)
      ?.getChild('x', 'jabber:x:data')
      ?.getChildren('field')
      .map((f) => f.attrs.var);
    assert.deepEqual(vars, ['FORM_TYPE', 'with', 'start', 'end', 'before-id', 'after-id', 'ids']);
    const md = await a.request(xml('iq', { type: 'get' }, xml('metadata', { xmlns: NS_MAM })));
    const m = md.getChild('metadata', NS_MAM);
    assert.equal(m?.getChild('start')?.attrs.id, all.ids[0]);
    const last = await mam(a, { before: '', max: 1 });
    assert.equal(m?.getChild('end')?.attrs.id, last.ids[0]);
  });

  it('a client-sent stanza-id claiming the archive is removed; origin-id is kept, live and in the archive [XEP-0359 §5]', async () => {
    const forged = xml('stanza-id', { xmlns: NS_SID, by: at(bob), id: 'forged' });
    const origin = xml('origin-id', { xmlns: NS_SID, id: 'origin-1' });
    await a.send(chat(at(bob), 'with ids', forged, origin));
    const got = await b.waitFor(
      (e) => isMessage()(e) && e.getChildText('body') === 'with ids',
      5000,
    );
    const sids = got.getChildren('stanza-id', NS_SID);
    assert.equal(sids.length, 1);
    assert.notEqual(sids[0].attrs.id, 'forged');
    assert.equal(got.getChild('origin-id', NS_SID)?.attrs.id, 'origin-1');
    const p = await mam(b, { form: { ids: [sids[0].attrs.id as string] } });
    const inner = p.results[0].getChild('forwarded', NS_FORWARD)?.getChild('message');
    assert.equal(inner?.getChild('origin-id', NS_SID)?.attrs.id, 'origin-1');
    assert.equal(
      inner?.getChildren('stanza-id', NS_SID).some((s) => s.attrs.id === 'forged'),
      false,
    );
  });

  it('preferences: never and always lists and the default decide what each user archives; the message still arrives [XEP-0441]', async () => {
    const d = await login(dave);
    const c = await login(carol, 'r3');
    const prefs = (el: Element) => ({
      default: el.attrs.default,
      always: el
        .getChild('always')
        ?.getChildren('jid')
        .map((j) => j.getText()),
      never: el
        .getChild('never')
        ?.getChildren('jid')
        .map((j) => j.getText()),
    });
    const got = await d.request(xml('iq', { type: 'get' }, xml('prefs', { xmlns: NS_MAM })));
    assert.deepEqual(prefs(got.getChild('prefs', NS_MAM) as Element), {
      default: 'always',
      always: [],
      never: [],
    });
    const set = await d.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'prefs',
          { xmlns: NS_MAM, default: 'always' },
          xml('always'),
          xml('never', {}, xml('jid', {}, at(carol))),
        ),
      ),
    );
    assert.deepEqual(prefs(set.getChild('prefs', NS_MAM) as Element), {
      default: 'always',
      always: [],
      never: [at(carol)],
    });
    await c.send(chat(at(dave), 'never archived by dave'));
    const live = await d.waitFor((e) => e.getChildText('body') === 'never archived by dave', 5000);
    assert.equal(live.getChild('stanza-id', NS_SID), undefined, "no id: not in dave's archive");
    assert.equal(
      (await mam(d, { form: { with: at(carol) } })).count,
      1,
      'only the earlier message from carol',
    );
    assert.ok(
      (await mam(c, { form: { with: at(dave) } })).bodies.includes('never archived by dave'),
      'carol archives it',
    );
    // default never, alice always.
    await d.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'prefs',
          { xmlns: NS_MAM, default: 'never' },
          xml('always', {}, xml('jid', {}, at(alice))),
          xml('never'),
        ),
      ),
    );
    await a.send(chat(at(dave), 'kept'));
    await c.send(chat(at(dave), 'dropped'));
    await d.waitFor((e) => e.getChildText('body') === 'dropped', 5000);
    await d.waitFor((e) => e.getChildText('body') === 'kept', 5000);
    assert.deepEqual((await mam(d, { form: { with: at(alice) } })).bodies, ['kept']);
    assert.equal((await mam(d, { form: { with: at(carol) } })).count, 1);
    const bad = await d.request(
      xml('iq', { type: 'set' }, xml('prefs', { xmlns: NS_MAM, default: 'sometimes' })),
    );
    assert.equal(stanzaError(bad).condition, 'bad-request');
  });

  it('a message from an MQTT device is in the archive like any other, with the id the device can page from', async () => {
    const dev = await mqttConnect(node.mqttPorts().mqtt, {
      username: carol,
      password: PW,
      clientId: 'sensor-1',
    });
    await dev.publishAsync(`chat/${alice}`, JSON.stringify({ body: 'from a device' }), { qos: 1 });
    const live = await a.waitFor((e) => e.getChildText('body') === 'from a device', 5000);
    const sid = live.getChild('stanza-id', NS_SID)?.attrs.id as string;
    assert.ok(sid);
    const p = await mam(a, { form: { with: at(carol) }, before: '', max: 1 });
    assert.deepEqual([p.bodies, p.ids], [['from a device'], [sid]]);
    const inner = p.results[0].getChild('forwarded', NS_FORWARD)?.getChild('message');
    assert.equal(inner?.attrs.from, `${at(carol)}/sensor-1`);
  });
});
