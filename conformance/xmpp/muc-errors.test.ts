// Malformed and forbidden groupchat requests: each gets its exact error
// (XEP-0045 sections cited per row), and the room goes on serving.
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
  NS_MUC,
  NS_MUC_ADMIN,
  NS_MUC_OWNER,
  errorCondition,
  fromOccupant,
  join,
  loginAll,
  say,
  roomConfig,
} from '../muc-helpers.ts';

const PW = 'err-pw';
const CONFIG = `
modules:
  rooms:
    maxRoomsPerUser: 3
    subjectMaxBytes: 16
`;

describe('XEP-0045 malformed and forbidden requests', function () {
  this.timeout(30_000);
  let node: TestNode;
  const names = {
    o: uniqueName('eo'),
    p: uniqueName('ep'),
    x: uniqueName('ex'),
    m: uniqueName('em'),
    a: uniqueName('ea'),
  };
  let owner: TestClient;
  let part: TestClient;
  let outsider: TestClient;
  let member: TestClient;
  let admin: TestClient;

  before(async function () {
    this.timeout(60_000);
    node = await startNode({ config: CONFIG });
    [owner, part, outsider, member, admin] = await loginAll(
      node,
      [names.o, names.p, names.x, names.m, names.a],
      PW,
      { resource: 'r' },
    );
    await join(owner, 'table', 'owner');
    await join(part, 'table', 'part');
    for (const [who, aff] of [
      [names.m, 'member'],
      [names.a, 'admin'],
    ]) {
      const res = await owner.request(adminSet({ jid: `${who}@localhost`, affiliation: aff }));
      assert.equal(res.attrs.type, 'result', res.toString());
    }
    await join(member, 'table', 'member');
    await join(admin, 'table', 'admin');
    // the member reserves a nick [XEP-0045 7.10]; the outsider was in a room it left
    const reg = await member.request(registerNick('reserved'));
    assert.equal(reg.attrs.type, 'result', reg.toString());
    await join(outsider, 'left', 'gone');
    await outsider.send(xml('presence', { to: `left@${MUC}/gone`, type: 'unavailable' }));
    await outsider.waitFor(fromOccupant('left', 'gone', 'unavailable'));
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  const room = `table@${MUC}`;
  const cfg = (fields: Record<string, string>) => roomConfig('table', fields);
  const adminSet = (attrs: Record<string, string>) =>
    xml('iq', { type: 'set', to: room }, xml('query', { xmlns: NS_MUC_ADMIN }, xml('item', attrs)));
  const registerNick = (nick: string) =>
    xml(
      'iq',
      { type: 'set', to: room },
      xml(
        'query',
        { xmlns: 'jabber:iq:register' },
        xml(
          'x',
          { xmlns: 'jabber:x:data', type: 'submit' },
          xml('field', { var: 'muc#register_roomnick' }, xml('value', {}, nick)),
        ),
      ),
    );

  type Row = { what: string; who: () => TestClient; stanza: () => Element; error: string };
  const rows: Row[] = [
    {
      what: 'config: max occupants not a number [XEP-0045 10.2]',
      who: () => owner,
      stanza: () => cfg({ 'muc#roomconfig_maxusers': 'lots' }),
      error: 'not-acceptable',
    },
    {
      what: 'config: whois neither moderators nor anyone [XEP-0045 10.2]',
      who: () => owner,
      stanza: () => cfg({ 'muc#roomconfig_whois': 'everyone' }),
      error: 'not-acceptable',
    },
    {
      what: 'config: boolean field "yes" [XEP-0004 3.3]',
      who: () => owner,
      stanza: () => cfg({ 'muc#roomconfig_persistentroom': 'yes' }),
      error: 'not-acceptable',
    },
    {
      what: 'config: history length past the service cap [XEP-0045 10.2]',
      who: () => owner,
      stanza: () => cfg({ 'muc#maxhistoryfetch': '100000' }),
      error: 'not-acceptable',
    },
    {
      what: 'config: a form of type "form" [XEP-0045 10.2]',
      who: () => owner,
      stanza: () =>
        xml(
          'iq',
          { type: 'set', to: room },
          xml('query', { xmlns: NS_MUC_OWNER }, xml('x', { xmlns: 'jabber:x:data', type: 'form' })),
        ),
      error: 'bad-request',
    },
    {
      what: 'config form asked by a participant [XEP-0045 10.2]',
      who: () => part,
      stanza: () => xml('iq', { type: 'get', to: room }, xml('query', { xmlns: NS_MUC_OWNER })),
      error: 'forbidden',
    },
    {
      what: 'kick by a participant [XEP-0045 8.2]',
      who: () => part,
      stanza: () => adminSet({ nick: 'owner', role: 'none' }),
      error: 'forbidden',
    },
    {
      what: 'affiliation change by a participant without affiliation [XEP-0045 9.1]',
      who: () => part,
      stanza: () => adminSet({ jid: `${names.x}@localhost`, affiliation: 'member' }),
      error: 'forbidden',
    },
    {
      what: 'affiliation change by a member [XEP-0045 9.1]',
      who: () => member,
      stanza: () => adminSet({ jid: `${names.x}@localhost`, affiliation: 'member' }),
      error: 'forbidden',
    },
    {
      what: 'ban by a member [XEP-0045 9.1]',
      who: () => member,
      stanza: () => adminSet({ jid: `${names.p}@localhost`, affiliation: 'outcast' }),
      error: 'forbidden',
    },
    {
      what: 'voice revoked by a participant [XEP-0045 8.4]',
      who: () => member,
      stanza: () => adminSet({ nick: 'part', role: 'visitor' }),
      error: 'forbidden',
    },
    {
      what: 'an admin makes someone an owner [XEP-0045 10.3]',
      who: () => admin,
      stanza: () => adminSet({ jid: `${names.x}@localhost`, affiliation: 'owner' }),
      error: 'not-allowed',
    },
    {
      what: 'an admin kicks an owner [XEP-0045 8.2]',
      who: () => admin,
      stanza: () => adminSet({ nick: 'owner', role: 'none' }),
      error: 'not-allowed',
    },
    {
      what: 'a member asks for the admin list [XEP-0045 9.5]',
      who: () => member,
      stanza: () =>
        xml(
          'iq',
          { type: 'get', to: room },
          xml('query', { xmlns: NS_MUC_ADMIN }, xml('item', { affiliation: 'admin' })),
        ),
      error: 'forbidden',
    },
    {
      what: 'config submitted by an admin (owners only) [XEP-0045 10.2]',
      who: () => admin,
      stanza: () => cfg({ 'muc#roomconfig_roomname': 'mine now' }),
      error: 'forbidden',
    },
    {
      what: 'destroy by an admin (owners only) [XEP-0045 10.9]',
      who: () => admin,
      stanza: () =>
        xml('iq', { type: 'set', to: room }, xml('query', { xmlns: NS_MUC_OWNER }, xml('destroy'))),
      error: 'forbidden',
    },
    {
      what: 'destroy naming a malformed alternate venue [XEP-0045 10.9]',
      who: () => owner,
      stanza: () =>
        xml(
          'iq',
          { type: 'set', to: room },
          xml('query', { xmlns: NS_MUC_OWNER }, xml('destroy', { jid: '@@bad' })),
        ),
      error: 'jid-malformed',
    },
    {
      what: 'affiliation change for a malformed JID [XEP-0045 9.1]',
      who: () => owner,
      stanza: () => adminSet({ jid: 'a@b@c', affiliation: 'member' }),
      error: 'jid-malformed',
    },
    {
      what: 'admin item with neither role nor affiliation [XEP-0045 8, 9]',
      who: () => owner,
      stanza: () => adminSet({ nick: 'part' }),
      error: 'bad-request',
    },
    {
      what: 'config: negative max occupants [XEP-0045 10.2]',
      who: () => owner,
      stanza: () => cfg({ 'muc#roomconfig_maxusers': '-5' }),
      error: 'not-acceptable',
    },
    {
      what: 'config: room name past nameMaxBytes (1024) [XEP-0045 10.2]',
      who: () => owner,
      stanza: () => cfg({ 'muc#roomconfig_roomname': 'n'.repeat(1025) }),
      error: 'not-acceptable',
    },
    {
      what: 'config: wrong FORM_TYPE [XEP-0045 10.2]',
      who: () => owner,
      stanza: () =>
        xml(
          'iq',
          { type: 'set', to: room },
          xml(
            'query',
            { xmlns: NS_MUC_OWNER },
            xml(
              'x',
              { xmlns: 'jabber:x:data', type: 'submit' },
              xml('field', { var: 'FORM_TYPE' }, xml('value', {}, 'urn:example:other')),
            ),
          ),
        ),
      error: 'not-acceptable',
    },
    {
      what: 'nick registration with a nick another member reserved [XEP-0045 7.10]',
      who: () => part,
      stanza: () => registerNick('reserved'),
      error: 'conflict',
    },
    {
      what: 'kick of an occupant that is not there [XEP-0045 8.2]',
      who: () => owner,
      stanza: () => adminSet({ nick: 'nobody', role: 'none' }),
      error: 'item-not-found',
    },
    {
      what: 'unknown role [XEP-0045 8.2]',
      who: () => owner,
      stanza: () => adminSet({ nick: 'part', role: 'emperor' }),
      error: 'bad-request',
    },
    {
      what: 'the last owner gives up ownership [XEP-0045 10.9]',
      who: () => owner,
      stanza: () => adminSet({ jid: `${names.o}@localhost`, affiliation: 'admin' }),
      error: 'conflict',
    },
    {
      what: 'MAM page after an id that is not a room seq [XEP-0313 6.1.2]',
      who: () => part,
      stanza: () =>
        xml(
          'iq',
          { type: 'set', to: room },
          xml(
            'query',
            { xmlns: NS_MAM },
            xml('set', { xmlns: 'http://jabber.org/protocol/rsm' }, xml('after', {}, 'abc')),
          ),
        ),
      error: 'item-not-found',
    },
    {
      what: 'self-ping from a device not in the room [XEP-0410 3]',
      who: () => outsider,
      stanza: () =>
        xml('iq', { type: 'get', to: `${room}/part` }, xml('ping', { xmlns: 'urn:xmpp:ping' })),
      error: 'not-acceptable',
    },
    {
      what: 'unknown IQ to a room [RFC6120 8.4]',
      who: () => part,
      stanza: () =>
        xml('iq', { type: 'get', to: room }, xml('query', { xmlns: 'urn:example:nothing' })),
      error: 'service-unavailable',
    },
    {
      what: 'IQ to a room that does not exist [XEP-0045 6.4]',
      who: () => part,
      stanza: () =>
        xml(
          'iq',
          { type: 'get', to: `nowhere@${MUC}` },
          xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }),
        ),
      error: 'item-not-found',
    },
  ];
  for (const r of rows) {
    it(`${r.what} → ${r.error}`, async () => {
      const reply = await r.who().request(r.stanza());
      assert.equal(reply.attrs.type, 'error', reply.toString());
      assert.equal(errorCondition(reply), r.error, reply.toString());
    });
  }

  const messageRows: {
    what: string;
    who: () => TestClient;
    stanza: () => Element;
    error: string;
  }[] = [
    {
      what: 'groupchat to a room not joined [XEP-0045 7.4]',
      who: () => outsider,
      stanza: () => xml('message', { to: room, type: 'groupchat' }, xml('body', {}, 'hi')),
      error: 'not-acceptable',
    },
    {
      what: 'groupchat to an occupant address [XEP-0045 7.5]',
      who: () => part,
      stanza: () =>
        xml('message', { to: `${room}/owner`, type: 'groupchat' }, xml('body', {}, 'hi')),
      error: 'bad-request',
    },
    {
      what: 'private message to a nick that is not there [XEP-0045 7.5]',
      who: () => part,
      stanza: () => xml('message', { to: `${room}/ghost`, type: 'chat' }, xml('body', {}, 'hi')),
      error: 'item-not-found',
    },
    {
      what: 'message to a room that does not exist',
      who: () => part,
      stanza: () =>
        xml('message', { to: `nowhere@${MUC}`, type: 'groupchat' }, xml('body', {}, 'hi')),
      error: 'item-not-found',
    },
    {
      what: 'subject change by a participant [XEP-0045 8.1]',
      who: () => part,
      stanza: () => xml('message', { to: room, type: 'groupchat' }, xml('subject', {}, 'mine')),
      error: 'forbidden',
    },
    {
      what: 'subject longer than subjectMaxBytes (16)',
      who: () => owner,
      stanza: () =>
        xml('message', { to: room, type: 'groupchat' }, xml('subject', {}, 'x'.repeat(17))),
      error: 'not-acceptable',
    },
    {
      what: 'groupchat to a temporary room gone with its last occupant',
      who: () => outsider,
      stanza: () => xml('message', { to: `left@${MUC}`, type: 'groupchat' }, xml('body', {}, 'hi')),
      error: 'item-not-found',
    },
    {
      what: 'invite to a malformed JID [XEP-0045 7.8.2]',
      who: () => owner,
      stanza: () =>
        xml(
          'message',
          { to: room },
          xml(
            'x',
            { xmlns: 'http://jabber.org/protocol/muc#user' },
            xml('invite', { to: 'a@b@c' }),
          ),
        ),
      error: 'jid-malformed',
    },
    {
      what: 'a normal message to the room that is neither invite, decline nor voice request',
      who: () => part,
      stanza: () => xml('message', { to: room, type: 'normal' }, xml('body', {}, 'hi')),
      error: 'bad-request',
    },
    {
      what: 'invite by a participant where invites are off [XEP-0045 7.8.2]',
      who: () => part,
      stanza: () =>
        xml(
          'message',
          { to: room },
          xml(
            'x',
            { xmlns: 'http://jabber.org/protocol/muc#user' },
            xml('invite', { to: `${names.x}@localhost` }),
          ),
        ),
      error: 'forbidden',
    },
  ];
  for (const r of messageRows) {
    it(`${r.what} → ${r.error}`, async () => {
      const c = r.who();
      const id = `m-${Math.random().toString(36).slice(2)}`;
      const el = r.stanza();
      el.attrs.id = id;
      await c.send(el);
      const reply = await c.waitFor(
        (e) => e.name === 'message' && e.attrs.type === 'error' && e.attrs.id === id,
        5000,
        'error reply',
      );
      assert.equal(errorCondition(reply), r.error, reply.toString());
    });
  }

  const presenceRows: {
    what: string;
    to: () => string;
    children?: () => Element[];
    error: string;
  }[] = [
    {
      what: 'join with a nick of 1,100 characters (over 1023 bytes) [RFC7622 3.4]',
      to: () => `${room}/${'n'.repeat(1100)}`,
      error: 'jid-malformed',
    },
    {
      what: 'join with a nick of 1,000 two-byte characters (2,000 bytes) [RFC7622 3.4]',
      to: () => `${room}/${'é'.repeat(1000)}`,
      error: 'jid-malformed',
    },
    {
      what: 'join with a nick of spaces only [XEP-0045 7.2.1]',
      to: () => `${room}/   `,
      error: 'jid-malformed',
    },
    {
      what: 'join with a nick another member reserved [XEP-0045 7.2.8]',
      to: () => `${room}/reserved`,
      error: 'conflict',
    },
    { what: 'join without a nick [XEP-0045 7.2.1]', to: () => room, error: 'jid-malformed' },
    {
      what: 'join with a nick already taken [XEP-0045 7.2.8]',
      to: () => `${room}/owner`,
      error: 'conflict',
    },
  ];
  for (const r of presenceRows) {
    it(`${r.what} → ${r.error}`, async () => {
      const id = `p-${Math.random().toString(36).slice(2)}`;
      await outsider.send(xml('presence', { to: r.to(), id }, xml('x', { xmlns: NS_MUC })));
      const reply = await outsider.waitFor(
        (e) => e.name === 'presence' && e.attrs.type === 'error' && e.attrs.id === id,
        5000,
        'error presence',
      );
      assert.equal(errorCondition(reply), r.error, reply.toString());
    });
  }

  it('a nick of 1,000 characters (within 1023 bytes) is accepted [RFC7622 3.4]', async () => {
    await join(outsider, 'longnick', 'n'.repeat(1000));
  });

  it('more rooms than maxRoomsPerUser (3) → resource-constraint', async () => {
    // owner has created 'table'; longnick was outsider's
    await join(owner, 'second', 'owner');
    await join(owner, 'third', 'owner');
    const id = 'too-many';
    await owner.send(
      xml('presence', { to: `fourth@${MUC}/owner`, id }, xml('x', { xmlns: NS_MUC })),
    );
    const reply = await owner.waitFor(
      (e) => e.name === 'presence' && e.attrs.type === 'error' && e.attrs.id === id,
    );
    assert.equal(errorCondition(reply), 'resource-constraint');
  });

  it('after all that, the room still serves its occupants', async () => {
    await say(owner, 'table', 'still here');
    await part.waitFor((e) => e.name === 'message' && e.getChildText('body') === 'still here');
  });
});
