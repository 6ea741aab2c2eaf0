// Presence broadcast per role [XEP-0045 15.5.3, muc#roomconfig_presencebroadcast], as Prosody's mod_muc
// applies it (docs/groupchat.md, "Presence broadcast"): an occupant whose role is not listed is seen by
// itself only; messages reach everyone. Ordering is the room's: a groupchat message sent after an event
// reaches each device after that event's presence, so "not seen" is checked up to such a barrier.
import assert from 'node:assert/strict';
import {
  closeAllRaw,
  rawLogin,
  startNode,
  stopAllClients,
  xml,
  xmppClient,
  type Element,
  type RawConn,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import {
  MUC,
  NS_MUC,
  NS_MUC_ADMIN,
  NS_MUC_OWNER,
  codes,
  errorCondition,
  fromOccupant,
  isGroupchat,
  join,
  mucItem,
  roomConfig,
  say,
} from '../muc-helpers.ts';

const PW = 'pb-pw';
const BROADCAST = 'muc#roomconfig_presencebroadcast';

/** The values (and options) of a field of the room's config form. */
async function configField(
  c: TestClient,
  room: string,
  name: string,
): Promise<{ type?: string; values: string[]; options: string[] }> {
  const res = await c.request(
    xml('iq', { type: 'get', to: `${room}@${MUC}` }, xml('query', { xmlns: NS_MUC_OWNER })),
  );
  assert.equal(res.attrs.type, 'result', res.toString());
  const f = res
    .getChild('query', NS_MUC_OWNER)
    ?.getChild('x', 'jabber:x:data')
    ?.getChildren('field')
    .find((e: Element) => e.attrs.var === name);
  assert.ok(f, `no ${name} in the config form`);
  return {
    type: f.attrs.type as string | undefined,
    values: f.getChildren('value').map((v: Element) => v.getText()),
    options: f.getChildren('option').map((o: Element) => o.getChildText('value') ?? ''),
  };
}

const N = 2000;
/** One node for both parts: plain TCP allowed (cheap logins), one account may hold N sessions, new rooms show moderators only. */
const CONFIG = `
xmpp:
  requireTls: false
  maxConnectionsPerIp: ${N + 100}
limits:
  maxSessionsPerUser: ${N + 10}
  authMaxInFlightPerAccount: 64
modules:
  rooms:
    defaultPresenceBroadcast: [moderator]
`;

describe('XEP-0045 presence broadcast per role (muc#roomconfig_presencebroadcast)', function () {
  let node: TestNode;
  before(async function () {
    this.timeout(90_000);
    node = await startNode({ config: CONFIG });
    for (const u of ['pbowner', 'pbone', 'pbtwo', 'crowd']) await node.addUser(u, PW);
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  describe('in a room of three', function () {
    this.timeout(60_000);
    let owner: TestClient;
    let p1: TestClient;
    let p2: TestClient;
    const ROOM = 'quietroom';

    /** The owner says `body`; resolves once every client got it (every earlier room event is in). */
    async function barrier(body: string): Promise<void> {
      await say(owner, ROOM, body);
      await Promise.all([p1, p2].map((c) => c.waitFor(isGroupchat(ROOM, body), 10_000, body)));
    }
    const saw = (c: TestClient, nick: string, type?: string) =>
      c.received.filter(fromOccupant(ROOM, nick, type));

    before(async function () {
      [owner, p1, p2] = await Promise.all(
        ['pbowner', 'pbone', 'pbtwo'].map((username) =>
          xmppClient({ port: node.ports.xmpp, username, password: PW, resource: 'r' }),
        ),
      );
      await join(owner, ROOM, 'boss');
    });
    after(() => stopAllClients());

    it('the config form has muc#roomconfig_presencebroadcast, list-multi of the three roles; a new room has the server default modules.rooms.defaultPresenceBroadcast [XEP-0045 15.5.3]', async () => {
      const f = await configField(owner, ROOM, BROADCAST);
      assert.equal(f.type, 'list-multi');
      assert.deepEqual(f.values, ['moderator']);
      assert.deepEqual(f.options, ['moderator', 'participant', 'visitor']);
    });

    it('the form round trip keeps what was sent, in role order; no value shows nobody [XEP-0045 10.2, 15.5.3]', async () => {
      for (const [sent, kept] of [
        [
          ['visitor', 'moderator', 'participant'],
          ['moderator', 'participant', 'visitor'],
        ],
        [[], []],
        [['moderator'], ['moderator']],
      ]) {
        const res = await owner.request(roomConfig(ROOM, { [BROADCAST]: sent }));
        assert.equal(res.attrs.type, 'result', res.toString());
        assert.deepEqual((await configField(owner, ROOM, BROADCAST)).values, kept);
      }
    });

    it('a role that is not one → not-acceptable, the config unchanged; a non-submit form → bad-request [XEP-0045 10.2, 15.5.3]', async () => {
      for (const bad of [['moderator', 'owner'], ['none'], ['Moderator']]) {
        const res = await owner.request(roomConfig(ROOM, { [BROADCAST]: bad }));
        assert.equal(errorCondition(res), 'not-acceptable', res.toString());
      }
      const notSubmit = await owner.request(
        xml(
          'iq',
          { type: 'set', to: `${ROOM}@${MUC}` },
          xml(
            'query',
            { xmlns: NS_MUC_OWNER },
            xml('x', { xmlns: 'jabber:x:data', type: 'result' }),
          ),
        ),
      );
      assert.equal(errorCondition(notSubmit), 'bad-request', notSubmit.toString());
      assert.deepEqual((await configField(owner, ROOM, BROADCAST)).values, ['moderator']);
    });

    it('broadcast [moderator]: participants join seen by nobody else, each still gets its own presence with 110 and the moderator’s [XEP-0045 15.5.3, 7.2.2]', async () => {
      const self1 = await join(p1, ROOM, 'one');
      assert.ok(codes(self1).includes(110), self1.toString());
      assert.equal(mucItem(self1).role, 'participant');
      const self2 = await join(p2, ROOM, 'two');
      assert.ok(codes(self2).includes(110), self2.toString());
      await barrier('after the joins');
      // the moderator is shown to the newcomers
      assert.equal(saw(p1, 'boss').length, 1);
      assert.equal(saw(p2, 'boss').length, 1);
      assert.equal(mucItem(saw(p2, 'boss')[0]).role, 'moderator');
      // no participant sees another participant, nor does the moderator see them
      assert.deepEqual(saw(owner, 'one'), []);
      assert.deepEqual(saw(owner, 'two'), []);
      assert.deepEqual(saw(p2, 'one'), []);
      assert.deepEqual(saw(p1, 'two'), []);
    });

    it('messages of an occupant whose presence is not shown still reach everyone [XEP-0045 7.4]', async () => {
      await p1.send(
        xml('message', { to: `${ROOM}@${MUC}`, type: 'groupchat' }, xml('body', {}, 'from one')),
      );
      for (const c of [owner, p1, p2]) await c.waitFor(isGroupchat(ROOM, 'from one'), 10_000);
    });

    it('a participant made moderator enters the others’ view; made participant again it leaves it (unavailable) [XEP-0045 9.6, 9.7, 15.5.3]', async () => {
      const grant = await owner.request(
        xml(
          'iq',
          { type: 'set', to: `${ROOM}@${MUC}` },
          xml('query', { xmlns: NS_MUC_ADMIN }, xml('item', { nick: 'one', role: 'moderator' })),
        ),
      );
      assert.equal(grant.attrs.type, 'result', grant.toString());
      const shown = await p2.waitFor(fromOccupant(ROOM, 'one'), 10_000, 'one as moderator');
      assert.equal(shown.attrs.type, undefined);
      assert.equal(mucItem(shown).role, 'moderator');
      const own = await p1.waitFor(fromOccupant(ROOM, 'one'), 10_000, 'own role change');
      assert.ok(codes(own).includes(110));
      assert.equal(
        mucItem(await owner.waitFor(fromOccupant(ROOM, 'one'), 10_000)).role,
        'moderator',
      );
      const revoke = await owner.request(
        xml(
          'iq',
          { type: 'set', to: `${ROOM}@${MUC}` },
          xml('query', { xmlns: NS_MUC_ADMIN }, xml('item', { nick: 'one', role: 'participant' })),
        ),
      );
      assert.equal(revoke.attrs.type, 'result', revoke.toString());
      const gone = await p2.waitFor(fromOccupant(ROOM, 'one'), 10_000, 'one leaving the view');
      assert.equal(gone.attrs.type, 'unavailable');
      const back = await p1.waitFor(fromOccupant(ROOM, 'one'), 10_000, 'own role change back');
      assert.equal(back.attrs.type, undefined);
      assert.equal(mucItem(back).role, 'participant');
      const ownerSaw = await owner.waitFor(fromOccupant(ROOM, 'one'), 10_000);
      assert.equal(ownerSaw.attrs.type, 'unavailable');
      assert.equal(mucItem(ownerSaw).role, 'none');
    });

    it('a leave of an occupant not shown is told to itself only [XEP-0045 7.14, 15.5.3]', async () => {
      await p2.send(xml('presence', { to: `${ROOM}@${MUC}/two`, type: 'unavailable' }));
      const own = await p2.waitFor(fromOccupant(ROOM, 'two', 'unavailable'), 10_000);
      assert.ok(codes(own).includes(110));
      await say(owner, ROOM, 'after the leave');
      await p1.waitFor(isGroupchat(ROOM, 'after the leave'), 10_000);
      assert.deepEqual(saw(owner, 'two'), []);
      assert.deepEqual(saw(p1, 'two'), []);
      await join(p2, ROOM, 'two'); // back in for the next test
    });

    it('listing participants again shows them to everyone at once, with a 104 config change [XEP-0045 10.2.1, 15.5.3]', async () => {
      const res = await owner.request(
        roomConfig(ROOM, { [BROADCAST]: ['moderator', 'participant'] }),
      );
      assert.equal(res.attrs.type, 'result', res.toString());
      const one = await owner.waitFor(fromOccupant(ROOM, 'one'), 10_000, 'one shown');
      assert.equal(one.attrs.type, undefined);
      assert.equal(mucItem(one).role, 'participant');
      await owner.waitFor(fromOccupant(ROOM, 'two'), 10_000, 'two shown');
      await p2.waitFor(fromOccupant(ROOM, 'one'), 10_000, 'one shown to two');
      await p1.waitFor(fromOccupant(ROOM, 'two'), 10_000, 'two shown to one');
      await p1.waitFor(
        (el) =>
          el.name === 'message' && el.attrs.from === `${ROOM}@${MUC}` && codes(el).includes(104),
        10_000,
        '104',
      );
    });
  });

  describe('2,000 occupants join a room that shows moderators only', function () {
    this.timeout(120_000);
    const ROOM = 'bigquiet';
    let owner: TestClient;
    const conns: RawConn[] = [];

    before(async function () {
      this.timeout(120_000);
      owner = await xmppClient({
        port: node.ports.xmpp,
        username: 'pbowner',
        password: PW,
        resource: 'big',
      });
      await join(owner, ROOM, 'boss');
      // Plain TCP (PLAIN needs TLS) and SCRAM with the key derived once: cheap logins, 32 at a time
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next < N) {
            const i = next++;
            conns[i] = await rawLogin(node.ports.xmpp, 'crowd', PW, 'SCRAM-SHA-1', `r${i}`, {
              tls: false,
            });
          }
        }),
      );
    });
    after(() => closeAllRaw());

    it('[XEP-0045 15.5.3] each participant gets its own presence (110) and the moderator’s, nothing of the 1,999 others; the moderator gets none of theirs (stanzas counted on the wire)', async () => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (next < N) {
            const i = next++;
            conns[i].send(
              `<presence to='${ROOM}@${MUC}/n${i}'><x xmlns='${NS_MUC}'><history maxstanzas='0'/></x></presence>`,
            );
            await conns[i].waitFor(/<status code=['"]110['"]/, 60_000);
          }
        }),
      );
      // Barrier: the room's message after every join reaches each device after whatever the joins sent it
      await say(owner, ROOM, 'everyone in');
      await Promise.all(conns.map((c) => c.waitFor(/everyone in<\/body>/, 60_000)));
      let others = 0;
      for (const [i, c] of conns.entries()) {
        const froms = [...c.text.matchAll(/<presence\b[^>]*>/g)].map(
          (m) => /\bfrom=['"]([^'"]+)['"]/.exec(m[0])?.[1],
        );
        const own = froms.filter((f) => f === `${ROOM}@${MUC}/n${i}`).length;
        assert.equal(own, 1, `n${i}: its own presence once`);
        assert.deepEqual(
          froms.filter((f) => f !== `${ROOM}@${MUC}/n${i}`),
          [`${ROOM}@${MUC}/boss`],
          `n${i}`,
        );
        others += froms.length - own;
      }
      assert.equal(others, N); // the moderator's presence, once per newcomer: not N²/2
      assert.equal(
        owner.received.filter((el) => el.name === 'presence' && /\/n\d+$/.test(el.attrs.from ?? ''))
          .length,
        0,
      );
    });
  });
});
