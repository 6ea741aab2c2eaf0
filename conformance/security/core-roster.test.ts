// Black-box: per-user and per-session collections of the core are bounded on
// every path (issue 20 items 11, 12), roster keys that are Object.prototype
// names are ordinary JIDs (item 14), and localparts with bidirectional
// controls are refused (PRECIS, "Also" list).
import assert from 'node:assert/strict';
import {
  DOMAIN,
  NS_ROSTER,
  isPresence,
  ping,
  presence,
  rosterGet,
  runCli,
  stanzaError,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type Element,
  type TestClient,
  type TestNode,
} from '../helpers.ts';

const PW = 'roster-pw';
const MAX_ITEMS = 5;

const rosterSet = (jid: string) =>
  xml('iq', { type: 'set' }, xml('query', { xmlns: NS_ROSTER }, xml('item', { jid })));

async function itemsOf(c: TestClient): Promise<string[]> {
  const r = await c.request(rosterGet());
  assert.equal(r.attrs.type, 'result', r.toString());
  return r
    .getChild('query', NS_ROSTER)!
    .getChildren('item')
    .map((i: Element) => i.attrs.jid as string);
}

describe('security: core bounds, prototype keys and localparts (issue 20 items 11, 12, 14)', function () {
  this.timeout(60_000);
  let node: TestNode;
  const users = Array.from({ length: 6 }, (_, i) => uniqueName(`r${i}`));

  before(async function () {
    node = await startNode({
      config: `limits:\n  rosterMaxItems: ${MAX_ITEMS}\n  maxDirectedPresences: 3\n  maxPendingSubscriptions: 2\n`,
    });
    await Promise.all(users.map((u) => node.addUser(u, PW)));
  });
  afterEach(() => stopAllClients());
  after(async () => node?.dispose());

  const login = async (u: string) => {
    const c = await xmppClient({ port: node.ports.xmpp, username: u, password: PW, resource: 'r' });
    await c.request(rosterGet());
    return c;
  };

  /** A roster filled to the limit by roster sets to JIDs that are no accounts. */
  async function fill(c: TestClient): Promise<void> {
    for (let i = 0; i < MAX_ITEMS; i++) {
      const r = await c.request(rosterSet(`filler-${i}@${DOMAIN}`));
      assert.equal(r.attrs.type, 'result', r.toString());
    }
  }

  it('the roster limit holds for subscribe (even to a JID that is no account) and pre-approval: not-allowed [RFC6121 2.3.3]', async () => {
    const c = await login(users[0]);
    await fill(c);
    assert.equal(
      stanzaError(await c.request(rosterSet(`one-more@${DOMAIN}`))).condition,
      'not-allowed',
    );
    for (const type of ['subscribe', 'subscribed']) {
      const to = `nobody-${type}@${DOMAIN}`;
      await c.send(xml('presence', { to, type }));
      const err = await c.waitFor(isPresence({ type: 'error' }), 5000, `presence error to ${type}`);
      assert.deepEqual(
        stanzaError(err),
        { type: 'cancel', condition: 'not-allowed' },
        err.toString(),
      );
    }
    const items = await itemsOf(c);
    assert.equal(items.length, MAX_ITEMS, `roster holds ${items.length} items: ${items.join(' ')}`);
  });

  it("the receiver's roster limit holds when it approves a request: not-allowed, and its roster is unchanged [RFC6121 2.3.3]", async () => {
    const full = await login(users[1]);
    await fill(full);
    await full.send(presence());
    const asker = await login(users[2]);
    await asker.send(xml('presence', { to: `${users[1]}@${DOMAIN}`, type: 'subscribe' }));
    await full.waitFor(isPresence({ type: 'subscribe' }), 5000, 'subscription request');
    await full.send(xml('presence', { to: `${users[2]}@${DOMAIN}`, type: 'subscribed' }));
    const err = await full.waitFor(isPresence({ type: 'error' }), 5000, 'presence error');
    assert.equal(stanzaError(err).condition, 'not-allowed', err.toString());
    assert.equal((await itemsOf(full)).length, MAX_ITEMS);
  });

  it('unanswered subscription requests to one user are bounded: resource-constraint past maxPendingSubscriptions [RFC6120 8.3.3.18]', async () => {
    const target = `${users[3]}@${DOMAIN}`; // never online
    const conditions: (string | undefined)[] = [];
    for (const u of [users[0], users[4], users[5]]) {
      const c = await xmppClient({
        port: node.ports.xmpp,
        username: u,
        password: PW,
        resource: 'p',
      });
      await c.send(xml('presence', { to: target, type: 'subscribe' }));
      await ping(c);
      const err = c.received.find((e) => e.name === 'presence' && e.attrs.type === 'error');
      conditions.push(err ? stanzaError(err).condition : undefined);
    }
    // users[0]'s roster is full: not-allowed before any request is stored; users[4] and users[5] take the two slots
    assert.deepEqual(conditions, ['not-allowed', undefined, undefined]);
    const late = await xmppClient({
      port: node.ports.xmpp,
      username: users[2],
      password: PW,
      resource: 'late',
    });
    await late.send(xml('presence', { to: target, type: 'subscribe' }));
    const err = await late.waitFor(isPresence({ type: 'error' }), 5000, 'presence error');
    assert.equal(stanzaError(err).condition, 'resource-constraint', err.toString());
  });

  it("a session's directed presences are bounded: resource-constraint past maxDirectedPresences, and nothing is sent [RFC6121 4.6]", async () => {
    const c = await login(users[4]);
    const seen = await login(users[5]);
    for (let i = 0; i < 3; i++) await c.send(xml('presence', { to: `nobody-${i}@${DOMAIN}` }));
    await ping(c);
    assert.ok(
      !c.received.some((e) => e.name === 'presence' && e.attrs.type === 'error'),
      'three directed presences are allowed',
    );
    await c.send(xml('presence', { to: `${users[5]}@${DOMAIN}/r` }));
    const err = await c.waitFor(isPresence({ type: 'error' }), 5000, 'presence error');
    assert.deepEqual(
      stanzaError(err),
      { type: 'wait', condition: 'resource-constraint' },
      err.toString(),
    );
    await seen.expectNone(
      isPresence({ from: `${users[4]}@${DOMAIN}/r` }),
      300,
      'the refused directed presence',
    );
  });

  it('roster items for JIDs named like Object.prototype members are stored and read back like any other', async () => {
    const c = await login(users[3]);
    const jids = [
      'constructor',
      'hasownproperty',
      'tostring',
      `__proto__@${DOMAIN}`,
      `constructor@${DOMAIN}`,
    ];
    for (const jid of jids) {
      const r = await c.request(rosterSet(jid));
      assert.equal(r.attrs.type, 'result', `roster set ${jid}: ${r.toString()}`);
    }
    assert.deepEqual((await itemsOf(c)).sort(), [...jids].sort());
    // Every later read still works (before the fix: internal-server-error from here on).
    assert.deepEqual((await itemsOf(c)).sort(), [...jids].sort());
    const rm = await c.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'query',
          { xmlns: NS_ROSTER },
          xml('item', { jid: 'constructor', subscription: 'remove' }),
        ),
      ),
    );
    assert.equal(rm.attrs.type, 'result', rm.toString());
    assert.equal((await itemsOf(c)).length, jids.length - 1);
  });

  describe('localparts with bidirectional controls [RFC8264 9.13] [RFC8265 3.3]', () => {
    const evil = 'ev\u202eil';

    it('`parley user add` refuses them', async () => {
      for (const name of [evil, 'a\u2066b', 'a\u200fb']) {
        const r = await runCli([
          '--data-dir',
          node.dataDir,
          '--domain',
          DOMAIN,
          'user',
          'add',
          name,
          PW,
        ]);
        assert.notEqual(r.code, 0, `user add ${JSON.stringify(name)} succeeded: ${r.stdout}`);
        assert.match(r.stderr, /jid-malformed/);
      }
    });

    it('a stanza to such a JID is answered jid-malformed [RFC6120 8.3.3.8]', async () => {
      const c = await login(users[0]);
      await c.send(
        xml(
          'message',
          { to: `${evil}@${DOMAIN}`, type: 'chat', id: 'bidi' },
          xml('body', {}, 'hi'),
        ),
      );
      const err = await c.waitFor(
        (e) => e.name === 'message' && e.attrs.type === 'error',
        5000,
        'message error',
      );
      assert.equal(stanzaError(err).condition, 'jid-malformed', err.toString());
    });
  });
});
