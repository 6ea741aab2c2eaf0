// MUC MAM completeness [XEP-0313 on a room JID, XEP-0059]: the `with` filter
// (an occupant JID: its nick; a real JID where real JIDs are visible),
// start/end, after-id/before-id, ids, RSM count/after/before/last page, flip-page, metadata,
// over a room of 300 messages with exact counts; a members-only room's
// archive is closed to non-members whatever the query.
import assert from 'node:assert/strict';
import {
  closeAllRaw,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  type Element,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import {
  MUC,
  NS_MAM,
  NS_MUC_ADMIN,
  NS_RSM,
  NS_SID,
  errorCondition,
  fromOccupant,
  join,
  loginAll,
  roomConfig,
  say,
  submitForm,
} from '../muc-helpers.ts';

const PW = 'mam-pw';
const ROOM = 'bigroom';

interface Page {
  ids: string[];
  bodies: string[];
  complete: boolean;
  count: number;
  first?: string;
  last?: string;
}

let qn = 0;

/** One MAM query on the room; the results it got, in the order sent. */
async function mam(
  c: TestClient,
  opts: { form?: Record<string, string | string[]>; rsm?: Element[]; flip?: boolean } = {},
): Promise<Page> {
  const queryid = `q${++qn}`;
  const children: Element[] = [];
  if (opts.form) children.push(submitForm(NS_MAM, opts.form));
  if (opts.rsm) children.push(xml('set', { xmlns: NS_RSM }, ...opts.rsm));
  if (opts.flip) children.push(xml('flip-page'));
  const res = await c.request(
    xml(
      'iq',
      { type: 'set', to: `${ROOM}@${MUC}` },
      xml('query', { xmlns: NS_MAM, queryid }, ...children),
    ),
  );
  if (res.attrs.type !== 'result') throw Object.assign(new Error(res.toString()), { reply: res });
  const results = c.received
    .map((el) => el.getChild('result', NS_MAM))
    .filter((r): r is Element => r?.attrs.queryid === queryid);
  const fin = res.getChild('fin', NS_MAM)!;
  const set = fin.getChild('set', NS_RSM)!;
  return {
    ids: results.map((r) => r.attrs.id as string),
    bodies: results.map((r) =>
      r.getChild('forwarded', 'urn:xmpp:forward:0')!.getChild('message')!.getChildText('body')!,
    ),
    complete: fin.attrs.complete === 'true',
    count: Number(set.getChildText('count')),
    first: set.getChildText('first') ?? undefined,
    last: set.getChildText('last') ?? undefined,
  };
}

async function mamError(
  c: TestClient,
  form?: Record<string, string | string[]>,
  rsm?: Element[],
): Promise<string | undefined> {
  try {
    await mam(c, { form, rsm });
  } catch (err) {
    return errorCondition((err as { reply: Element }).reply);
  }
  assert.fail('the query was answered');
}

const max = (n: number) => xml('max', {}, String(n));

describe('XEP-0313 on a room: filters, RSM and counts over 300 messages', function () {
  this.timeout(60_000);
  let node: TestNode;
  const names = { a: uniqueName('ma'), b: uniqueName('mb'), c: uniqueName('mc') };
  let alice: TestClient;
  let bob: TestClient;
  let carol: TestClient;
  /** every message in room order: seq, nick, body */
  const all: { id: string; nick: string; body: string }[] = [];
  let middle: Date;

  /** Each sends its share at once; resolves when alice saw every reflection. */
  async function batch(tag: string): Promise<void> {
    const want: string[] = [];
    for (let i = 0; i < 150; i++) {
      const [c, nick] = i % 3 === 2 ? [bob, 'bob'] : [alice, 'alice'];
      const body = `${tag}-${nick}-${i}`;
      want.push(body);
      void c.send(
        xml('message', { to: `${ROOM}@${MUC}`, type: 'groupchat' }, xml('body', {}, body)),
      );
    }
    const last = new Set(want);
    while (last.size) {
      const el = await alice.waitFor(
        (e) =>
          e.name === 'message' &&
          e.attrs.type === 'groupchat' &&
          last.has(e.getChildText('body') ?? ''),
        10_000,
        `${tag} reflections`,
      );
      const body = el.getChildText('body')!;
      last.delete(body);
      all.push({
        id: el.getChild('stanza-id', NS_SID)!.attrs.id,
        nick: el.attrs.from.split('/')[1],
        body,
      });
    }
  }

  before(async function () {
    this.timeout(60_000);
    node = await startNode();
    [alice, bob, carol] = await loginAll(node, [names.a, names.b, names.c], PW, { presence: true });
    await join(alice, ROOM, 'alice');
    await join(bob, ROOM, 'bob');
    await batch('one');
    middle = new Date();
    await new Promise((r) => setTimeout(r, 5)); // the next batch is stamped a few ms after `middle`
    await batch('two');
    all.sort((x, y) => Number(x.id) - Number(y.id));
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  it('the room archive holds 300 messages; max 0 answers the count alone [XEP-0059 2.7]', async () => {
    assert.equal(all.length, 300);
    const p = await mam(carol, { rsm: [max(0)] });
    assert.equal(p.count, 300);
    assert.deepEqual(p.ids, []);
  });

  it('paging forward with RSM after: every id once, in order, the last page complete [XEP-0059 2.2]', async () => {
    const got: string[] = [];
    let after: string | undefined;
    for (let i = 0; i < 10; i++) {
      const p = await mam(carol, { rsm: [max(70), ...(after ? [xml('after', {}, after)] : [])] });
      assert.equal(p.count, 300);
      got.push(...p.ids);
      if (p.complete) break;
      after = p.last;
    }
    assert.deepEqual(
      got,
      all.map((m) => m.id),
    );
  });

  it("with = an occupant JID (room/nick) returns that nick's messages only: 100 of 300 [XEP-0313 filter-jid]", async () => {
    const form = { with: `${ROOM}@${MUC}/bob` };
    const bobs = all.filter((m) => m.nick === 'bob');
    assert.equal(bobs.length, 100);
    const first = await mam(carol, { form, rsm: [max(60)] });
    assert.equal(first.count, 100);
    assert.equal(first.complete, false);
    const second = await mam(carol, { form, rsm: [max(60), xml('after', {}, first.last!)] });
    assert.equal(second.complete, true);
    assert.deepEqual(
      [...first.ids, ...second.ids],
      bobs.map((m) => m.id),
    );
    assert.ok(second.bodies.every((b) => b.includes('-bob-')));
  });

  it("with = a real JID: forbidden where real JIDs are hidden from the asker; the owner gets that user's 200 [XEP-0045 7.2.4]", async () => {
    assert.equal(await mamError(carol, { with: `${names.a}@localhost` }), 'forbidden');
    const p = await mam(alice, { form: { with: `${names.a}@localhost` }, rsm: [max(500)] });
    assert.equal(p.count, 200);
    assert.deepEqual(
      p.ids,
      all.filter((m) => m.nick === 'alice').map((m) => m.id),
    );
  });

  it('start and end split the archive at a moment: 150 and 150; with a nick, 50 [XEP-0313 filter-time]', async () => {
    const t = middle.toISOString();
    const later = new Date(middle.getTime() + 1).toISOString();
    const before = await mam(carol, { form: { end: t }, rsm: [max(500)] });
    const after = await mam(carol, { form: { start: later }, rsm: [max(500)] });
    assert.equal(before.count, 150);
    assert.equal(after.count, 150);
    assert.deepEqual(
      before.ids,
      all.slice(0, 150).map((m) => m.id),
    );
    assert.deepEqual(
      after.ids,
      all.slice(150).map((m) => m.id),
    );
    const bobLater = await mam(carol, {
      form: { start: later, with: `${ROOM}@${MUC}/bob` },
      rsm: [max(5)],
    });
    assert.equal(bobLater.count, 50);
    assert.deepEqual(
      bobLater.ids,
      all
        .slice(150)
        .filter((m) => m.nick === 'bob')
        .slice(0, 5)
        .map((m) => m.id),
    );
  });

  it('after-id and before-id narrow the set and its count: the 100 between [XEP-0313 #extended]', async () => {
    const p = await mam(carol, {
      form: { 'after-id': all[99].id, 'before-id': all[200].id },
      rsm: [max(40)],
    });
    assert.equal(p.count, 100);
    assert.deepEqual(
      p.ids,
      all.slice(100, 140).map((m) => m.id),
    );
  });

  it('RSM before: an empty before is the last page, a before id the page ending there, oldest first; flip-page turns it [XEP-0059 2.5, XEP-0313 query-paging-flip]', async () => {
    const last = await mam(carol, { rsm: [max(10), xml('before')] });
    assert.deepEqual(
      last.ids,
      all.slice(290).map((m) => m.id),
    );
    assert.equal(last.complete, false);
    assert.equal(last.count, 300);
    const flipped = await mam(carol, { rsm: [max(10), xml('before')], flip: true });
    assert.deepEqual(
      flipped.ids,
      all
        .slice(290)
        .map((m) => m.id)
        .reverse(),
    );
    assert.equal(flipped.first, all[299].id);
    const mid = await mam(carol, { rsm: [max(10), xml('before', {}, all[200].id)] });
    assert.deepEqual(
      mid.ids,
      all.slice(190, 200).map((m) => m.id),
    );
    const start = await mam(carol, { rsm: [max(10), xml('before', {}, all[5].id)] });
    assert.deepEqual(
      start.ids,
      all.slice(0, 5).map((m) => m.id),
    );
    assert.equal(start.complete, true, 'reached the start');
    const bobLast = await mam(carol, {
      form: { with: `${ROOM}@${MUC}/bob` },
      rsm: [max(3), xml('before')],
    });
    assert.deepEqual(
      bobLast.ids,
      all
        .filter((m) => m.nick === 'bob')
        .slice(-3)
        .map((m) => m.id),
    );
    assert.equal(bobLast.count, 100);
  });

  it('ids: exactly the messages named, in room order, with the other filters and RSM applied; count is theirs [XEP-0313 query-limit-id, #extended]', async () => {
    const named = [all[250], all[3], all[120], all[121], all[3]];
    const p = await mam(carol, { form: { ids: named.map((m) => m.id) } });
    assert.deepEqual(
      p.ids,
      [all[3], all[120], all[121], all[250]].map((m) => m.id),
    );
    assert.deepEqual(
      p.bodies,
      [all[3], all[120], all[121], all[250]].map((m) => m.body),
    );
    assert.equal(p.count, 4);
    assert.equal(p.complete, true);
    // a nick filter, after-id and an RSM page narrow them further
    const bobs = all.filter((m) => m.nick === 'bob').slice(0, 6);
    const byBob = await mam(carol, {
      form: {
        ids: [...bobs, ...all.filter((m) => m.nick === 'alice').slice(0, 2)].map((m) => m.id),
        with: `${ROOM}@${MUC}/bob`,
      },
      rsm: [max(4)],
    });
    assert.equal(byBob.count, 6);
    assert.deepEqual(
      byBob.ids,
      bobs.slice(0, 4).map((m) => m.id),
    );
    assert.equal(byBob.complete, false);
    const lastTwo = await mam(carol, {
      form: { ids: bobs.map((m) => m.id), 'after-id': bobs[1].id },
      rsm: [max(2), xml('before')],
    });
    assert.equal(lastTwo.count, 4);
    assert.deepEqual(
      lastTwo.ids,
      bobs.slice(4).map((m) => m.id),
    );
  });

  it('ids: one that is not in this room → item-not-found, nothing sent; the form lists ids; the room advertises urn:xmpp:mam:2#extended and answers metadata [XEP-0313 query-limit-id, query-form, archive-metadata]', async () => {
    const before = carol.received.length;
    assert.equal(await mamError(carol, { ids: [all[0].id, '999999'] }), 'item-not-found');
    assert.equal(await mamError(carol, { ids: ['not-a-seq'] }), 'item-not-found');
    assert.ok(!carol.received.slice(before).some((el) => el.getChild('result', NS_MAM)));
    const form = await carol.request(
      xml('iq', { type: 'get', to: `${ROOM}@${MUC}` }, xml('query', { xmlns: NS_MAM })),
    );
    const ids = form
      .getChild('query', NS_MAM)
      ?.getChild('x', 'jabber:x:data')
      ?.getChildren('field')
      .find((f) => f.attrs.var === 'ids');
    assert.equal(ids?.attrs.type, 'list-multi', form.toString());
    assert.ok(
      ids?.getChild('validate', 'http://jabber.org/protocol/xdata-validate')?.getChild('open'),
    );
    const info = await carol.request(
      xml(
        'iq',
        { type: 'get', to: `${ROOM}@${MUC}` },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }),
      ),
    );
    const features = info
      .getChild('query')!
      .getChildren('feature')
      .map((f) => f.attrs.var);
    assert.ok(
      features.includes(NS_MAM) && features.includes(`${NS_MAM}#extended`),
      info.toString(),
    );
    const md = await carol.request(
      xml('iq', { type: 'get', to: `${ROOM}@${MUC}` }, xml('metadata', { xmlns: NS_MAM })),
    );
    const m = md.getChild('metadata', NS_MAM);
    assert.equal(m?.getChild('start')?.attrs.id, all[0].id, md.toString());
    assert.equal(m?.getChild('end')?.attrs.id, all[299].id);
    assert.ok(!Number.isNaN(Date.parse(m?.getChild('end')?.attrs.timestamp ?? '')));
  });

  it('bad queries: an id not in the room → item-not-found, an unknown field → feature-not-implemented, a bad date → bad-request, after with before → bad-request', async () => {
    assert.equal(await mamError(carol, undefined, [xml('after', {}, '999999')]), 'item-not-found');
    assert.equal(await mamError(carol, { 'after-id': 'abc' }), 'item-not-found');
    assert.equal(await mamError(carol, { colour: 'red' }), 'feature-not-implemented');
    assert.equal(await mamError(carol, { start: 'yesterday' }), 'bad-request');
    assert.equal(
      await mamError(carol, undefined, [xml('after', {}, all[1].id), xml('before', {}, all[9].id)]),
      'bad-request',
    );
    assert.equal(
      await mamError(carol, undefined, [xml('index', {}, '3')]),
      'feature-not-implemented',
    );
  });

  it('a new room of an old name has an archive of its own: the count starts again, an old id is item-not-found', async () => {
    const room = `${ROOM}2`;
    await join(bob, room, 'bob');
    const old = await say(bob, room, 'old one');
    await say(bob, room, 'old two');
    await bob.send(xml('presence', { to: `${room}@${MUC}/bob`, type: 'unavailable' }));
    await bob.waitFor(fromOccupant(room, 'bob', 'unavailable'));
    await join(bob, room, 'bob'); // the temporary room went away with its last occupant: a new one
    const fresh = await say(bob, room, 'new one');
    const res = await bob.request(
      xml(
        'iq',
        { type: 'set', to: `${room}@${MUC}` },
        xml('query', { xmlns: NS_MAM, queryid: 'fresh' }),
      ),
    );
    assert.equal(res.getChild('fin', NS_MAM)!.getChild('set', NS_RSM)!.getChildText('count'), '1');
    const ids = bob.received
      .map((el) => el.getChild('result', NS_MAM))
      .filter((r) => r?.attrs.queryid === 'fresh')
      .map((r) => r!.attrs.id);
    assert.deepEqual(ids, [fresh.getChild('stanza-id', NS_SID)!.attrs.id]);
    const oldId = await bob.request(
      xml(
        'iq',
        { type: 'set', to: `${room}@${MUC}` },
        xml(
          'query',
          { xmlns: NS_MAM },
          submitForm(NS_MAM, { ids: [old.getChild('stanza-id', NS_SID)!.attrs.id] }),
        ),
      ),
    );
    assert.equal(errorCondition(oldId), 'item-not-found', oldId.toString());
  });

  it('members-only: a non-member reads nothing by any query; once a member, the whole archive [XEP-0045 7.2.6]', async () => {
    await alice.request(roomConfig(ROOM, { 'muc#roomconfig_membersonly': '1' }));
    const before = carol.received.length;
    assert.equal(await mamError(carol), 'forbidden');
    assert.equal(await mamError(carol, { with: `${ROOM}@${MUC}/bob` }), 'forbidden');
    assert.equal(await mamError(carol, undefined, [xml('before')]), 'forbidden');
    assert.equal(await mamError(carol, { ids: [all[0].id] }), 'forbidden');
    const md = await carol.request(
      xml('iq', { type: 'get', to: `${ROOM}@${MUC}` }, xml('metadata', { xmlns: NS_MAM })),
    );
    assert.equal(errorCondition(md), 'forbidden', md.toString());
    assert.ok(
      !carol.received.slice(before).some((el) => el.getChild('result', NS_MAM)),
      'no result leaked',
    );
    await alice.request(
      xml(
        'iq',
        { type: 'set', to: `${ROOM}@${MUC}` },
        xml(
          'query',
          { xmlns: NS_MUC_ADMIN },
          xml('item', { jid: `${names.c}@localhost`, affiliation: 'member' }),
        ),
      ),
    );
    const p = await mam(carol, { rsm: [max(0)] });
    assert.equal(p.count, 300);
    const named = await mam(carol, { form: { ids: [all[7].id] } });
    assert.deepEqual(named.bodies, [all[7].body]);
  });
});
