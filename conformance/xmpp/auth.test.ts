// Black-box: STARTTLS, SASL and resource binding on a real node [RFC6120 5-7], [XEP-0368].
import assert from 'node:assert/strict';
import {
  DOMAIN,
  NS_BIND,
  NS_SASL,
  NS_STREAM,
  NS_TLS,
  RawConn,
  closeAllRaw,
  createClient,
  isMessage,
  isStreamError,
  ping,
  rawLogin,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestNode,
} from '../helpers.ts';

const PW = 'correct horse';

function mechanisms(features: string): string[] {
  return [...features.matchAll(/<mechanism>([^<]*)<\/mechanism>/g)].map((m) => m[1]);
}

describe('XMPP c2s: STARTTLS, SASL, resource binding', function () {
  this.timeout(30_000);
  let node: TestNode;
  const user = uniqueName('auth');
  const other = uniqueName('auth-other');

  before(async function () {
    this.timeout(60_000);
    node = await startNode();
    await Promise.all([node.addUser(user, PW), node.addUser(other, PW)]);
  });
  afterEach(async () => {
    await stopAllClients();
    closeAllRaw();
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  describe('successful login', () => {
    it('logs in over STARTTLS with SCRAM-SHA-256 and the server signature verifies [RFC6120 6.4] [RFC7677] [RFC5802 3]', async () => {
      const c = await xmppClient({
        port: node.ports.xmpp,
        username: user,
        password: PW,
        resource: 'scram256',
        mechanism: 'SCRAM-SHA-256',
      });
      const auth = c.sent.find((e) => e.name === 'auth');
      assert.equal(auth?.attrs.mechanism, 'SCRAM-SHA-256');
      const success = c.received.find((e) => e.is('success', NS_SASL));
      assert.ok(success, 'no <success/> received');
      // [RFC5802 5.1] server-final-message: v=ServerSignature, checked with our own key derivation
      assert.ok(
        c.scram?.verifyServerFinal(Buffer.from(success.getText(), 'base64').toString('utf8')),
        `bad server-final: ${success.toString()}`,
      );
      assert.equal(c.jid, `${user}@${DOMAIN}/scram256`);
      await ping(c);
    });

    it('logs in over STARTTLS with SCRAM-SHA-1 [RFC6120 6.4] [RFC5802]', async () => {
      const c = await xmppClient({
        port: node.ports.xmpp,
        username: user,
        password: PW,
        resource: 'scram1',
        mechanism: 'SCRAM-SHA-1',
      });
      assert.equal(c.sent.find((e) => e.name === 'auth')?.attrs.mechanism, 'SCRAM-SHA-1');
      const success = c.received.find((e) => e.is('success', NS_SASL));
      assert.match(
        Buffer.from(success?.getText() ?? '', 'base64').toString('utf8'),
        /^v=[A-Za-z0-9+/]{27}=$/,
      );
      assert.equal(c.jid, `${user}@${DOMAIN}/scram1`);
      await ping(c);
    });

    it('logs in over STARTTLS with PLAIN [RFC6120 6.4] [RFC4616]', async () => {
      const c = await xmppClient({
        port: node.ports.xmpp,
        username: user,
        password: PW,
        resource: 'plain',
        mechanism: 'PLAIN',
      });
      assert.equal(c.sent.find((e) => e.name === 'auth')?.attrs.mechanism, 'PLAIN');
      assert.ok(c.received.some((e) => e.is('success', NS_SASL)));
      assert.equal(c.jid, `${user}@${DOMAIN}/plain`);
      await ping(c);
    });

    it('logs in over direct TLS; no STARTTLS is offered there [XEP-0368] [RFC6120 5.3.1]', async () => {
      const c = await xmppClient({
        port: node.ports.xmpps,
        username: user,
        password: PW,
        resource: 'direct',
        directTls: true,
        mechanism: 'PLAIN',
      });
      const first = c.received.find((e) => e.is('features', NS_STREAM));
      assert.ok(first, 'no stream features');
      assert.equal(
        first.getChild('starttls', NS_TLS),
        undefined,
        'STARTTLS offered on an encrypted stream',
      );
      const mechs = first
        .getChild('mechanisms', NS_SASL)
        ?.getChildren('mechanism')
        .map((m) => m.getText());
      assert.deepEqual(new Set(mechs), new Set(['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']));
      assert.equal(c.jid, `${user}@${DOMAIN}/direct`);
      await ping(c);
    });

    for (const mech of ['SCRAM-SHA-1', 'SCRAM-SHA-256'] as const) {
      it(`${mech} on the wire: nonce extends ours, server-final signature verifies [RFC5802 5.1]`, async () => {
        const c = await RawConn.connect(node.ports.xmpp);
        await c.openStream();
        await c.startTls();
        await c.openStream();
        const { outcome, scram } = await c.auth(mech, user, PW); // clientFinal throws when the nonce is not ours + more
        const m = /<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>([^<]+)<\/success>/.exec(
          outcome,
        );
        assert.ok(m, `expected <success/> with additional data, got ${outcome}`);
        assert.ok(
          scram!.verifyServerFinal(Buffer.from(m[1], 'base64').toString('utf8')),
          'server signature does not verify',
        );
      });
    }
  });

  describe('stream features and TLS', () => {
    it('offers only STARTTLS (required) before TLS, and SASL with PLAIN after it [RFC6120 5.3.1] [RFC6120 5.4.3.3] [RFC6120 13.8]', async () => {
      const c = await RawConn.connect(node.ports.xmpp);
      const before = await c.openStream();
      assert.match(before, /<stream:stream [^>]*from='localhost'[^>]*version='1\.0'/);
      assert.match(before, new RegExp(`<starttls xmlns='${NS_TLS}'><required/></starttls>`));
      assert.doesNotMatch(before, /<mechanisms/, 'SASL offered before mandatory TLS');
      assert.doesNotMatch(before, /PLAIN/);
      await c.startTls();
      const after = await c.openStream();
      assert.doesNotMatch(after, /<starttls/, 'STARTTLS offered again after TLS');
      assert.deepEqual(
        new Set(mechanisms(after)),
        new Set(['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']),
      );
    });

    it('answers <auth/> before STARTTLS with <encryption-required/> [RFC6120 6.5.4]', async () => {
      const c = await RawConn.connect(node.ports.xmpp);
      await c.openStream();
      c.send(
        `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${PW}`).toString('base64')}</auth>`,
      );
      const answer = await c.waitFor(/<failure[\s\S]*?<\/failure>/);
      assert.match(answer, new RegExp(`<failure xmlns='${NS_SASL}'><encryption-required/>`));
      assert.doesNotMatch(answer, /<success/);
    });
  });

  describe('failed authentication', () => {
    // Failures from 127.0.0.1 are throttled after a few; a successful login to the
    // account guessed at, from the same address, forgets its failures (and only its own:
    // conformance/security/core-auth.test.ts).
    afterEach(async () => {
      closeAllRaw();
      (await rawLogin(node.ports.xmpp, user, PW)).destroy();
    });

    for (const mech of ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'] as const) {
      it(`wrong password with ${mech} → <failure><not-authorized/></failure> [RFC6120 6.5.10]`, async () => {
        const c = await RawConn.connect(node.ports.xmpp);
        await c.openStream();
        await c.startTls();
        await c.openStream();
        const { outcome } = await c.auth(mech, user, 'wrong password');
        assert.match(outcome, new RegExp(`^<failure xmlns='${NS_SASL}'><not-authorized/>`));
        assert.equal(c.closed, false, 'one failure must not close the stream [RFC6120 6.4.5]');
      });
    }

    it('wrong password with @xmpp/client: login rejected, not-authorized seen on the wire [RFC6120 6.5.10]', async () => {
      const c = createClient({
        port: node.ports.xmpp,
        username: user,
        password: 'nope',
        resource: 'x',
      });
      try {
        await assert.rejects(c.start());
        const failure = c.received.find((e) => e.is('failure', NS_SASL));
        assert.ok(
          failure?.getChild('not-authorized', NS_SASL),
          `expected not-authorized, got ${failure?.toString()}`,
        );
        assert.ok(!c.received.some((e) => e.is('success', NS_SASL)));
      } finally {
        c.drop();
      }
    });

    for (const mech of ['SCRAM-SHA-256', 'PLAIN'] as const) {
      it(`unknown user with ${mech} → not-authorized, told apart from a wrong password by nothing [RFC6120 6.5.10]`, async () => {
        const c = await RawConn.connect(node.ports.xmpp);
        await c.openStream();
        await c.startTls();
        await c.openStream();
        const { outcome } = await c.auth(mech, uniqueName('nobody'), PW);
        assert.match(outcome, new RegExp(`^<failure xmlns='${NS_SASL}'><not-authorized/>`));
        if (mech !== 'PLAIN')
          assert.match(
            c.text,
            /<challenge /,
            'SCRAM for an unknown user must still send a challenge',
          );
      });
    }

    it('three failures on one stream → <policy-violation/> stream error and close [RFC6120 6.4.5]', async () => {
      const c = await RawConn.connect(node.ports.xmpp);
      await c.openStream();
      await c.startTls();
      await c.openStream();
      for (let i = 1; i <= 2; i++) {
        const { outcome } = await c.auth('PLAIN', user, `bad-${i}`);
        assert.match(outcome, /<not-authorized\/>/);
        assert.doesNotMatch(c.unread(), /<stream:error>/);
      }
      const { outcome } = await c.auth('PLAIN', user, 'bad-3');
      assert.match(outcome, /<not-authorized\/>/);
      const tail = await c.waitFor(/<\/stream:stream>/, 5000);
      assert.match(
        tail,
        /<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/,
      );
      await c.waitClosed();
    });
  });

  describe('resource binding', () => {
    it('generates a resource when the client asks for none [RFC6120 7.6]', async () => {
      const a = await xmppClient({ port: node.ports.xmpp, username: user, password: PW });
      const b = await xmppClient({ port: node.ports.xmpp, username: user, password: PW });
      const bindReq = a.sent.find((e) => e.name === 'iq' && e.getChild('bind', NS_BIND));
      assert.ok(bindReq, 'no bind request sent');
      assert.equal(
        bindReq.getChild('bind', NS_BIND)!.getChild('resource'),
        undefined,
        'the client asked for a resource',
      );
      const result = a.received.find((e) => e.name === 'iq' && e.attrs.id === bindReq.attrs.id);
      assert.equal(result?.attrs.type, 'result');
      const jid = result!.getChild('bind', NS_BIND)?.getChildText('jid') ?? '';
      assert.match(jid, new RegExp(`^${user}@${DOMAIN}/.+$`));
      assert.equal(a.jid, jid);
      assert.notEqual(a.jid, b.jid, 'two sessions got the same generated resource');
      await ping(a);
      await ping(b);
    });

    it('a second login with the same resource closes the first with a <conflict/> stream error [RFC6120 7.7.2.2]', async () => {
      const first = await xmppClient({
        port: node.ports.xmpp,
        username: user,
        password: PW,
        resource: 'dup',
      });
      const second = await xmppClient({
        port: node.ports.xmpp,
        username: user,
        password: PW,
        resource: 'dup',
      });
      assert.equal(second.jid, `${user}@${DOMAIN}/dup`);
      await first.waitFor(isStreamError('conflict'), 3000, 'conflict stream error');
      await Promise.race([
        first.closed,
        new Promise((_, rej) => setTimeout(() => rej(new Error('first session not closed')), 3000)),
      ]);
      await ping(second);
    });

    it('after a resource conflict the new session owns the resource: stanzas to the full JID reach it [RFC6120 7.7.2.2]', async () => {
      const first = await xmppClient({
        port: node.ports.xmpp,
        username: user,
        password: PW,
        resource: 'dup2',
      });
      const second = await xmppClient({
        port: node.ports.xmpp,
        username: user,
        password: PW,
        resource: 'dup2',
      });
      await first.closed;
      const sender = await xmppClient({
        port: node.ports.xmpp,
        username: other,
        password: PW,
        resource: 's',
      });
      await sender.send(
        xml(
          'message',
          { to: `${user}@${DOMAIN}/dup2`, type: 'chat', id: 'after-conflict' },
          xml('body', {}, 'hi'),
        ),
      );
      await second.waitFor(
        isMessage({ id: 'after-conflict' }),
        3000,
        'message to the full JID of the replacing session',
      );
    });
  });
});
