// Black-box XEP-0198 Stream Management: raw wire (enable, r/a, h limits,
// resumption and its timeout) and @xmpp/client's own stream-management
// (resumption after a cut TCP connection with messages in flight both ways).
import assert from 'node:assert/strict';
import {
  closeAllRaw,
  isMessage,
  ping,
  presence,
  RawConn,
  sleep,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import type { Element } from '@xmpp/xml';
import WebSocket from 'ws';
import { BoshClient } from '../web/bosh-client.ts';
import { bodies, NS_SM, rawResume as rawResumeAs, smLogin as smLoginAs } from '../sm-helpers.ts';

/**
 * The resume window of the node most tests use: long enough that a resume on
 * a loaded CI machine (TCP, STARTTLS, SCRAM, then <resume/>) is never late.
 * The tests of expiry use a second node whose window is 1 s.
 */
const RESUME_SECONDS = 20;
const PW = 'pw-sm';

/** Log in raw (this file's password), bind `resource`, enable resumable SM, send initial presence. */
const smLogin = (port: number, user: string, resource: string, max = RESUME_SECONDS) =>
  smLoginAs(port, user, PW, resource, max);

/** Resume on a fresh raw stream as `user` (this file's password). */
const rawResume = (port: number, user: string, previd: string, h: number) =>
  rawResumeAs(port, user, PW, previd, h);

/**
 * How @xmpp/client's stream management ends the next resumption: 'resumed',
 * or the server's `<failed/>` (which the library takes silently: it binds a
 * fresh session and emits no event), or a stream error, or a close. Each
 * non-resumed outcome says what the server sent, so the test fails saying why.
 */
function resumeOutcome(c: TestClient, ms = 20_000): Promise<string> {
  const from = c.received.length;
  const seen = () =>
    c.received
      .slice(from)
      .map((e) => e.toString().slice(0, 200))
      .join(' ') || '(nothing)';
  const x = c.xmpp as unknown as {
    streamManagement: { once(e: 'resumed', f: () => void): void };
    on(e: string, f: (arg: never) => void): void;
    off(e: string, f: (arg: never) => void): void;
  };
  return new Promise<string>((resolve) => {
    const done = (why: string) => {
      clearTimeout(timer);
      x.off('nonza', onNonza);
      x.off('error', onError);
      resolve(why);
    };
    const onNonza = (el: Element) => {
      if (el.name === 'failed' && el.attrs.xmlns === NS_SM)
        done(`server answered <resume/> with ${el.toString()}`);
    };
    const onError = (err: Error) =>
      done(`client error during resumption: ${err.message}; received: ${seen()}`);
    x.streamManagement.once('resumed', () => done('resumed'));
    x.on('nonza', onNonza);
    x.on('error', onError);
    const timer = setTimeout(
      () => done(`no answer to <resume/> within ${ms} ms; received since the cut: ${seen()}`),
      ms,
    );
  });
}

describe('XEP-0198 stream management', function () {
  this.timeout(30_000);
  let node: TestNode;
  let expiring: TestNode;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const carol = uniqueName('carol');

  before(async function () {
    this.timeout(60_000);
    node = await startNode({
      config: `modules:\n  stream-management: { resumeTimeoutSeconds: ${RESUME_SECONDS}, ackSlack: 2 }\n`,
    });
    expiring = await startNode({
      config: 'modules:\n  stream-management: { resumeTimeoutSeconds: 1, ackSlack: 2 }\n',
    });
    for (const u of [alice, bob, carol])
      await Promise.all([node.addUser(u, PW), expiring.addUser(u, PW)]);
  });
  afterEach(async () => {
    closeAllRaw();
    await stopAllClients();
  });
  after(async () => {
    await node?.dispose();
    await expiring?.dispose();
  });

  it('<enable/> → <enabled/>; <r/> is answered with h = stanzas handled, after they are handled [XEP-0198 3, 4]', async () => {
    const { c } = await smLogin(node.ports.xmpp, alice, 'r1');
    for (let i = 0; i < 4; i++)
      c.send(`<message to='${bob}@localhost' type='chat' id='m${i}'><body>x${i}</body></message>`);
    c.send(`<r xmlns='${NS_SM}'/>`);
    // presence + 4 messages
    assert.match(await c.waitFor(/<a [^>]*\/>/), /h='5'/);
  });

  it('an <a/> with h a little past what was sent is clamped; far past it is undefined-condition [XEP-0198 4]', async () => {
    const { c } = await smLogin(node.ports.xmpp, alice, 'h1');
    c.send(`<a xmlns='${NS_SM}' h='2'/>`); // nothing sent to it yet: 2 over, within ackSlack
    c.send(`<r xmlns='${NS_SM}'/>`);
    await c.waitFor(/<a [^>]*\/>/);
    assert.equal(c.closed, false, 'a small overcount keeps the stream (docs/leniency.md)');
    c.send(`<a xmlns='${NS_SM}' h='100'/>`);
    await c.waitFor(/<stream:error><undefined-condition/);
    await c.waitClosed();
  });

  it('the server asks for an ack every requestEvery stanzas, with at most one <r/> unanswered [XEP-0198 4]', async () => {
    const { c } = await smLogin(node.ports.xmpp, carol, 'req');
    const b = await xmppClient({
      port: node.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'req',
    });
    const burst = async (from: number, n: number) => {
      for (let i = from; i < from + n; i++)
        await b.send(
          xml('message', { to: `${carol}@localhost/req`, type: 'chat' }, xml('body', {}, `m${i}`)),
        );
      await c.waitFor(new RegExp(`>m${from + n - 1}</body>`));
    };
    const requests = () => c.text.split(`<r xmlns='${NS_SM}'/>`).length - 1;
    await burst(0, 25); // 26 stanzas with the presence echo: past 10 and past 20
    assert.equal(requests(), 1, 'no second <r/> while the first is unanswered');
    const h = (c.text.match(/<message /g) ?? []).length + 1; // the messages and the presence echo
    c.send(`<a xmlns='${NS_SM}' h='${h}'/>`);
    await burst(25, 10);
    await c.waitFor(/<r xmlns='urn:xmpp:sm:3'\/>/);
    assert.equal(requests(), 2, 'answered: the next 10 stanzas bring the next <r/>');
  });

  it('<enable/> before binding is refused with <failed/>, the stream stays [XEP-0198 3]', async () => {
    const c = await RawConn.connect(node.ports.xmpp);
    await c.openStream();
    await c.startTls();
    await c.openStream();
    await c.auth('SCRAM-SHA-256', alice, PW);
    await c.openStream();
    c.send(`<enable xmlns='${NS_SM}'/>`);
    assert.match(await c.waitFor(/<failed[\s\S]*?<\/failed>/), /unexpected-request/);
  });

  it('resume: unacked stanzas are replayed with delay stamps, presence state is kept, and the client is told h [XEP-0198 5]', async () => {
    const watcher = await xmppClient({
      port: node.ports.xmpp,
      username: alice,
      password: PW,
      resource: 'watch',
    });
    await watcher.send(presence());
    await ping(watcher);
    const { c, id } = await smLogin(node.ports.xmpp, alice, 'phone');
    c.send(`<message to='${bob}@localhost' type='chat' id='pre'><body>before</body></message>`);
    const b = await xmppClient({
      port: node.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'b',
    });
    await b.send(
      xml(
        'message',
        { to: `${alice}@localhost/phone`, type: 'chat', id: 'in1' },
        xml('body', {}, 'one'),
      ),
    );
    await c.waitFor(/one<\/body>/);
    c.destroy(); // cut: 'one' was never acknowledged
    await sleep(200);
    await b.send(
      xml(
        'message',
        { to: `${alice}@localhost/phone`, type: 'chat', id: 'in2' },
        xml('body', {}, 'two'),
      ),
    );
    await sleep(200);
    watcher.drain();
    const { c: c2, reply } = await rawResume(node.ports.xmpp, alice, id, 1); // it had the presence it sent itself... h counts what it received: 1 (its own presence echo)
    assert.match(reply, /<resumed /);
    assert.match(reply, /h='2'/, 'the server handled the presence and one message');
    const replay = await c2.waitFor(/two<\/body>[\s\S]*?<\/message>/);
    assert.deepEqual(bodies(replay), ['one', 'two'], 'replayed once each, in order');
    assert.match(replay, /<delay xmlns='urn:xmpp:delay'/, 'replays carry a delay stamp [XEP-0203]');
    await watcher.expectNone(
      (el) => el.name === 'presence' && el.attrs.from === `${alice}@localhost/phone`,
      500,
      'presence churn from the resumed resource',
    );
    // Still the same available session: a new message arrives once, live.
    await b.send(
      xml('message', { to: `${alice}@localhost/phone`, type: 'chat' }, xml('body', {}, 'three')),
    );
    assert.deepEqual(bodies(await c2.waitFor(/three<\/body>/)), ['three']);
  });

  it('a connection cut with a reset (an error, then the close) keeps the session for resumption [XEP-0198 5]', async () => {
    // A client that drops its socket with stanzas unread makes the kernel send RST: the server's
    // socket reports ECONNRESET and then closes. The close used to end the session the error had
    // just kept, so the resumption got item-not-found (the flake of the @xmpp/client test below).
    const { c, id } = await smLogin(node.ports.xmpp, carol, 'rst');
    c.send(`<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await c.waitFor(/<iq [^>]*id='p1'/);
    c.reset();
    await c.waitClosed();
    const b = await xmppClient({
      port: node.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'rst',
    });
    await b.send(
      xml(
        'message',
        { to: `${carol}@localhost/rst`, type: 'chat', id: 'r1' },
        xml('body', {}, 'kept'),
      ),
    );
    await ping(b); // the message before it is handled: queued for the detached session
    const { c: c2, reply } = await rawResume(node.ports.xmpp, carol, id, 2); // presence echo + ping result
    assert.match(
      reply,
      /<resumed /,
      `the session survived the reset; the server answered ${reply}`,
    );
    assert.deepEqual(
      bodies(await c2.waitFor(/kept<\/body>/)),
      ['kept'],
      'the message sent meanwhile is replayed',
    );
  });

  it('a resumed id cannot be used by another account, nor after the session expired [XEP-0198 5]', async () => {
    const { c, id } = await smLogin(expiring.ports.xmpp, alice, 'exp', 1);
    c.destroy();
    await sleep(100);
    const other = await rawResume(expiring.ports.xmpp, bob, id, 0);
    assert.match(other.reply, /<failed[\s\S]*item-not-found/);
    await sleep(1600); // resumeTimeoutSeconds: 1
    const late = await rawResume(expiring.ports.xmpp, alice, id, 0);
    assert.match(late.reply, /<failed[\s\S]*item-not-found/);
  });

  it('a session that is never resumed: its unacked message reaches the user once at the next login, from offline storage', async () => {
    const { c } = await smLogin(expiring.ports.xmpp, carol, 'gone', 1);
    const b = await xmppClient({
      port: expiring.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'b2',
    });
    await b.send(
      xml(
        'message',
        { to: `${carol}@localhost`, type: 'chat', id: 'lost1' },
        xml('body', {}, 'do not lose me'),
      ),
    );
    await c.waitFor(/do not lose me/);
    c.destroy(); // never acknowledged
    await sleep(1800); // the session expires
    const again = await xmppClient({
      port: expiring.ports.xmpp,
      username: carol,
      password: PW,
      resource: 'back',
    });
    await again.send(presence());
    const m = await again.waitFor(
      isMessage({ id: 'lost1' }),
      5000,
      'the unacked message from offline storage',
    );
    assert.equal(m.getChildText('body'), 'do not lose me');
    assert.ok(m.getChild('delay', 'urn:xmpp:delay'), 'delay-stamped [XEP-0203]');
    await again.expectNone(isMessage({ id: 'lost1' }), 500, 'a second copy');
  });

  it('a session that is never resumed: a message to its full JID goes to another device of the user, once', async () => {
    const desk = await xmppClient({
      port: expiring.ports.xmpp,
      username: carol,
      password: PW,
      resource: 'desk',
    });
    await desk.send(presence());
    await ping(desk);
    const { c } = await smLogin(expiring.ports.xmpp, carol, 'mobile', 1);
    const b = await xmppClient({
      port: expiring.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'b3',
    });
    await b.send(
      xml(
        'message',
        { to: `${carol}@localhost/mobile`, type: 'chat', id: 'full1' },
        xml('body', {}, 'for the phone'),
      ),
    );
    await c.waitFor(/for the phone/);
    await desk.expectNone(isMessage({ id: 'full1' }), 300, 'a copy before the phone is gone');
    c.destroy();
    const m = await desk.waitFor(
      isMessage({ id: 'full1' }),
      5000,
      "the phone's unacked message on the desktop",
    );
    assert.equal(m.getChildText('body'), 'for the phone');
    await desk.expectNone(isMessage({ id: 'full1' }), 500, 'a second copy');
  });

  it('@xmpp/client over WebSocket: a dropped socket is resumed on a new one, the message sent meanwhile arrives once [XEP-0198 5] [RFC7395]', async () => {
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket; // for @xmpp/client in Node 20
    const a = await xmppClient({
      port: 0,
      service: `ws://127.0.0.1:${node.ports.http}/xmpp-websocket`,
      username: alice,
      password: PW,
      resource: 'web',
    });
    await a.send(presence());
    await ping(a);
    const sm = (
      a.xmpp as unknown as {
        streamManagement: { enabled: boolean; id: string; on(e: string, f: () => void): void };
      }
    ).streamManagement;
    assert.ok(sm.enabled && sm.id, 'stream management enabled over WebSocket');
    const b = await xmppClient({
      port: node.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'wsb',
    });
    // What the library makes of our answer to its <resume/>: 'resumed', or the <failed/> it swallows
    // (it then binds a fresh session and emits no event), or an error; never a silent wait.
    const outcome = resumeOutcome(a);
    a.drop();
    await sleep(200);
    await b.send(
      xml(
        'message',
        { to: `${alice}@localhost/web`, type: 'chat', id: 'ws1' },
        xml('body', {}, 'while the socket was gone'),
      ),
    );
    await sleep(200);
    await (
      a.xmpp as unknown as { reconnect: { reconnect(): Promise<void> } }
    ).reconnect.reconnect();
    assert.equal(await outcome, 'resumed', 'the server answered <resume/> with <resumed/>');
    await a.waitFor(isMessage({ id: 'ws1' }), 5000, 'the message sent while the socket was gone');
    await a.expectNone(isMessage({ id: 'ws1' }), 500, 'a second copy');
  });

  it('over BOSH stream management is not offered, and <enable/> is refused with feature-not-implemented', async () => {
    const bosh = new BoshClient(`http://127.0.0.1:${node.ports.http}/http-bind`);
    await bosh.create();
    await bosh.login(alice, PW, 'bosh');
    await bosh.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const failedEl = await bosh.waitFor(
      (el) => el.name === 'failed' && el.attrs.xmlns === NS_SM,
      8000,
      'failed',
    );
    assert.ok(failedEl.getChild('feature-not-implemented', 'urn:ietf:params:xml:ns:xmpp-stanzas'));
  });

  it('@xmpp/client: resumption after a cut TCP connection, messages in flight both ways: nothing lost, nothing twice', async function () {
    this.timeout(60_000); // three logins (STARTTLS, SCRAM) and a resumption on a loaded machine
    const a: TestClient = await xmppClient({
      port: node.ports.xmpp,
      username: alice,
      password: PW,
      resource: 'lib',
    });
    await a.send(presence());
    await ping(a);
    const sm = (
      a.xmpp as unknown as {
        streamManagement: { enabled: boolean; id: string; on(e: string, f: () => void): void };
      }
    ).streamManagement;
    assert.ok(sm.enabled && sm.id, 'the library enabled resumable stream management');
    const b = await xmppClient({
      port: node.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'peer',
    });
    await b.send(presence());
    const N = 10;
    // Both ways at once, then the cut, before any ack can come back.
    for (let i = 0; i < N; i++) {
      await b.send(
        xml(
          'message',
          { to: `${alice}@localhost/lib`, type: 'chat', id: `b${i}` },
          xml('body', {}, `b${i}`),
        ),
      );
      await a.send(
        xml(
          'message',
          { to: `${bob}@localhost/peer`, type: 'chat', id: `a${i}` },
          xml('body', {}, `a${i}`),
        ),
      );
    }
    // What the library makes of our answer to its <resume/>: 'resumed', or the <failed/> it swallows
    // (it then binds a fresh session and emits no event), or an error; never a silent wait.
    const outcome = resumeOutcome(a);
    a.drop();
    for (let i = N; i < 2 * N; i++)
      await b.send(
        xml(
          'message',
          { to: `${alice}@localhost/lib`, type: 'chat', id: `b${i}` },
          xml('body', {}, `b${i}`),
        ),
      );
    await sleep(300);
    await (
      a.xmpp as unknown as { reconnect: { reconnect(): Promise<void> } }
    ).reconnect.reconnect();
    assert.equal(await outcome, 'resumed', 'the server answered <resume/> with <resumed/>');
    await ping(a);
    await sleep(500);
    const got = (c: TestClient, prefix: string) =>
      c.received
        .filter((e) => e.name === 'message' && e.attrs.id?.startsWith(prefix))
        .map((e) => e.attrs.id);
    const want = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => `${prefix}${i}`);
    assert.deepEqual(
      [...new Set(got(a, 'b'))].sort(),
      want('b', 2 * N).sort(),
      'alice got every message of bob',
    );
    assert.equal(got(a, 'b').length, 2 * N, 'alice got none twice');
    assert.deepEqual(
      [...new Set(got(b, 'a'))].sort(),
      want('a', N).sort(),
      'bob got every message of alice',
    );
    assert.equal(got(b, 'a').length, N, 'bob got none twice');
  });
});
