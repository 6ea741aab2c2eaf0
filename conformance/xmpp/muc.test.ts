// Black-box XEP-0045 lifecycle with @xmpp/client: instant rooms, config form,
// join/leave status codes, nicks, passwords, members-only, history, PMs,
// invites, multi-session nicks, self-ping, discovery.
import assert from 'node:assert/strict';
import {
  ping,
  startNode,
  stopAllClients,
  closeAllRaw,
  uniqueName,
  xml,
  xmppClient,
  DOMAIN,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import {
  MUC,
  NS_DATA,
  NS_DISCO_INFO,
  NS_DISCO_ITEMS,
  NS_MUC,
  NS_MUC_OWNER,
  NS_MUC_USER,
  NS_SID,
  codes,
  errorCondition,
  fromOccupant,
  isGroupchat,
  join,
  loginAll,
  joinError,
  mucItem,
  say,
  roomConfig,
} from '../muc-helpers.ts';

const PW = 'muc-pw';

describe('XEP-0045 groupchat lifecycle', function () {
  this.timeout(30_000);
  let node: TestNode;
  const names = { a: uniqueName('ma'), b: uniqueName('mb'), c: uniqueName('mc') };
  let a: TestClient;
  let b: TestClient;
  let c: TestClient;

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

  it('the server lists the service; the service is a conference service [XEP-0045 6.1, 6.2]', async () => {
    const items = await a.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: NS_DISCO_ITEMS })),
    );
    assert.ok(
      items
        .getChild('query')!
        .getChildren('item')
        .some((i) => i.attrs.jid === MUC),
      items.toString(),
    );
    const info = await a.request(
      xml('iq', { type: 'get', to: MUC }, xml('query', { xmlns: NS_DISCO_INFO })),
    );
    const q = info.getChild('query', NS_DISCO_INFO)!;
    assert.equal(q.getChild('identity')?.attrs.category, 'conference');
    assert.ok(q.getChildren('feature').some((f) => f.attrs.var === NS_MUC));
  });

  it('a join to a new room creates an instant room usable at once: 110 + 201, owner, then talk [XEP-0045 10.1.1]', async () => {
    const self = await join(a, 'instant', 'alice');
    assert.deepEqual(codes(self), [110, 170, 201]);
    assert.equal(mucItem(self).affiliation, 'owner');
    assert.equal(mucItem(self).role, 'moderator');
    const echo = await say(a, 'instant', 'first words');
    const sid = echo.getChild('stanza-id', NS_SID);
    assert.equal(sid?.attrs.by, `instant@${MUC}`);
    assert.match(sid!.attrs.id, /^\d+$/);
    assert.equal(echo.attrs.from, `instant@${MUC}/alice`);
  });

  it('a second occupant gets the others first, then itself (110); the others see it join; leave → unavailable 110 [XEP-0045 7.2.3, 7.14]', async () => {
    await join(a, 'lobby', 'alice');
    await b.send(xml('presence', { to: `lobby@${MUC}/bob` }, xml('x', { xmlns: NS_MUC })));
    const first = await b.waitFor(
      (el) => el.name === 'presence' && el.attrs.from?.startsWith(`lobby@${MUC}/`),
    );
    assert.equal(first.attrs.from, `lobby@${MUC}/alice`, 'the existing occupant comes first');
    const self = await b.waitFor(fromOccupant('lobby', 'bob'));
    assert.deepEqual(codes(self), [110, 170]);
    const seen = await a.waitFor(fromOccupant('lobby', 'bob'));
    assert.deepEqual(codes(seen), []);
    assert.equal(mucItem(seen).jid, `${b.jid}`, 'moderators see real addresses');
    await b.send(xml('presence', { to: `lobby@${MUC}/bob`, type: 'unavailable' }));
    const gone = await b.waitFor(fromOccupant('lobby', 'bob', 'unavailable'));
    assert.deepEqual(codes(gone), [110]);
    await a.waitFor(fromOccupant('lobby', 'bob', 'unavailable'));
  });

  it('nick conflict → conflict; nick change → 303 with the new nick, then available under it [XEP-0045 7.2.8, 7.6]', async () => {
    await join(a, 'nicks', 'alice');
    assert.equal(await joinError(b, 'nicks', 'alice'), 'conflict');
    await join(b, 'nicks', 'bob');
    a.drain();
    await b.send(xml('presence', { to: `nicks@${MUC}/robert` }));
    const out = await a.waitFor(fromOccupant('nicks', 'bob', 'unavailable'));
    assert.deepEqual(codes(out), [303]);
    assert.equal(mucItem(out).nick, 'robert');
    await a.waitFor(fromOccupant('nicks', 'robert'));
    const mine = await b.waitFor(fromOccupant('nicks', 'bob', 'unavailable'));
    assert.deepEqual(codes(mine), [110, 303]);
  });

  it('the creator asks for the config form and submits it: password and members-only are enforced [XEP-0045 10.1.3, 7.2.5, 7.2.6]', async () => {
    await join(a, 'configured', 'alice');
    const form = await a.request(
      xml('iq', { type: 'get', to: `configured@${MUC}` }, xml('query', { xmlns: NS_MUC_OWNER })),
    );
    const x = form.getChild('query', NS_MUC_OWNER)!.getChild('x', NS_DATA)!;
    const vars = x.getChildren('field').map((f) => f.attrs.var);
    for (const v of [
      'muc#roomconfig_roomname',
      'muc#roomconfig_roomdesc',
      'muc#roomconfig_persistentroom',
      'muc#roomconfig_publicroom',
      'muc#roomconfig_membersonly',
      'muc#roomconfig_moderatedroom',
      'muc#roomconfig_roomsecret',
      'muc#roomconfig_maxusers',
      'muc#roomconfig_whois',
      'muc#roomconfig_allowinvites',
      'muc#roomconfig_allowpm',
      'muc#roomconfig_changesubject',
      'muc#maxhistoryfetch',
      'muc#roomconfig_enablelogging',
    ]) {
      assert.ok(vars.includes(v), `form lacks ${v}`);
    }
    assert.equal(
      x
        .getChildren('field')
        .find((f) => f.attrs.var === 'muc#roomconfig_maxusers')
        ?.getChildText('value'),
      'none',
      'unlimited by default',
    );
    const set = await a.request(
      roomConfig('configured', {
        'muc#roomconfig_passwordprotectedroom': '1',
        'muc#roomconfig_roomsecret': 'sesame',
        'muc#roomconfig_roomdesc': 'the remark',
      }),
    );
    assert.equal(set.attrs.type, 'result', set.toString());
    const cfg = await a.waitFor(
      (el) =>
        el.name === 'message' && el.attrs.from === `configured@${MUC}` && codes(el).includes(104),
    );
    assert.ok(cfg);
    assert.equal(await joinError(b, 'configured', 'bob'), 'not-authorized');
    await join(b, 'configured', 'bob', { password: 'sesame' });
    const info = await c.request(
      xml('iq', { type: 'get', to: `configured@${MUC}` }, xml('query', { xmlns: NS_DISCO_INFO })),
    );
    const feats = info
      .getChild('query')!
      .getChildren('feature')
      .map((f) => f.attrs.var);
    assert.ok(feats.includes('muc_passwordprotected'));
    const roominfo = info.getChild('query')!.getChild('x', NS_DATA)!;
    assert.equal(
      roominfo
        .getChildren('field')
        .find((f) => f.attrs.var === 'muc#roominfo_description')
        ?.getChildText('value'),
      'the remark',
    );
    // members-only: bob (not a member) is taken out with 322; carol cannot enter
    await a.request(roomConfig('configured', { 'muc#roomconfig_membersonly': '1' }));
    const out = await b.waitFor(fromOccupant('configured', 'bob', 'unavailable'));
    assert.deepEqual(codes(out), [110, 322]);
    assert.equal(
      await joinError(c, 'configured', 'carol', [xml('password', {}, 'sesame')]),
      'registration-required',
    );
  });

  it('history on join: the last messages with delay stamps and stanza-ids, maxstanzas honoured, subject last [XEP-0045 7.2.14, 7.2.15]', async () => {
    await join(a, 'hist', 'alice');
    for (let i = 1; i <= 5; i++) await say(a, 'hist', `h${i}`);
    await b.send(
      xml(
        'presence',
        { to: `hist@${MUC}/bob` },
        xml('x', { xmlns: NS_MUC }, xml('history', { maxstanzas: '3' })),
      ),
    );
    const got: string[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await b.waitFor(isGroupchat('hist'));
      assert.ok(m.getChild('delay', 'urn:xmpp:delay'), 'history is delayed');
      assert.ok(m.getChild('stanza-id', NS_SID));
      got.push(m.getChildText('body')!);
    }
    assert.deepEqual(got, ['h3', 'h4', 'h5']);
    const subj = await b.waitFor(
      (el) => el.name === 'message' && el.getChild('subject') !== undefined,
    );
    assert.equal(subj.getChildText('body'), null);
  });

  it('a subject change by a participant is refused (forbidden) and by the moderator broadcast [XEP-0045 8.1]', async () => {
    await join(a, 'subj', 'alice');
    await join(b, 'subj', 'bob');
    await b.send(
      xml('message', { to: `subj@${MUC}`, type: 'groupchat' }, xml('subject', {}, 'by bob')),
    );
    const err = await b.waitFor((el) => el.name === 'message' && el.attrs.type === 'error');
    assert.equal(errorCondition(err), 'forbidden');
    await a.send(
      xml('message', { to: `subj@${MUC}`, type: 'groupchat' }, xml('subject', {}, 'announcement')),
    );
    const s = await b.waitFor(
      (el) => el.name === 'message' && el.getChildText('subject') === 'announcement',
    );
    assert.equal(s.attrs.from, `subj@${MUC}/alice`);
  });

  it('private messages between occupants; a message to a room not joined → not-acceptable [XEP-0045 7.5, 7.4]', async () => {
    await join(a, 'pm', 'alice');
    await join(b, 'pm', 'bob');
    await a.send(xml('message', { to: `pm@${MUC}/bob`, type: 'chat' }, xml('body', {}, 'psst')));
    const pm = await b.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'psst');
    assert.equal(pm.attrs.from, `pm@${MUC}/alice`);
    assert.ok(pm.getChild('x', NS_MUC_USER));
    await c.send(
      xml('message', { to: `pm@${MUC}`, type: 'groupchat' }, xml('body', {}, 'intruder')),
    );
    const err = await c.waitFor((el) => el.name === 'message' && el.attrs.type === 'error');
    assert.equal(errorCondition(err), 'not-acceptable');
  });

  it('mediated invite reaches the invitee from the room; its decline reaches the inviter [XEP-0045 7.8.2]; a direct invite passes [XEP-0249]', async () => {
    await join(a, 'inv', 'alice');
    await a.send(
      xml(
        'message',
        { to: `inv@${MUC}` },
        xml('x', { xmlns: NS_MUC_USER }, xml('invite', { to: c.bare }, xml('reason', {}, 'come'))),
      ),
    );
    const inv = await c.waitFor(
      (el) =>
        el.name === 'message' &&
        el.attrs.from === `inv@${MUC}` &&
        !!el.getChild('x', NS_MUC_USER)?.getChild('invite'),
    );
    assert.equal(inv.getChild('x', NS_MUC_USER)!.getChild('invite')!.attrs.from, a.bare);
    await c.send(
      xml(
        'message',
        { to: `inv@${MUC}` },
        xml('x', { xmlns: NS_MUC_USER }, xml('decline', { to: a.bare }, xml('reason', {}, 'busy'))),
      ),
    );
    const dec = await a.waitFor(
      (el) => el.name === 'message' && !!el.getChild('x', NS_MUC_USER)?.getChild('decline'),
    );
    assert.equal(dec.getChild('x', NS_MUC_USER)!.getChild('decline')!.attrs.from, c.bare);
    await a.send(
      xml('message', { to: b.bare }, xml('x', { xmlns: 'jabber:x:conference', jid: `inv@${MUC}` })),
    );
    const direct = await b.waitFor(
      (el) => el.name === 'message' && !!el.getChild('x', 'jabber:x:conference'),
    );
    assert.equal(direct.getChild('x', 'jabber:x:conference')!.attrs.jid, `inv@${MUC}`);
  });

  it('one user on two devices shares one nick: both get messages, the others see one occupant; self-ping answers per device [XEP-0410]', async () => {
    const a2 = await xmppClient({
      port: node.ports.xmpp,
      username: names.a,
      password: PW,
      resource: 'phone',
    });
    await join(a, 'multi', 'alice');
    await join(b, 'multi', 'bob');
    b.drain();
    await join(a2, 'multi', 'alice');
    await b.expectNone(fromOccupant('multi', 'alice'), 300, 'a second presence for the same nick');
    await say(b, 'multi', 'to both');
    await a.waitFor(isGroupchat('multi', 'to both'));
    await a2.waitFor(isGroupchat('multi', 'to both'));
    const pong = await a2.request(
      xml('iq', { type: 'get', to: `multi@${MUC}/alice` }, xml('ping', { xmlns: 'urn:xmpp:ping' })),
    );
    assert.equal(pong.attrs.type, 'result');
    const notIn = await c.request(
      xml('iq', { type: 'get', to: `multi@${MUC}/alice` }, xml('ping', { xmlns: 'urn:xmpp:ping' })),
    );
    assert.equal(errorCondition(notIn), 'not-acceptable');
    // one device leaves: bob sees nothing; the nick stays
    await a2.send(xml('presence', { to: `multi@${MUC}/alice`, type: 'unavailable' }));
    await a2.waitFor(fromOccupant('multi', 'alice', 'unavailable'));
    await b.expectNone(fromOccupant('multi', 'alice', 'unavailable'), 300);
    await a2.stop();
  });

  it('public rooms are listed in the service items; a hidden room is not [XEP-0045 6.3]', async () => {
    await join(a, 'hidden', 'alice');
    await a.request(roomConfig('hidden', { 'muc#roomconfig_publicroom': '0' }));
    const items = await c.request(
      xml('iq', { type: 'get', to: MUC }, xml('query', { xmlns: NS_DISCO_ITEMS })),
    );
    const jids = items
      .getChild('query')!
      .getChildren('item')
      .map((i) => i.attrs.jid);
    assert.ok(jids.includes(`lobby@${MUC}`), jids.join());
    assert.ok(!jids.includes(`hidden@${MUC}`));
    await ping(c);
  });
});
