// Black-box XEP-0054 vcard-temp, XEP-0202 entity time, XEP-0012 last
// activity and XEP-0077 password change / account removal, over @xmpp/client.
import assert from 'node:assert/strict';
import {
  closeAllRaw,
  makeFriends,
  DOMAIN,
  ping,
  rawUnauthenticated,
  presence,
  sleep,
  startNode,
  stanzaError,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestNode,
} from '../helpers.ts';

const PW = 'pw-profile';

describe('vcard-temp, entity time, last activity, XEP-0077', function () {
  this.timeout(30_000);
  let node: TestNode;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const carol = uniqueName('carol');
  const A = `${alice}@${DOMAIN}`;
  const login = (user: string, resource: string, password = PW) =>
    xmppClient({ port: node.ports.xmpp, username: user, password, resource });

  before(async function () {
    this.timeout(60_000);
    node = await startNode({ config: 'modules:\n  vcard: { maxBytes: 2048 }\n' });
    for (const u of [alice, bob, carol]) await node.addUser(u, PW);
    await makeFriends(node, alice, bob, PW);
  });
  afterEach(async () => {
    closeAllRaw();
    await stopAllClients();
  });
  after(async () => node?.dispose());

  it('vCard: the owner sets it, anyone reads it, nobody else sets it, size bounded [XEP-0054 3.1, 3.2]', async () => {
    const a = await login(alice, 'v');
    const empty = await a.request(
      xml('iq', { type: 'get' }, xml('vCard', { xmlns: 'vcard-temp' })),
    );
    assert.equal(empty.getChild('vCard', 'vcard-temp')!.children.length, 0);
    const set = await a.request(
      xml(
        'iq',
        { type: 'set' },
        xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Alice A.'), xml('NICKNAME', {}, 'al')),
      ),
    );
    assert.equal(set.attrs.type, 'result', set.toString());
    const c = await login(carol, 'v');
    const got = await c.request(
      xml('iq', { type: 'get', to: A }, xml('vCard', { xmlns: 'vcard-temp' })),
    );
    assert.equal(got.getChild('vCard', 'vcard-temp')!.getChildText('FN'), 'Alice A.');
    const forged = await c.request(
      xml(
        'iq',
        { type: 'set', to: A },
        xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Mallory')),
      ),
    );
    assert.equal(stanzaError(forged).condition, 'forbidden');
    const big = await a.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'vCard',
          { xmlns: 'vcard-temp' },
          xml('PHOTO', {}, xml('BINVAL', {}, 'A'.repeat(4000))),
        ),
      ),
    );
    assert.equal(stanzaError(big).condition, 'not-acceptable');
    const still = await c.request(
      xml('iq', { type: 'get', to: A }, xml('vCard', { xmlns: 'vcard-temp' })),
    );
    assert.equal(
      still.getChild('vCard')!.getChildText('FN'),
      'Alice A.',
      'the refused vCard did not replace the stored one',
    );
  });

  it('entity time of the server [XEP-0202 4]', async () => {
    const a = await login(alice, 't');
    const r = await a.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('time', { xmlns: 'urn:xmpp:time' })),
    );
    const t = r.getChild('time', 'urn:xmpp:time')!;
    assert.equal(t.getChildText('tzo'), '+00:00');
    assert.ok(Math.abs(Date.parse(t.getChildText('utc')!) - Date.now()) < 60_000, t.toString());
  });

  it('last activity: 0 while online, seconds since logout and the last unavailable status for a contact, forbidden for a stranger; server uptime [XEP-0012 4, 5]', async () => {
    const b = await login(bob, 'l');
    const a = await login(alice, 'l');
    await a.send(presence());
    await ping(a);
    const online = await b.request(
      xml('iq', { type: 'get', to: A }, xml('query', { xmlns: 'jabber:iq:last' })),
    );
    assert.equal(online.getChild('query')!.attrs.seconds, '0');
    await a.send(xml('presence', { type: 'unavailable' }, xml('status', {}, 'Gone fishing')));
    await ping(a);
    await a.stop();
    await sleep(1200);
    const later = await b.request(
      xml('iq', { type: 'get', to: A }, xml('query', { xmlns: 'jabber:iq:last' })),
    );
    assert.ok(
      Number(later.getChild('query', 'jabber:iq:last')!.attrs.seconds) >= 1,
      later.toString(),
    );
    assert.equal(later.getChild('query', 'jabber:iq:last')!.getText(), 'Gone fishing'); // [XEP-0012 4]
    const c = await login(carol, 'l');
    const no = await c.request(
      xml('iq', { type: 'get', to: A }, xml('query', { xmlns: 'jabber:iq:last' })),
    );
    assert.equal(stanzaError(no).condition, 'forbidden');
    const up = await c.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: 'jabber:iq:last' })),
    );
    assert.ok(Number(up.getChild('query')!.attrs.seconds) >= 0);
  });

  it('XEP-0077: change the password (the new one logs in, the old does not), then remove the account [XEP-0077 3.2, 3.3]', async () => {
    const user = uniqueName('leaving');
    await node.addUser(user, PW);
    const c = await login(user, 'r');
    const info = await c.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: 'jabber:iq:register' })),
    );
    assert.ok(info.getChild('query')!.getChild('registered'));
    const other = await c.request(
      xml(
        'iq',
        { type: 'set', to: DOMAIN },
        xml(
          'query',
          { xmlns: 'jabber:iq:register' },
          xml('username', {}, alice),
          xml('password', {}, 'x'),
        ),
      ),
    );
    assert.equal(stanzaError(other).condition, 'not-allowed');
    const change = await c.request(
      xml(
        'iq',
        { type: 'set', to: DOMAIN },
        xml(
          'query',
          { xmlns: 'jabber:iq:register' },
          xml('username', {}, user),
          xml('password', {}, 'new-secret'),
        ),
      ),
    );
    assert.equal(change.attrs.type, 'result', change.toString());
    await assert.rejects(login(user, 'old', PW), 'the old password no longer works');
    const c2 = await login(user, 'new', 'new-secret');
    const removed = await c2.request(
      xml('iq', { type: 'set' }, xml('query', { xmlns: 'jabber:iq:register' }, xml('remove'))),
    );
    assert.equal(removed.attrs.type, 'result');
    await Promise.race([
      c2.closed,
      sleep(5000).then(() => assert.fail('the session was not closed')),
    ]);
    await assert.rejects(login(user, 'gone', 'new-secret'), 'the account is gone');
  });

  it('in-band registration is off by default: no stream feature, not-allowed before login [XEP-0077 3.1]', async () => {
    const { c, features } = await rawUnauthenticated(node.ports.xmpp);
    assert.doesNotMatch(features, /iq-register/);
    const form = await c.iq('get', "<query xmlns='jabber:iq:register'/>");
    assert.equal(stanzaError(form).condition, 'not-allowed');
    const set = await c.iq(
      'set',
      `<query xmlns='jabber:iq:register'><username>${uniqueName('nope')}</username><password>long-enough-pw</password></query>`,
    );
    assert.equal(stanzaError(set).condition, 'not-allowed');
  });
});
