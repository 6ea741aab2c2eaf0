// Black-box: the presence subscription handshake [RFC6121 3], as both parties see it.
// The `it`s of the handshake describe run in order and share state, like a scansion script.
import assert from 'node:assert/strict';
import {
  DOMAIN,
  closeAllRaw,
  isPresence,
  isRosterPush,
  ping,
  presence,
  rosterGet,
  rosterItem,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type Element,
  type TestClient,
  type TestNode,
} from '../helpers.ts';

const PW = 'sub-pw';

function itemOf(push: Element, jid: string): { subscription?: string; ask?: string } {
  const it = rosterItem(push, jid);
  assert.ok(it, `push without item ${jid}: ${push.toString()}`);
  return { subscription: it.attrs.subscription, ask: it.attrs.ask };
}

/** Log in, ask for the roster (become interested) and send initial presence. */
async function online(
  port: number,
  username: string,
  resource: string,
  status?: string,
): Promise<TestClient> {
  const c = await xmppClient({ port, username, password: PW, resource });
  await c.request(rosterGet());
  await c.send(presence({ status }));
  await ping(c);
  return c;
}

describe('XMPP presence subscriptions [RFC6121 3]', function () {
  this.timeout(30_000);
  let node: TestNode;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const carol = uniqueName('carol');
  const dave = uniqueName('dave');
  const A = `${alice}@${DOMAIN}`;
  const B = `${bob}@${DOMAIN}`;

  before(async function () {
    this.timeout(60_000);
    node = await startNode();
    await Promise.all([alice, bob, carol, dave].map((u) => node.addUser(u, PW)));
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  describe('handshake between two online users', () => {
    let a: TestClient;
    let b: TestClient;

    before(async () => {
      a = await online(node.ports.xmpp, alice, 'pc', 'alice here');
      b = await online(node.ports.xmpp, bob, 'phone', 'bob here');
      a.drain();
      b.drain();
    });
    after(stopAllClients);

    it("subscribe: the contact gets it from the user's bare JID; the user's item gets ask='subscribe' [RFC6121 3.1.2] [RFC6121 3.1.3]", async () => {
      await a.send(xml('presence', { to: B, type: 'subscribe' }));
      const push = await a.waitFor(isRosterPush(B), 3000, 'roster push');
      assert.deepEqual(itemOf(push, B), { subscription: 'none', ask: 'subscribe' });
      const req = await b.waitFor(isPresence({ type: 'subscribe' }), 3000, 'subscribe');
      assert.equal(req.attrs.from, A, 'the server stamps the bare JID on subscription requests');
      assert.equal(req.attrs.to, B);
    });

    it("subscribed: contact's item → 'from', user's item → 'to', and the contact's presence reaches the user [RFC6121 3.1.5] [RFC6121 3.1.6]", async () => {
      await b.send(xml('presence', { to: A, type: 'subscribed' }));
      const bPush = await b.waitFor(isRosterPush(A), 3000, "bob's roster push");
      assert.deepEqual(itemOf(bPush, A), { subscription: 'from', ask: undefined });
      const ok = await a.waitFor(isPresence({ type: 'subscribed' }), 3000, 'subscribed');
      assert.equal(ok.attrs.from, B);
      const aPush = await a.waitFor(isRosterPush(B), 3000, "alice's roster push");
      assert.deepEqual(itemOf(aPush, B), { subscription: 'to', ask: undefined });
      const p = await a.waitFor(
        isPresence({ from: `${B}/phone`, type: undefined }),
        3000,
        "bob's presence",
      );
      assert.equal(p.getChildText('status'), 'bob here');
      // Bob is not subscribed to Alice: he must not get her presence.
      await b.expectNone(
        isPresence({ from: `${A}/pc`, type: undefined }),
        300,
        "alice's presence at bob",
      );
    });

    it("mutual: both items end at 'both' and each side gets the other's presence [RFC6121 3.1.5] [RFC6121 3.1.6]", async () => {
      await b.send(xml('presence', { to: A, type: 'subscribe' }));
      const bAsk = await b.waitFor(isRosterPush(A), 3000, "bob's push (ask)");
      assert.deepEqual(itemOf(bAsk, A), { subscription: 'from', ask: 'subscribe' });
      const req = await a.waitFor(isPresence({ type: 'subscribe' }), 3000, 'subscribe from bob');
      assert.equal(req.attrs.from, B);
      await a.send(xml('presence', { to: B, type: 'subscribed' }));
      const aPush = await a.waitFor(isRosterPush(B), 3000, "alice's push");
      assert.deepEqual(itemOf(aPush, B), { subscription: 'both', ask: undefined });
      const ok = await b.waitFor(isPresence({ type: 'subscribed' }), 3000, 'subscribed');
      assert.equal(ok.attrs.from, A);
      const bPush = await b.waitFor(isRosterPush(A), 3000, "bob's push");
      assert.deepEqual(itemOf(bPush, A), { subscription: 'both', ask: undefined });
      const p = await b.waitFor(
        isPresence({ from: `${A}/pc`, type: undefined }),
        3000,
        "alice's presence",
      );
      assert.equal(p.getChildText('status'), 'alice here');
    });

    it("unsubscribe: user's item both→from, contact's both→to, and the user gets the contact's unavailable [RFC6121 3.3.2] [RFC6121 3.3.3]", async () => {
      await a.send(xml('presence', { to: B, type: 'unsubscribe' }));
      const aPush = await a.waitFor(isRosterPush(B), 3000, "alice's push");
      assert.deepEqual(itemOf(aPush, B), { subscription: 'from', ask: undefined });
      const u = await b.waitFor(isPresence({ type: 'unsubscribe' }), 3000, 'unsubscribe');
      assert.equal(u.attrs.from, A);
      const bPush = await b.waitFor(isRosterPush(A), 3000, "bob's push");
      assert.deepEqual(itemOf(bPush, A), { subscription: 'to', ask: undefined });
      await a.waitFor(
        isPresence({ from: `${B}/phone`, type: 'unavailable' }),
        3000,
        "bob's unavailable",
      );
    });

    it("unsubscribed: the user revokes, both items → 'none', and the contact gets the user's unavailable [RFC6121 3.2.2] [RFC6121 3.2.3]", async () => {
      // now Alice has 'from' (Bob is subscribed to her); she cancels that
      await a.send(xml('presence', { to: B, type: 'unsubscribed' }));
      const aPush = await a.waitFor(isRosterPush(B), 3000, "alice's push");
      assert.deepEqual(itemOf(aPush, B), { subscription: 'none', ask: undefined });
      const u = await b.waitFor(isPresence({ type: 'unsubscribed' }), 3000, 'unsubscribed');
      assert.equal(u.attrs.from, A);
      const bPush = await b.waitFor(isRosterPush(A), 3000, "bob's push");
      assert.deepEqual(itemOf(bPush, A), { subscription: 'none', ask: undefined });
      await b.waitFor(
        isPresence({ from: `${A}/pc`, type: 'unavailable' }),
        3000,
        "alice's unavailable",
      );
      // and the rosters agree on the wire
      assert.equal(rosterItem(await a.request(rosterGet()), B)?.attrs.subscription, 'none');
      assert.equal(rosterItem(await b.request(rosterGet()), A)?.attrs.subscription, 'none');
    });
  });

  describe('requests to users who are not online', () => {
    afterEach(stopAllClients);

    it('a subscribe sent while the contact is offline is delivered when they log in and send initial presence [RFC6121 3.1.3]', async () => {
      const C = `${carol}@${DOMAIN}`;
      const a = await online(node.ports.xmpp, alice, 'offline-test');
      await a.send(xml('presence', { to: C, type: 'subscribe' }));
      const push = await a.waitFor(isRosterPush(C), 3000, 'roster push');
      assert.deepEqual(itemOf(push, C), { subscription: 'none', ask: 'subscribe' });
      await ping(a);

      const c = await xmppClient({
        port: node.ports.xmpp,
        username: carol,
        password: PW,
        resource: 'later',
      });
      await c.request(rosterGet());
      await c.send(presence());
      const req = await c.waitFor(isPresence({ type: 'subscribe' }), 3000, 'stored subscribe');
      assert.equal(req.attrs.from, A);
      // approving it completes the handshake for the requester
      await c.send(xml('presence', { to: A, type: 'subscribed' }));
      await a.waitFor(isPresence({ from: C, type: 'subscribed' }), 3000, 'subscribed');
      const aPush = await a.waitFor(isRosterPush(C), 3000, "alice's push");
      assert.deepEqual(itemOf(aPush, C), { subscription: 'to', ask: undefined });
    });

    it("a subscribe to an account that does not exist is answered with 'unsubscribed' [RFC6121 3.1.3]", async () => {
      const nobody = `${uniqueName('nobody')}@${DOMAIN}`;
      const d = await online(node.ports.xmpp, dave, 'x');
      await d.send(xml('presence', { to: nobody, type: 'subscribe' }));
      const u = await d.waitFor(
        isPresence({ from: nobody, type: 'unsubscribed' }),
        3000,
        'unsubscribed',
      );
      assert.equal(u.attrs.to, `${dave}@${DOMAIN}`);
      const roster = await d.request(rosterGet());
      const item = rosterItem(roster, nobody);
      assert.ok(
        !item || (item.attrs.subscription === 'none' && item.attrs.ask === undefined),
        `item left pending: ${item?.toString()}`,
      );
    });
  });
});
