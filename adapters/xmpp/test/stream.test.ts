/**
 * Stream life cycle on the wire harness: resource binding [RFC6120 7],
 * conflicts, closing, and what one client's stanzas look like to another.
 */
import assert from 'node:assert/strict';
import {
  Harness,
  NS_BIND,
  NS_SASL,
  assertWellFormedStream,
  expectStreamError,
  parseOne,
  stanzaError,
  type Client,
} from './harness.ts';

describe('xmpp stream (wire harness)', function () {
  let h: Harness;

  beforeEach(async () => {
    h = await Harness.start({ limits: { maxSessionsPerUser: 3 } });
  });

  afterEach(async () => {
    await h.stop();
  });

  /** Authenticated and restarted, not yet bound. */
  async function authenticated(): Promise<Client> {
    const c = h.connect();
    await c.open();
    c.send(
      `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0alice-pw').toString('base64')}</auth>`,
    );
    await c.expect(/<success [^>]*>(?:<\/success>)?/);
    assert.match(await c.open(), new RegExp(`<bind xmlns='${NS_BIND}'/>`));
    return c;
  }

  const bindIq = (inner: string, attrs = "type='set' id='b1'"): string =>
    `<iq ${attrs}><bind xmlns='${NS_BIND}'>${inner}</bind></iq>`;

  describe('resource binding [RFC6120 7]', function () {
    it('without a resource the server generates one [RFC6120 7.6]', async () => {
      const c = await authenticated();
      assert.match(await c.bind(), /^alice@localhost\/.+$/);
    });

    it('a resource that fails Resourceprep → bad-request, and binding can be retried [RFC6120 7.7.2.1]', async () => {
      const c = await authenticated();
      c.send(bindIq('<resource>bad&#x7f;</resource>')); // DEL: a control character
      const el = await c.expectStanza(/<iq [^>]*id='b1'[\s\S]*?<\/iq>/);
      assert.deepEqual(stanzaError(el), { type: 'modify', condition: 'bad-request' });
      assert.equal(await c.bind('good'), 'alice@localhost/good');
    });

    it('a bind IQ without id → bad-request [RFC6120 8.2.3]', async () => {
      const c = await authenticated();
      c.send(bindIq('', "type='set'"));
      const el = await c.expectStanza(/<iq [^>]*type='error'[\s\S]*?<\/iq>/);
      assert.deepEqual(stanzaError(el), { type: 'modify', condition: 'bad-request' });
    });

    it('the same resource again replaces the old session, which gets a conflict stream error [RFC6120 7.7.2.2, 4.9.3.3]', async () => {
      const first = h.connect();
      await first.login('alice', 'alice-pw', 'phone');
      const second = h.connect();
      assert.equal(await second.login('alice', 'alice-pw', 'phone'), 'alice@localhost/phone');
      const reason = await expectStreamError(first, 'conflict');
      assert.equal(reason.kind, 'resource-conflict');
      assert.equal(second.isClosed, false);
      await second.ping();
      // the new session owns the resource: a stanza to the full JID reaches it
      const bob = h.connect();
      await bob.login('bob', 'bob-pw', 'b');
      bob.send(
        `<message to='alice@localhost/phone' type='chat' id='after-conflict'><body>x</body></message>`,
      );
      await second.expect(/<message [^>]*id='after-conflict'/);
    });

    it('past maxSessionsPerUser → resource-constraint [RFC6120 7.6.2.1]', async () => {
      for (const r of ['a', 'b', 'c']) await h.connect().login('alice', 'alice-pw', r);
      const c = await authenticated();
      c.send(bindIq('<resource>d</resource>'));
      const el = await c.expectStanza(/<iq [^>]*id='b1'[\s\S]*?<\/iq>/);
      assert.deepEqual(stanzaError(el), { type: 'wait', condition: 'resource-constraint' });
    });
  });

  describe('closing', function () {
    it('</stream:stream> from the client is answered with </stream:stream>, no error; reason client-closed [RFC6120 4.4]', async () => {
      const c = h.connect();
      await c.login('alice', 'alice-pw', 'r');
      c.drain();
      c.send('</stream:stream>');
      const reason = await c.closed();
      assert.equal(reason.kind, 'client-closed');
      assert.equal(c.pending(), '</stream:stream>');
      assert.equal(c.transport.ended, true);
      assert.equal(h.broker.sessions.count(), 0);
    });

    it('a dropped transport unbinds the session and contacts see it go unavailable [RFC6121 4.5.2]', async () => {
      const watcher = h.connect();
      await watcher.login('alice', 'alice-pw', 'watcher');
      await watcher.available();
      const c = h.connect();
      await c.login('alice', 'alice-pw', 'dropped');
      await c.available();
      watcher.drain();
      c.conn.transportClosed('socket-error');
      assert.equal((await c.closed()).kind, 'socket-error');
      await watcher.expect(/<presence [^>]*from='alice@localhost\/dropped'[^>]*type='unavailable'/);
    });

    it('a stalled reader (outbound buffer over the limit) is closed with policy-violation; the sender is unaffected', async () => {
      const alice = h.connect();
      await alice.login('alice', 'alice-pw', 'a');
      const bob = h.connect();
      await bob.login('bob', 'bob-pw', 'b');
      await bob.available();
      bob.transport.buffered = h.xmppOptions.maxOutboundBuffer + 1;
      alice.send(`<message to='bob@localhost' type='chat'><body>x</body></message>`);
      const reason = await expectStreamError(bob, 'policy-violation');
      assert.match(reason.text ?? '', /slow consumer/);
      await alice.ping();
    });
  });

  describe('what the recipient sees', function () {
    it('special characters in attributes and text are escaped on the way out', async () => {
      const alice = h.connect();
      await alice.login('alice', 'alice-pw', 'a');
      const bob = h.connect();
      await bob.login('bob', 'bob-pw', 'b');
      await bob.available();
      alice.send(
        `<message to='bob@localhost' type='chat' id="it's&quot;"><body>&lt;b&gt; &amp; ]]&gt; '"</body><thread>t&amp;t</thread></message>`,
      );
      const text = await bob.expect(/<message [\s\S]*?<\/message>/);
      assertWellFormedStream(bob.output());
      const el = parseOne(text);
      assert.equal(el.attrs.id, `it's"`);
      assert.equal(el.getChildText('body'), `<b> & ]]> '"`);
      assert.equal(el.getChildText('thread'), 't&t');
      assert.equal(
        el.attrs.from,
        'alice@localhost/a',
        'from stamped by the server [RFC6120 8.1.2.1]',
      );
    });

    it('extension payloads in their own namespace reach the recipient unchanged [RFC6120 8.4]', async () => {
      const alice = h.connect();
      await alice.login('alice', 'alice-pw', 'a');
      const bob = h.connect();
      await bob.login('bob', 'bob-pw', 'b');
      await bob.available();
      alice.send(
        `<message to='bob@localhost' type='chat' id='x1'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/></message>`,
      );
      const el = parseOne(await bob.expect(/<message [^>]*id='x1'[\s\S]*?<\/message>/));
      assert.ok(el.getChild('active', 'http://jabber.org/protocol/chatstates'));
      assert.ok(el.getChild('request', 'urn:xmpp:receipts'));
    });
  });
});
