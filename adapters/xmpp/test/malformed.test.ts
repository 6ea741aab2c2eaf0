/**
 * Malformed input and the exact answer (Mosquitto 13-malformed-publish style):
 * each row sends one bad input at one stage of the stream and asserts what the
 * client sees on the wire — a stream error element then `</stream:stream>`, a
 * stanza error, a SASL failure, or nothing at all. docs/architecture.md, principle 8: bad input
 * gets a precise protocol answer and nothing else breaks.
 */
import assert from 'node:assert/strict';
import {
  Client,
  Harness,
  NS_CLIENT,
  NS_SASL,
  NS_STREAM,
  assertWellFormedStream,
  expectStreamError,
  stanzaError,
} from './harness.ts';

/** What has happened on the stream before the bad input is sent. */
type Stage = 'connect' | 'open' | 'authenticated' | 'bound';

type Expected =
  /** a stream error with this condition, then the stream closes [RFC6120 4.9] */
  | { stream: string; reason?: string }
  /** a stanza error reply with this condition and type [RFC6120 8.3] */
  | { stanza: string; type: string }
  /** no reply at all; the stream stays usable */
  | { nothing: true };

interface Row {
  title: string;
  stage: Stage;
  input: string | string[];
  expect: Expected;
}

const MAX_STANZA = 4096;
const MAX_DEPTH = 8;
const BOB = 'bob@localhost';
const nested = (n: number): string =>
  `<message to='${BOB}'>${'<x xmlns="urn:x">'.repeat(n)}${'</x>'.repeat(n)}</message>`;
const header = (attrs: string): string => `<?xml version='1.0'?><stream:stream ${attrs}>`;
const std = `xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}'`;

// prettier-ignore
const streamRows: Row[] = [
  // ---- not-well-formed [RFC6120 4.9.3.13]
  { title: 'mismatched tags → not-well-formed [RFC6120 4.9.3.13]', stage: 'bound', input: `<message to='${BOB}'><body>hi</message>`, expect: { stream: 'not-well-formed' } },
  { title: 'unquoted attribute → not-well-formed [RFC6120 4.9.3.13]', stage: 'bound', input: `<message to=${BOB}><body>hi</body></message>`, expect: { stream: 'not-well-formed' } },
  { title: 'text outside a stanza → not-well-formed [RFC6120 4.9.3.13]', stage: 'bound', input: 'hello<presence/>', expect: { stream: 'not-well-formed' } },
  { title: 'an HTTP request instead of a stream → not-well-formed, after a response header [RFC6120 4.9.3.13, 4.9.1.2]', stage: 'connect', input: 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n', expect: { stream: 'not-well-formed' } },
  { title: 'a second XML declaration mid-stream → not-well-formed [RFC6120 4.9.3.13]', stage: 'bound', input: "<?xml version='1.0'?>", expect: { stream: 'not-well-formed' } },
  // ---- restricted-xml [RFC6120 4.9.3.18, 11.1]
  { title: 'comment → restricted-xml [RFC6120 4.9.3.18, 11.1]', stage: 'bound', input: '<!-- hello -->', expect: { stream: 'restricted-xml' } },
  { title: 'comment inside a stanza → restricted-xml [RFC6120 4.9.3.18, 11.1]', stage: 'bound', input: `<message to='${BOB}'><!--x--><body>hi</body></message>`, expect: { stream: 'restricted-xml' } },
  { title: 'processing instruction → restricted-xml [RFC6120 4.9.3.18, 11.1]', stage: 'bound', input: '<?foo bar?>', expect: { stream: 'restricted-xml' } },
  { title: 'DOCTYPE with an internal subset before the stream header → restricted-xml [RFC6120 4.9.3.18, 11.1]', stage: 'connect', input: `<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY lol 'lol'>]><stream:stream ${std} to='localhost' version='1.0'>`, expect: { stream: 'restricted-xml' } },
  { title: 'undefined entity reference → restricted-xml [RFC6120 4.9.3.18, 11.1]', stage: 'bound', input: `<message to='${BOB}'><body>&foo;</body></message>`, expect: { stream: 'restricted-xml' } },
  { title: 'undefined entity reference in an attribute → restricted-xml [RFC6120 4.9.3.18, 11.1]', stage: 'bound', input: `<message to='${BOB}' id='&foo;'><body>x</body></message>`, expect: { stream: 'restricted-xml' } },
  // ---- policy-violation [RFC6120 4.9.3.14]
  { title: `stanza over maxStanzaSize (${MAX_STANZA}) → policy-violation [RFC6120 4.9.3.14]`, stage: 'bound', input: `<message to='${BOB}'><body>${'x'.repeat(MAX_STANZA)}</body></message>`, expect: { stream: 'policy-violation' } },
  { title: 'stanza over maxStanzaSize arriving in 100-byte chunks, never completed → policy-violation [RFC6120 4.9.3.14]', stage: 'bound', input: [`<message to='${BOB}'><body>`, ...Array.from({ length: 50 }, () => 'y'.repeat(100))], expect: { stream: 'policy-violation' } },
  { title: `nesting deeper than maxDepth (${MAX_DEPTH}) → policy-violation [RFC6120 4.9.3.14]`, stage: 'bound', input: nested(MAX_DEPTH + 5), expect: { stream: 'policy-violation' } },
  // ---- stream header [RFC6120 4.7, 4.8]
  { title: 'wrong stream namespace → invalid-namespace [RFC6120 4.9.3.10]', stage: 'connect', input: header(`xmlns='${NS_CLIENT}' xmlns:stream='http://example.com/streams' to='localhost' version='1.0'`), expect: { stream: 'invalid-namespace' } },
  { title: 'wrong content namespace (jabber:server on c2s) → invalid-namespace [RFC6120 4.9.3.10, 4.8.2]', stage: 'connect', input: header(`xmlns='jabber:server' xmlns:stream='${NS_STREAM}' to='localhost' version='1.0'`), expect: { stream: 'invalid-namespace' } },
  { title: 'no content namespace at all → invalid-namespace [RFC6120 4.9.3.10, 4.8.2]', stage: 'connect', input: header(`xmlns:stream='${NS_STREAM}' to='localhost' version='1.0'`), expect: { stream: 'invalid-namespace' } },
  { title: 'stream prefix not declared → bad-namespace-prefix [RFC6120 4.9.3.2]', stage: 'connect', input: header(`xmlns='${NS_CLIENT}' to='localhost' version='1.0'`), expect: { stream: 'bad-namespace-prefix' } },
  { title: 'unbound prefix on a stanza → bad-namespace-prefix [RFC6120 4.9.3.2]', stage: 'bound', input: `<foo:message to='${BOB}'/>`, expect: { stream: 'bad-namespace-prefix' } },
  { title: 'version attribute missing → unsupported-version [RFC6120 4.9.3.25, 4.7.5]', stage: 'connect', input: header(`${std} to='localhost'`), expect: { stream: 'unsupported-version' } },
  { title: "version='2.0' → unsupported-version [RFC6120 4.9.3.25, 4.7.5]", stage: 'connect', input: header(`${std} to='localhost' version='2.0'`), expect: { stream: 'unsupported-version' } },
  { title: "version='one' → unsupported-version [RFC6120 4.9.3.25, 4.7.5]", stage: 'connect', input: header(`${std} to='localhost' version='one'`), expect: { stream: 'unsupported-version' } },
  { title: "to='other.example' → host-unknown [RFC6120 4.9.3.6]", stage: 'connect', input: header(`${std} to='other.example' version='1.0'`), expect: { stream: 'host-unknown' } },
  { title: "to='alice@localhost' (not a domain) → host-unknown [RFC6120 4.9.3.6]", stage: 'connect', input: header(`${std} to='alice@localhost' version='1.0'`), expect: { stream: 'host-unknown' } },
  // ---- order of negotiation
  { title: 'a stanza before authentication → not-authorized [RFC6120 4.9.3.12]', stage: 'open', input: `<message to='${BOB}' type='chat'><body>sneaky</body></message>`, expect: { stream: 'not-authorized' } },
  { title: 'an IQ before authentication → not-authorized [RFC6120 4.9.3.12]', stage: 'open', input: `<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`, expect: { stream: 'not-authorized' } },
  { title: 'a message after SASL but before bind → not-authorized [RFC6120 4.9.3.12, 7.1]', stage: 'authenticated', input: `<message to='${BOB}' type='chat'><body>sneaky</body></message>`, expect: { stream: 'not-authorized' } },
  // ---- after bind
  { title: 'unknown top-level element after bind → unsupported-stanza-type [RFC6120 4.9.3.24]', stage: 'bound', input: '<foo/>', expect: { stream: 'unsupported-stanza-type' } },
  { title: 'message in a foreign namespace → unsupported-stanza-type [RFC6120 4.9.3.24]', stage: 'bound', input: `<message xmlns='urn:example:other' to='${BOB}'/>`, expect: { stream: 'unsupported-stanza-type' } },
  { title: 'spoofed from (another user) → invalid-from [RFC6120 4.9.3.9, 8.1.2.1]', stage: 'bound', input: `<message from='carol@localhost/x' to='${BOB}' type='chat'><body>it is me, carol</body></message>`, expect: { stream: 'invalid-from' } },
  { title: 'spoofed from (own bare JID, another resource) → invalid-from [RFC6120 4.9.3.9, 8.1.2.1]', stage: 'bound', input: `<message from='alice@localhost/other' to='${BOB}' type='chat'><body>x</body></message>`, expect: { stream: 'invalid-from' } },
];

// prettier-ignore
const stanzaRows: Row[] = [
  { title: 'IQ without id → bad-request [RFC6120 8.2.3]', stage: 'bound', input: `<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: "IQ with type='foo' → bad-request [RFC6120 8.2.3]", stage: 'bound', input: `<iq type='foo' id='q1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: 'IQ without type → bad-request [RFC6120 8.2.3]', stage: 'bound', input: `<iq id='q1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: 'IQ get with two children → bad-request [RFC6120 8.2.3]', stage: 'bound', input: `<iq type='get' id='q1' to='localhost'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: 'IQ get with zero children → bad-request [RFC6120 8.2.3]', stage: 'bound', input: `<iq type='get' id='q1' to='localhost'/>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: 'IQ set with zero children to own account → bad-request [RFC6120 8.2.3]', stage: 'bound', input: `<iq type='set' id='q1'/>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: 'unknown IQ namespace to the server → service-unavailable [RFC6120 8.4]', stage: 'bound', input: `<iq type='get' id='q1' to='localhost'><query xmlns='urn:example:unknown'/></iq>`, expect: { stanza: 'service-unavailable', type: 'cancel' } },
  { title: "IQ to a nonexistent user's bare JID → service-unavailable [RFC6121 8.5.1]", stage: 'bound', input: `<iq type='get' id='q1' to='nobody@localhost'><ping xmlns='urn:xmpp:ping'/></iq>`, expect: { stanza: 'service-unavailable', type: 'cancel' } },
  { title: 'IQ to an unconnected full JID → service-unavailable [RFC6121 8.5.3.2.3]', stage: 'bound', input: `<iq type='get' id='q1' to='bob@localhost/nowhere'><ping xmlns='urn:xmpp:ping'/></iq>`, expect: { stanza: 'service-unavailable', type: 'cancel' } },
  { title: "message to='a@b@c' → jid-malformed [RFC6120 8.3.3.8, RFC7622 3.2]", stage: 'bound', input: `<message to='a@b@c' id='q1' type='chat'><body>x</body></message>`, expect: { stanza: 'jid-malformed', type: 'modify' } },
  { title: "IQ to='@x' → jid-malformed [RFC6120 8.3.3.8, RFC7622 3.3]", stage: 'bound', input: `<iq to='@x' id='q1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`, expect: { stanza: 'jid-malformed', type: 'modify' } },
  { title: "presence to='bob@localhost/' (empty resource) → jid-malformed [RFC6120 8.3.3.8, RFC7622 3.4]", stage: 'bound', input: `<presence to='bob@localhost/' id='q1'/>`, expect: { stanza: 'jid-malformed', type: 'modify' } },
  { title: "message type='bogus' → bad-request [RFC6121 5.2.2]", stage: 'bound', input: `<message to='${BOB}' id='q1' type='bogus'><body>x</body></message>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: "presence type='bogus' → bad-request [RFC6121 4.7.1]", stage: 'bound', input: `<presence id='q1' type='bogus'/>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: "presence priority 'abc' → bad-request [RFC6121 4.7.2.3]", stage: 'bound', input: `<presence id='q1'><priority>abc</priority></presence>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: 'presence priority 500 → bad-request [RFC6121 4.7.2.3]', stage: 'bound', input: `<presence id='q1'><priority>500</priority></presence>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: "presence show 'sleeping' → bad-request [RFC6121 4.7.2.1]", stage: 'bound', input: `<presence id='q1'><show>sleeping</show></presence>`, expect: { stanza: 'bad-request', type: 'modify' } },
  { title: 'chat message to a nonexistent user → service-unavailable [RFC6121 8.5.1]', stage: 'bound', input: `<message to='nobody@localhost' id='q1' type='chat'><body>x</body></message>`, expect: { stanza: 'service-unavailable', type: 'cancel' } },
  { title: 'groupchat message to a user → service-unavailable [RFC6121 8.5.2.1.1]', stage: 'bound', input: `<message to='${BOB}' id='q1' type='groupchat'><body>x</body></message>`, expect: { stanza: 'service-unavailable', type: 'cancel' } },
  { title: 'message to another domain (no federation) → remote-server-not-found [RFC6120 8.3.3.16]', stage: 'bound', input: `<message to='someone@elsewhere.example' id='q1' type='chat'><body>x</body></message>`, expect: { stanza: 'remote-server-not-found', type: 'cancel' } },
];

// prettier-ignore
const silentRows: Row[] = [
  { title: "message type='error' to a nonexistent user → no reply (never answer an error) [RFC6120 8.3.1]", stage: 'bound', input: `<message type='error' id='e1' to='nobody@localhost'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, expect: { nothing: true } },
  { title: "message type='error' with a malformed to → no reply [RFC6120 8.3.1]", stage: 'bound', input: `<message type='error' id='e1' to='a@b@c'/>`, expect: { nothing: true } },
  { title: "iq type='error' → no reply [RFC6120 8.3.1]", stage: 'bound', input: `<iq type='error' id='e2'/>`, expect: { nothing: true } },
  { title: "iq type='error' to a nonexistent full JID → no reply [RFC6120 8.3.1]", stage: 'bound', input: `<iq type='error' id='e3' to='nobody@localhost/x'/>`, expect: { nothing: true } },
  { title: "iq type='result' to a nonexistent full JID → no reply [RFC6120 8.2.3]", stage: 'bound', input: `<iq type='result' id='e4' to='bob@localhost/nowhere'/>`, expect: { nothing: true } },
  { title: "presence type='error' to a nonexistent user → no reply [RFC6120 8.3.1]", stage: 'bound', input: `<presence type='error' id='e5' to='nobody@localhost'/>`, expect: { nothing: true } },
  { title: "message type='error' to another domain → no reply [RFC6120 8.3.1]", stage: 'bound', input: `<message type='error' id='e6' to='x@elsewhere.example'/>`, expect: { nothing: true } },
];

describe('xmpp malformed input (wire harness)', function () {
  let h: Harness;
  let bob: Client;
  let n = 0;

  before(async () => {
    h = await Harness.start({ xmpp: { maxStanzaSize: MAX_STANZA, maxDepth: MAX_DEPTH } });
    bob = (await h.user('bob', 'bob-pw', 'watcher')).client;
    await bob.available();
  });

  after(async () => {
    await h.stop();
  });

  /** A client brought to `stage`. */
  async function client(stage: Stage): Promise<Client> {
    const c = h.connect();
    if (stage === 'open') await c.open();
    if (stage === 'authenticated') {
      await c.open();
      c.send(
        `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0alice-pw').toString('base64')}</auth>`,
      );
      await c.expect(/<success [^>]*>(?:<\/success>)?/);
      await c.open();
    }
    if (stage === 'bound') await c.login('alice', 'alice-pw', `row${++n}`);
    c.drain();
    return c;
  }

  function send(c: Client, input: string | string[]): void {
    for (const chunk of Array.isArray(input) ? input : [input]) c.send(chunk);
  }

  /** Bob, online the whole time, was sent nothing by any bad row. */
  async function bobGotNothing(): Promise<void> {
    await bob.ping();
    assert.doesNotMatch(
      bob.pending(),
      /<message|<iq [^>]*type='(?:get|set)'/,
      'bob received something from a bad client',
    );
    bob.drain();
  }

  describe('stream errors: the exact condition, then </stream:stream>', function () {
    for (const row of streamRows) {
      it(row.title, async () => {
        const c = await client(row.stage);
        send(c, row.input);
        const { stream } = row.expect as { stream: string };
        const reason = await expectStreamError(c, stream);
        assert.equal(reason.kind, stream, 'typed close reason');
        // the response header comes first when the client's header was bad or missing [RFC6120 4.9.1.2]
        if (row.stage === 'connect')
          assert.match(c.output(), /^<\?xml version='1.0'\?><stream:stream [^>]*>/);
        c.send(`<message to='${BOB}' type='chat'><body>after close</body></message>`);
        await bobGotNothing();
        if (row.stage === 'bound')
          assert.equal(h.broker.sessions.get(c.conn.address), undefined, 'session unbound');
      });
    }
  });

  describe('controls: headers that must be accepted', function () {
    // Without these, a server refusing every header would pass the rows above.
    for (const [what, attrs] of [
      ["version='1.1' (same major version) [RFC6120 4.7.5]", `${std} to='localhost' version='1.1'`],
      ["no 'to' (the server's own domain is assumed) [RFC6120 4.7.2]", `${std} version='1.0'`],
      ["to='LOCALHOST.' (normalised) [RFC7622 3.2]", `${std} to='LOCALHOST.' version='1.0'`],
    ]) {
      it(`${what} → stream features`, async () => {
        const c = h.connect();
        assert.match(await c.open(header(attrs)), /<mechanisms /);
        assert.equal(c.isClosed, false);
      });
    }
  });

  describe('stanza errors: the exact condition and type; the stream stays open', function () {
    for (const row of stanzaRows) {
      it(row.title, async () => {
        const c = await client(row.stage);
        send(c, row.input);
        const { stanza, type } = row.expect as { stanza: string; type: string };
        const kind = /^<(\w+)/.exec(row.input as string)![1];
        const el = await c.expectStanza(
          new RegExp(`<${kind} [^>]*type='error'[\\s\\S]*?</${kind}>`),
        );
        assert.deepEqual(stanzaError(el), { type, condition: stanza });
        assert.equal(
          el.attrs.id,
          /id='([^']*)'/.exec(row.input as string)?.[1],
          'same id as the request',
        );
        assert.equal(el.attrs.to, c.conn.address.toString(), 'addressed to the sender');
        await c.ping(); // still usable [RFC6120 8.3.1: stanza errors are recoverable]
        assert.equal(c.isClosed, false);
        await bobGotNothing();
        c.send('</stream:stream>');
        await c.closed();
      });
    }
  });

  describe('error and result stanzas are never answered with an error', function () {
    for (const row of silentRows) {
      it(row.title, async () => {
        const c = await client(row.stage);
        send(c, row.input);
        // Stanzas are handled in order: the ping's answer must be the very next thing written.
        c.send(`<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
        const next = await c.expect(/<[^>]*>/);
        assert.match(next, /^<iq [^>]*id='after'/, `expected no reply, got ${c.output()}`);
        await c.silence(50);
        await bobGotNothing();
        c.send('</stream:stream>');
        await c.closed();
      });
    }
  });

  describe('malformed SASL', function () {
    const failure = (cond: string): RegExp =>
      new RegExp(
        `^<failure xmlns='${NS_SASL}'><${cond}/>(?:<text xml:lang='en'>[^<]*</text>)?</failure>$`,
      );

    it('bad base64 → <incorrect-encoding/>; the stream stays open and login still works [RFC6120 6.5.5]', async () => {
      const c = await client('open');
      c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>%%%not base64%%%</auth>`);
      assert.match(await c.expect(/<failure[\s\S]*?<\/failure>/), failure('incorrect-encoding'));
      c.send(
        `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0alice-pw').toString('base64')}</auth>`,
      );
      await c.expect(/<success [^>]*>(?:<\/success>)?/);
      await c.open();
      assert.match(await c.bind(), /^alice@localhost\//);
    });

    it('base64 with a misplaced pad → <incorrect-encoding/> [RFC6120 6.5.5]', async () => {
      const c = await client('open');
      c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>AG=FsaWNl</auth>`);
      assert.match(await c.expect(/<failure[\s\S]*?<\/failure>/), failure('incorrect-encoding'));
    });

    it('unknown mechanism → <invalid-mechanism/> [RFC6120 6.5.7]', async () => {
      const c = await client('open');
      c.send(`<auth xmlns='${NS_SASL}' mechanism='X-UNKNOWN'>AGFsaWNlAGFsaWNlLXB3</auth>`);
      assert.match(await c.expect(/<failure[\s\S]*?<\/failure>/), failure('invalid-mechanism'));
    });

    it("SCRAM with channel-binding flag 'p=' → <failure/> (malformed-request), no challenge [RFC5802 6, RFC6120 6.5.8]", async () => {
      const c = await client('open');
      const first = Buffer.from('p=tls-unique,,n=alice,r=abcdefghijklmnop').toString('base64');
      c.send(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-1'>${first}</auth>`);
      const out = await c.expect(/<(?:failure|challenge)[\s\S]*?<\/(?:failure|challenge)>/);
      assert.match(out, failure('malformed-request'));
    });

    it('<response/> without <auth/> → <malformed-request/> [RFC6120 6.5.8]', async () => {
      const c = await client('open');
      c.send(`<response xmlns='${NS_SASL}'>AAAA</response>`);
      assert.match(await c.expect(/<failure[\s\S]*?<\/failure>/), failure('malformed-request'));
    });

    it('too many failed attempts → policy-violation stream error [RFC6120 6.4.5]', async () => {
      const c = await client('open');
      for (let i = 0; i < h.xmppOptions.maxAuthAttempts; i++) {
        c.send(
          `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0wrong').toString('base64')}</auth>`,
        );
      }
      await expectStreamError(c, 'policy-violation');
      assert.equal(c.output().match(/<not-authorized\/>/g)?.length, h.xmppOptions.maxAuthAttempts);
    });
  });

  describe('nothing else breaks', function () {
    it('after a bad client is closed, a second client in the same broker still chats normally [docs/architecture.md principle 8]', async () => {
      const bad = (await h.user('carol', 'carol-pw', 'bad')).client;
      const alice = await client('bound');
      await alice.available();
      bad.send(`<message to='${BOB}'><body>broken</message>`);
      await expectStreamError(bad, 'not-well-formed');
      assert.equal(
        h.broker.sessions.sessionsOf(h.broker.accounts.address('carol')).length,
        0,
        'the bad session is unbound',
      );
      alice.send(`<message to='${BOB}' type='chat' id='ok1'><body>still here</body></message>`);
      const got = await bob.expectStanza(/<message [^>]*id='ok1'[\s\S]*?<\/message>/);
      assert.equal(got.getChildText('body'), 'still here');
      assert.equal(got.attrs.from, alice.conn.address.toString());
      bob.send(
        `<message to='${alice.conn.address.toString()}' type='chat' id='ok2'><body>hello back</body></message>`,
      );
      await alice.expect(/<message [^>]*id='ok2'[\s\S]*?<body>hello back<\/body>/);
    });

    it('a client that sent a bad stream header does not stop a login on the same broker', async () => {
      const bad = h.connect();
      bad.send(header(`${std} to='other.example' version='1.0'`));
      await expectStreamError(bad, 'host-unknown');
      const good = h.connect();
      assert.match(
        await good.login('alice', 'alice-pw', 'after-bad'),
        /^alice@localhost\/after-bad$/,
      );
    });

    it('what one client sends cannot make another client receive XML it would reject [RFC6120 11.1, docs/architecture.md principle 8]', async () => {
      // A prefixed extension whose prefix is declared on the stanza (namespace-well-formed input).
      const alice = await client('bound');
      alice.send(
        `<message to='${BOB}' type='chat' id='ns1' xmlns:a='urn:example:a'><body>x</body><a:ext/></message>`,
      );
      await bob.expect(/<message [^>]*id='ns1'[\s\S]*?<\/message>/);
      assertWellFormedStream(bob.output());
    });

    it('an element that is not a stream as the root → invalid-namespace, and the output still parses as a stream [RFC6120 4.9.3.10, 4.9.1.2]', async () => {
      const c = h.connect();
      c.send('<not-a-stream/>');
      await expectStreamError(c, 'invalid-namespace');
      assert.match(c.output(), /^<\?xml version='1.0'\?><stream:stream /);
    });
  });
});
