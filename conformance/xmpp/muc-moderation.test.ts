// Black-box XEP-0045 moderation, MUC MAM and persistence with @xmpp/client:
// kick, ban, affiliation lists and their notifications, destroy, an offline
// member catching up through MAM on the room, a persistent room across a restart.
import assert from 'node:assert/strict';
import {
  closeAllRaw,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import {
  MUC,
  NS_DISCO_ITEMS,
  NS_MAM,
  NS_MUC_ADMIN,
  NS_MUC_OWNER,
  NS_MUC_USER,
  NS_RSM,
  NS_SID,
  codes,
  errorCondition,
  fromOccupant,
  join,
  loginAll,
  joinError,
  mucItem,
  say,
  roomConfig,
} from '../muc-helpers.ts';

const PW = 'mod-pw';

const admin = (to: string, ...items: ReturnType<typeof xml>[]) =>
  xml('iq', { type: 'set', to: `${to}@${MUC}` }, xml('query', { xmlns: NS_MUC_ADMIN }, ...items));

describe('XEP-0045 moderation, MUC MAM, persistence', function () {
  this.timeout(30_000);
  let node: TestNode;
  const names = { a: uniqueName('oa'), b: uniqueName('ob'), c: uniqueName('oc') };
  let a: TestClient;
  let b: TestClient;
  let c: TestClient;
  const login = (n: string, resource = 'pc') =>
    xmppClient({ port: node.ports.xmpp, username: n, password: PW, resource });

  before(async function () {
    this.timeout(60_000);
    node = await startNode();
    [a, b, c] = await loginAll(node, [names.a, names.b, names.c], PW, { presence: true });
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  it('a participant may not kick (forbidden); a member may not change affiliations (forbidden) [XEP-0045 8.2, 9.1]', async () => {
    await join(a, 'rules', 'alice');
    await join(b, 'rules', 'bob');
    const kick = await b.request(admin('rules', xml('item', { nick: 'alice', role: 'none' })));
    assert.equal(errorCondition(kick), 'forbidden');
    assert.equal(
      (await a.request(admin('rules', xml('item', { jid: b.bare, affiliation: 'member' })))).attrs
        .type,
      'result',
    );
    const aff = await b.request(
      admin('rules', xml('item', { jid: c.bare, affiliation: 'member' })),
    );
    assert.equal(errorCondition(aff), 'forbidden');
    const list = await b.request(
      xml(
        'iq',
        { type: 'get', to: `rules@${MUC}` },
        xml('query', { xmlns: NS_MUC_ADMIN }, xml('item', { affiliation: 'member' })),
      ),
    );
    assert.equal(errorCondition(list), 'forbidden');
    const members = await a.request(
      xml(
        'iq',
        { type: 'get', to: `rules@${MUC}` },
        xml('query', { xmlns: NS_MUC_ADMIN }, xml('item', { affiliation: 'member' })),
      ),
    );
    assert.deepEqual(
      members
        .getChild('query')!
        .getChildren('item')
        .map((i) => i.attrs.jid),
      [b.bare],
    );
  });

  it('kick by a moderator: 307 with actor and reason to everyone, the kicked one gets 110 [XEP-0045 8.2]', async () => {
    await join(a, 'kick', 'alice');
    await join(b, 'kick', 'bob');
    const r = await a.request(
      admin('kick', xml('item', { nick: 'bob', role: 'none' }, xml('reason', {}, 'spam'))),
    );
    assert.equal(r.attrs.type, 'result', r.toString());
    const mine = await b.waitFor(fromOccupant('kick', 'bob', 'unavailable'));
    assert.deepEqual(codes(mine), [110, 307]);
    const seen = await a.waitFor(fromOccupant('kick', 'bob', 'unavailable'));
    assert.deepEqual(codes(seen), [307]);
    assert.equal(seen.getChild('x', NS_MUC_USER)!.getChild('item')!.getChildText('reason'), 'spam');
    assert.equal(
      seen.getChild('x', NS_MUC_USER)!.getChild('item')!.getChild('actor')?.attrs.nick,
      'alice',
    );
    // a moderator may not kick the owner
    await join(c, 'kick', 'carol');
  });

  it('ban: 301 out of the room, then the join is forbidden; the outcast list shows it [XEP-0045 9.1, 7.2.7]', async () => {
    await join(a, 'ban', 'alice');
    await join(b, 'ban', 'bob');
    await a.request(
      admin('ban', xml('item', { jid: b.bare, affiliation: 'outcast' }, xml('reason', {}, 'bye'))),
    );
    const out = await b.waitFor(fromOccupant('ban', 'bob', 'unavailable'));
    assert.deepEqual(codes(out), [110, 301]);
    assert.equal(mucItem(out).affiliation, 'outcast');
    assert.equal(await joinError(b, 'ban', 'bob'), 'forbidden');
    const list = await a.request(
      xml(
        'iq',
        { type: 'get', to: `ban@${MUC}` },
        xml('query', { xmlns: NS_MUC_ADMIN }, xml('item', { affiliation: 'outcast' })),
      ),
    );
    assert.equal(list.getChild('query')!.getChild('item')!.attrs.jid, b.bare);
  });

  it('an affiliation change reaches an absent user as a message (kept offline) [XEP-0045 9.3]', async () => {
    await join(a, 'notify', 'alice');
    await c.stop();
    await a.request(
      admin('notify', xml('item', { jid: `${names.c}@localhost`, affiliation: 'member' })),
    );
    c = await login(names.c);
    await c.send(xml('presence'));
    const m = await c.waitFor(
      (el) =>
        el.name === 'message' &&
        el.attrs.from === `notify@${MUC}` &&
        !!el.getChild('x', NS_MUC_USER)?.getChild('item'),
    );
    assert.equal(m.getChild('x', NS_MUC_USER)!.getChild('item')!.attrs.affiliation, 'member');
  });

  it('destroy with reason and alternate venue: every occupant leaves with <destroy/>; the room is gone [XEP-0045 10.9]', async () => {
    await join(a, 'doomed', 'alice');
    await join(b, 'doomed', 'bob');
    const notOwner = await b.request(
      xml(
        'iq',
        { type: 'set', to: `doomed@${MUC}` },
        xml('query', { xmlns: NS_MUC_OWNER }, xml('destroy', {})),
      ),
    );
    assert.equal(errorCondition(notOwner), 'forbidden');
    const r = await a.request(
      xml(
        'iq',
        { type: 'set', to: `doomed@${MUC}` },
        xml(
          'query',
          { xmlns: NS_MUC_OWNER },
          xml('destroy', { jid: `elsewhere@${MUC}` }, xml('reason', {}, 'moving')),
        ),
      ),
    );
    assert.equal(r.attrs.type, 'result');
    const out = await b.waitFor(fromOccupant('doomed', 'bob', 'unavailable'));
    const d = out.getChild('x', NS_MUC_USER)!.getChild('destroy')!;
    assert.equal(d.attrs.jid, `elsewhere@${MUC}`);
    assert.equal(d.getChildText('reason'), 'moving');
    const items = await c.request(
      xml('iq', { type: 'get', to: MUC }, xml('query', { xmlns: NS_DISCO_ITEMS })),
    );
    assert.ok(
      !items
        .getChild('query')!
        .getChildren('item')
        .some((i) => i.attrs.jid === `doomed@${MUC}`),
    );
  });

  it('an offline member catches up through MAM on the room: ids are the stanza-ids, RSM pages forward [XEP-0313, XEP-0059]', async () => {
    await join(a, 'catchup', 'alice');
    await join(b, 'catchup', 'bob');
    const seen = await say(b, 'catchup', 'before leaving');
    const lastSeen = seen.getChild('stanza-id', NS_SID)!.attrs.id;
    await b.send(xml('presence', { to: `catchup@${MUC}/bob`, type: 'unavailable' }));
    await b.waitFor(fromOccupant('catchup', 'bob', 'unavailable'));
    const ids: string[] = [];
    for (let i = 1; i <= 7; i++)
      ids.push((await say(a, 'catchup', `missed ${i}`)).getChild('stanza-id', NS_SID)!.attrs.id);
    const got: { id: string; body: string }[] = [];
    let after = lastSeen;
    for (;;) {
      const q = xml(
        'query',
        { xmlns: NS_MAM, queryid: 'q1' },
        xml('set', { xmlns: NS_RSM }, xml('max', {}, '3'), xml('after', {}, after)),
      );
      const fin = b.request(xml('iq', { type: 'set', to: `catchup@${MUC}` }, q));
      const res = await fin;
      assert.equal(res.attrs.type, 'result', res.toString());
      const results = b.received.filter(
        (el) =>
          el.name === 'message' &&
          el.getChild('result', NS_MAM)?.attrs.queryid === 'q1' &&
          !got.some((g) => g.id === el.getChild('result', NS_MAM)!.attrs.id),
      );
      for (const el of results) {
        const r = el.getChild('result', NS_MAM)!;
        const inner = r.getChild('forwarded', 'urn:xmpp:forward:0')!.getChild('message')!;
        got.push({ id: r.attrs.id, body: inner.getChildText('body')! });
        assert.equal(inner.getChild('stanza-id', NS_SID)?.attrs.id, r.attrs.id);
      }
      const finEl = res.getChild('fin', NS_MAM)!;
      if (finEl.attrs.complete === 'true') break;
      after = finEl.getChild('set', NS_RSM)!.getChildText('last')!;
    }
    assert.deepEqual(
      got.map((g) => g.id),
      ids,
    );
    assert.deepEqual(
      got.map((g) => g.body),
      ids.map((_, i) => `missed ${i + 1}`),
    );
  });

  it('a members-only room cannot be read by a non-member: join, MAM, occupant list all refused [XEP-0045 7.2.6, XEP-0313]', async () => {
    await join(a, 'closed', 'alice');
    await say(a, 'closed', 'secret');
    await a.request(roomConfig('closed', { 'muc#roomconfig_membersonly': '1' }));
    assert.equal(await joinError(c, 'closed', 'carol'), 'registration-required');
    const mam = await c.request(
      xml('iq', { type: 'set', to: `closed@${MUC}` }, xml('query', { xmlns: NS_MAM })),
    );
    assert.equal(errorCondition(mam), 'forbidden');
    assert.ok(!c.received.some((el) => el.getChild('result', NS_MAM)), 'no MAM result leaked');
    const items = await c.request(
      xml('iq', { type: 'get', to: `closed@${MUC}` }, xml('query', { xmlns: NS_DISCO_ITEMS })),
    );
    assert.equal(errorCondition(items), 'forbidden');
  });

  it('a persistent room keeps config, affiliations, subject and history across a restart', async () => {
    await join(a, 'lasting', 'alice');
    await a.request(
      roomConfig('lasting', {
        'muc#roomconfig_persistentroom': '1',
        'muc#roomconfig_roomname': 'Lasting',
      }),
    );
    await a.request(admin('lasting', xml('item', { jid: b.bare, affiliation: 'admin' })));
    await a.send(
      xml(
        'message',
        { to: `lasting@${MUC}`, type: 'groupchat' },
        xml('subject', {}, 'kept subject'),
      ),
    );
    await say(a, 'lasting', 'kept message');
    await stopAllClients();
    await node.restart();
    b = await login(names.b);
    const self = await join(b, 'lasting', 'bob', { history: { maxstanzas: '5' } });
    assert.equal(mucItem(self).affiliation, 'admin');
    assert.ok(
      b.received.some((el) => el.name === 'message' && el.getChildText('body') === 'kept message'),
      'history kept',
    );
    assert.ok(
      b.received.some(
        (el) => el.name === 'message' && el.getChildText('subject') === 'kept subject',
      ),
      'subject kept',
    );
    assert.ok(!codes(self).includes(201), 'not created again');
  });
});
