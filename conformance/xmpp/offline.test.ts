// Black-box: offline message storage [XEP-0160] with delay stamps [XEP-0203],
// across kill -9, and its per-user limit.
import assert from 'node:assert/strict';
import {
  DOMAIN,
  NS_DELAY,
  closeAllRaw,
  isMessage,
  nextId,
  ping,
  presence,
  rosterGet,
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

const PW = 'offline-pw';
const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/; // [XEP-0082] DateTime in UTC

function chat(to: string, body: string, type = 'chat'): Element {
  return xml('message', { to, type, id: nextId('off') }, xml('body', {}, body));
}

/** Assert a [XEP-0203] delay element from the server with a stamp inside [from, to]. */
function assertDelayed(m: Element, from: number, to: number): void {
  const d = m.getChild('delay', NS_DELAY);
  assert.ok(d, `no <delay xmlns='${NS_DELAY}'/> in ${m.toString()}`);
  assert.equal(d.attrs.from, DOMAIN);
  assert.match(d.attrs.stamp ?? '', ISO_UTC);
  const t = Date.parse(d.attrs.stamp);
  assert.ok(
    t >= from - 1000 && t <= to + 1000,
    `stamp ${d.attrs.stamp} not within the time the message was sent`,
  );
}

const bodies = (c: TestClient) =>
  c.received
    .filter((e) => e.name === 'message' && e.attrs.type !== 'error')
    .map((e) => e.getChildText('body'));

describe('XMPP offline messages [XEP-0160]', function () {
  this.timeout(30_000);

  describe('delivery on the next login', () => {
    let node: TestNode;
    const sender = uniqueName('os');
    const rcpt = uniqueName('or');
    const rcpt2 = uniqueName('or2');

    before(async function () {
      this.timeout(60_000);
      node = await startNode();
      await Promise.all([sender, rcpt, rcpt2].map((u) => node.addUser(u, PW)));
    });
    afterEach(stopAllClients);
    after(async () => {
      await stopAllClients();
      closeAllRaw();
      await node?.dispose();
    });

    it('are delivered after initial presence, in order, each with a delay stamp [XEP-0160] [XEP-0203]', async () => {
      const s = await xmppClient({
        port: node.ports.xmpp,
        username: sender,
        password: PW,
        resource: 's',
      });
      const t0 = Date.now();
      const sent = ['first', 'second', 'third'].map((b) => chat(`${rcpt}@${DOMAIN}`, b));
      for (const m of sent) await s.send(m);
      await ping(s);
      const t1 = Date.now();
      await s.expectNone(isMessage({ type: 'error' }), 0, 'bounce');

      const r = await xmppClient({
        port: node.ports.xmpp,
        username: rcpt,
        password: PW,
        resource: 'r',
      });
      await r.request(rosterGet());
      await r.expectNone(isMessage(), 400, 'offline message before initial presence');
      await r.send(presence());
      const got: Element[] = [];
      for (const m of sent)
        got.push(
          await r.waitFor(isMessage({ id: m.attrs.id }), 3000, `offline message ${m.attrs.id}`),
        );
      assert.deepEqual(bodies(r), ['first', 'second', 'third'], 'order on the wire');
      for (const m of got) {
        assert.equal(m.attrs.from, `${sender}@${DOMAIN}/s`);
        assert.equal(m.attrs.type, 'chat');
        assertDelayed(m, t0, t1);
      }
      // handed over once: the next login finds the queue empty
      await r.stop();
      const again = await xmppClient({
        port: node.ports.xmpp,
        username: rcpt,
        password: PW,
        resource: 'r2',
      });
      await again.send(presence());
      await ping(again);
      await again.expectNone(isMessage(), 300, 'offline message delivered twice');
    });

    it('a headline to an offline user is not stored; a normal message is [RFC6121 8.5.2.2.1]', async () => {
      const s = await xmppClient({
        port: node.ports.xmpp,
        username: sender,
        password: PW,
        resource: 's2',
      });
      const headline = chat(`${rcpt2}@${DOMAIN}`, 'breaking', 'headline');
      const normal = chat(`${rcpt2}@${DOMAIN}`, 'kept', 'normal');
      await s.send(headline);
      await s.send(normal);
      await ping(s);
      const r = await xmppClient({
        port: node.ports.xmpp,
        username: rcpt2,
        password: PW,
        resource: 'r',
      });
      await r.send(presence());
      const m = await r.waitFor(isMessage({ id: normal.attrs.id }), 3000, 'stored normal message');
      assert.ok(m.getChild('delay', NS_DELAY));
      await r.expectNone(isMessage({ id: headline.attrs.id }), 300, 'stored headline');
      await s.expectNone(
        isMessage({ type: 'error' }),
        0,
        'error for a headline to an offline user',
      );
    });
  });

  describe('durability', () => {
    let node: TestNode;
    const sender = uniqueName('ks');
    const rcpt = uniqueName('kr');

    before(async function () {
      this.timeout(60_000);
      node = await startNode();
      await Promise.all([sender, rcpt].map((u) => node.addUser(u, PW)));
    });
    afterEach(stopAllClients);
    after(async () => {
      await stopAllClients();
      await node?.dispose();
    });

    it('survive kill -9 of the node and a restart [XEP-0160]', async function () {
      this.timeout(60_000);
      const s = await xmppClient({
        port: node.ports.xmpp,
        username: sender,
        password: PW,
        resource: 's',
      });
      const t0 = Date.now();
      const m = chat(`${rcpt}@${DOMAIN}`, 'written before the crash');
      await s.send(m);
      await ping(s); // the message has been routed (stored) before the answer
      const t1 = Date.now();
      await node.kill9();
      await s.closed;
      await stopAllClients();
      await node.restart();
      const r = await xmppClient({
        port: node.ports.xmpp,
        username: rcpt,
        password: PW,
        resource: 'r',
      });
      await r.send(presence());
      const got = await r.waitFor(
        isMessage({ id: m.attrs.id }),
        5000,
        'message from before the crash',
      );
      assert.equal(got.getChildText('body'), 'written before the crash');
      assert.equal(got.attrs.from, `${sender}@${DOMAIN}/s`);
      assertDelayed(got, t0, t1);
    });
  });

  describe('per-user limit (limits.offlineMaxPerUser: 2 from --config)', () => {
    let node: TestNode;
    const sender = uniqueName('ls');
    const rcpt = uniqueName('lr');

    before(async function () {
      this.timeout(60_000);
      node = await startNode({ config: 'limits:\n  offlineMaxPerUser: 2\n' });
      await Promise.all([sender, rcpt].map((u) => node.addUser(u, PW)));
    });
    afterEach(stopAllClients);
    after(async () => {
      await stopAllClients();
      await node?.dispose();
    });

    it('the message over the limit bounces with service-unavailable; the stored ones arrive [XEP-0160]', async () => {
      const s = await xmppClient({
        port: node.ports.xmpp,
        username: sender,
        password: PW,
        resource: 's',
      });
      const msgs = [1, 2, 3].map((i) => chat(`${rcpt}@${DOMAIN}`, `n${i}`));
      for (const m of msgs) await s.send(m);
      const err = await s.waitFor(
        isMessage({ id: msgs[2].attrs.id, type: 'error' }),
        3000,
        'bounce of the third',
      );
      assert.equal(err.attrs.from, `${rcpt}@${DOMAIN}`);
      assert.deepEqual(stanzaError(err), { type: 'cancel', condition: 'service-unavailable' });
      await ping(s);
      for (const m of msgs.slice(0, 2))
        await s.expectNone(
          isMessage({ id: m.attrs.id, type: 'error' }),
          0,
          'bounce of a stored message',
        );

      const r = await xmppClient({
        port: node.ports.xmpp,
        username: rcpt,
        password: PW,
        resource: 'r',
      });
      await r.send(presence());
      await r.waitFor(isMessage({ id: msgs[0].attrs.id }));
      await r.waitFor(isMessage({ id: msgs[1].attrs.id }));
      await r.expectNone(isMessage({ id: msgs[2].attrs.id }), 300, 'the bounced message');
      assert.deepEqual(bodies(r), ['n1', 'n2']);
    });
  });
});
