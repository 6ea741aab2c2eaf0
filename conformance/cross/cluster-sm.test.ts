// Black-box XEP-0198 resumption across a cluster (docs/cluster.md, "Stream
// management across nodes"): two nodes on loopback joined by a real
// redis-server; a client whose stream was on n1 comes back on n2 and resumes
// there, raw on the wire and with @xmpp/client; forged and unknown ids fail.
import assert from 'node:assert/strict';
import {
  befriend,
  closeAllRaw,
  isMessage,
  isPresence,
  ping,
  presence,
  sleep,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type Element,
  type TestClient,
} from '../helpers.ts';
import { addUsers, type MqttTestNode } from '../mqtt-helpers.ts';
import { eventually, startCluster, type TestCluster } from '../cluster-helpers.ts';
import { bodies, NS_SM, rawResume, smLogin } from '../sm-helpers.ts';

const PW = 'pw-cluster-sm';
const RESUME_SECONDS = 60;
/** How long n2 waits for n1's answer: far above a loaded machine's bus round trip, far below the test's patience. */
const TAKE_TIMEOUT_MS = 20_000;

describe('XEP-0198 resumption on another node of a cluster', function () {
  this.timeout(60_000);
  let cluster: TestCluster;
  let nodes: Record<string, MqttTestNode>;
  const chat = (to: string, body: string, id?: string) =>
    xml('message', { to, type: 'chat', id }, xml('body', {}, body));
  const unavailableFrom = (jid: string) => (el: Element) =>
    el.name === 'presence' && el.attrs.from === jid && el.attrs.type === 'unavailable';

  /** `user` (on n1, through a setup session that then ends) and `contact` on n2 subscribed both ways; the contact's client. */
  const friends = async (user: string, contact: string): Promise<TestClient> => {
    await addUsers(nodes.n1, { [user]: PW, [contact]: PW });
    const setup = await cluster.login('n1', user, PW, 'setup');
    const b = await cluster.login('n2', contact, PW, 'watch');
    await befriend(setup, b);
    await setup.stop();
    return b;
  };

  before(async function () {
    this.timeout(120_000);
    cluster = await startCluster(['n1', 'n2'], {
      cluster: 'advertise: { xmpp: "127.0.0.1" }', // a drain sends clients on with see-other-host
      yaml: [
        `modules:`,
        `  stream-management: { resumeTimeoutSeconds: ${RESUME_SECONDS}, clusterTakeTimeoutMs: ${TAKE_TIMEOUT_MS}, drainHandoverSeconds: 20 }`,
      ],
    });
    nodes = cluster.nodes;
    await cluster.converged();
  });
  afterEach(async () => {
    closeAllRaw();
    await stopAllClients();
  });
  after(async () => {
    await cluster?.dispose();
  });

  it('a reset stream of n1 resumes on n2: <resumed h>, unacked replayed once with delay stamps, the gap message once, no unavailable to contacts [XEP-0198 5] [XEP-0203]', async () => {
    const alice = uniqueName('alice');
    const b = await friends(alice, uniqueName('bob'));
    const phone = `${alice}@localhost/phone`;
    const { c, id } = await smLogin(nodes.n1.ports.xmpp, alice, PW, 'phone', RESUME_SECONDS);
    assert.match(id, /^n1\.[A-Za-z0-9_-]{16}$/, 'the id names the node that issued it');
    await b.waitFor(isPresence({ from: phone }), 10_000, "alice's available presence");
    await b.send(chat(phone, 'one', 'm1'));
    await c.waitFor(/one<\/body>/, 10_000);
    c.reset(); // never acknowledged; the kernel sends RST
    await c.waitClosed();
    await b.send(chat(phone, 'two', 'm2')); // the gap: to n1's detached session, or stranded there
    await ping(b);
    const { c: c2, reply } = await rawResume(nodes.n2.ports.xmpp, alice, PW, id, 0, 10_000);
    assert.match(reply, /<resumed /, `n2 resumed the session of n1; it answered ${reply}`);
    assert.match(reply, /h='1'/, 'h: n1 handled one stanza from the client (its presence)');
    assert.ok(reply.includes(`previd='${id}'`), 'previd is the id resumed');
    const replay = await c2.waitFor(/two<\/body>[\s\S]*?<\/message>/, 10_000);
    assert.deepEqual(bodies(replay), ['one', 'two'], 'replayed once each, in order');
    for (const m of replay.match(/<message[\s\S]*?<\/message>/g)!.filter((x) => /<body>/.test(x)))
      assert.match(m, /<delay xmlns='urn:xmpp:delay'/, 'every replayed message is delay-stamped');
    // Still the same available session, now on n2: a new message arrives once, live.
    await b.send(chat(phone, 'three', 'm3'));
    const after = await c2.waitFor(/three<\/body>[\s\S]*?<\/message>/, 10_000);
    assert.deepEqual(bodies(after), ['three']);
    await sleep(500);
    assert.doesNotMatch(c2.unread(), /<body>(one|two|three)<\/body>/, 'none arrives twice');
    assert.ok(!b.received.some(unavailableFrom(phone)), 'bob never saw alice/phone go unavailable');
    // The session counts on: an <r/> is answered with what n2 handled since (nothing) plus n1's one.
    c2.send(`<r xmlns='${NS_SM}'/>`);
    assert.match(await c2.waitFor(/<a [^>]*\/>/, 10_000), /h='1'/);
  });

  it('@xmpp/client: its resumption over a new connection to the other node resumes there; nothing lost, nothing twice [XEP-0198 5]', async () => {
    const [alice, bob] = [uniqueName('alice'), uniqueName('bob')];
    await addUsers(nodes.n1, { [alice]: PW, [bob]: PW });
    const a: TestClient = await xmppClient({
      port: nodes.n1.ports.xmpp,
      username: alice,
      password: PW,
      resource: 'lib',
    });
    await a.send(presence());
    await ping(a);
    const x = a.xmpp as unknown as {
      options: { service: string };
      streamManagement: { enabled: boolean; id: string; once(e: 'resumed', f: () => void): void };
      reconnect: { reconnect(): Promise<void> };
    };
    assert.ok(x.streamManagement.enabled && x.streamManagement.id.startsWith('n1.'));
    const b = await cluster.login('n2', bob, PW, 'peer');
    const N = 5;
    for (let i = 0; i < N; i++) await b.send(chat(`${alice}@localhost/lib`, `b${i}`, `b${i}`));
    await a.waitFor(isMessage({ id: `b${N - 1}` }), 10_000);
    const resumed = new Promise<void>((r) => x.streamManagement.once('resumed', r));
    a.drop();
    for (let i = N; i < 2 * N; i++) await b.send(chat(`${alice}@localhost/lib`, `b${i}`, `b${i}`));
    await ping(b);
    x.options.service = `xmpp://127.0.0.1:${nodes.n2.ports.xmpp}`; // "the load balancer" picks n2
    await x.reconnect.reconnect();
    await Promise.race([
      resumed,
      sleep(20_000).then(() => assert.fail('no <resumed/> on n2 within 20 s')),
    ]);
    await ping(a);
    const want = Array.from({ length: 2 * N }, (_, i) => `b${i}`);
    const got = () =>
      a.received
        .filter((e) => e.name === 'message' && e.attrs.id?.startsWith('b'))
        .map((e) => e.attrs.id);
    for (let t = 0; t < 100 && new Set(got()).size < want.length; t++) await sleep(100);
    assert.deepEqual([...new Set(got())].sort(), want.sort(), 'alice got every message of bob');
    await sleep(300);
    const ids = got();
    assert.equal(ids.length, new Set(ids).size, `none twice: ${ids.join(' ')}`);
  });

  it('a session resumed on n2 resumes again on n1, the node that issued its id; a message sent meanwhile arrives once [XEP-0198 5]', async () => {
    const [erin, bob] = [uniqueName('erin'), uniqueName('bob')];
    await addUsers(nodes.n1, { [erin]: PW, [bob]: PW });
    const b = await cluster.login('n1', bob, PW, 'b');
    const { c, id } = await smLogin(nodes.n1.ports.xmpp, erin, PW, 'tab', RESUME_SECONDS);
    c.destroy();
    await c.waitClosed();
    const first = await rawResume(nodes.n2.ports.xmpp, erin, PW, id, 0, 10_000);
    assert.match(first.reply, /<resumed /, `first hop: ${first.reply}`);
    first.c.destroy();
    await first.c.waitClosed();
    await b.send(chat(`${erin}@localhost/tab`, 'hop', 'h1'));
    await ping(b);
    const back = await rawResume(nodes.n1.ports.xmpp, erin, PW, id, 0, 10_000);
    assert.match(back.reply, /<resumed /, `back on n1: ${back.reply}`);
    assert.match(back.reply, /h='1'/, 'the count went along both hops (one presence)');
    assert.deepEqual(bodies(await back.c.waitFor(/hop<\/body>/, 10_000)), ['hop']);
    await sleep(500);
    assert.doesNotMatch(back.c.unread(), /<body>hop<\/body>/, 'once');
  });

  it('carbons stay enabled and an inactive client stays inactive when its session moves to another node [XEP-0280] [XEP-0352] [XEP-0198 5]', async () => {
    const gus = uniqueName('gus');
    const b = await friends(gus, uniqueName('bob'));
    const { c, id } = await smLogin(nodes.n1.ports.xmpp, gus, PW, 'tab', RESUME_SECONDS);
    const on = await c.iq('set', `<enable xmlns='urn:xmpp:carbons:2'/>`);
    assert.equal(on.attrs.type, 'result');
    c.send(`<inactive xmlns='urn:xmpp:csi:0'/>`);
    await c.iq('get', `<ping xmlns='urn:xmpp:ping'/>`); // the <inactive/> before it is handled
    c.destroy();
    await c.waitClosed();
    const { c: c2, reply } = await rawResume(nodes.n2.ports.xmpp, gus, PW, id, 0, 10_000);
    assert.match(reply, /<resumed /, reply);
    await cluster.login('n2', gus, PW, 'desk'); // carbons copy between sessions of one node
    // CSI: a contact's presence update waits while the client is inactive [XEP-0352]
    await b.send(xml('presence', {}, xml('show', {}, 'away')));
    await ping(b);
    // Carbons: a message to another resource of the account is copied here [XEP-0280 6]
    await b.send(chat(`${gus}@localhost/desk`, 'for the desk', 'cc1'));
    const copy = await c2.waitFor(
      /<received xmlns='urn:xmpp:carbons:2'[\s\S]*?<\/message>/,
      10_000,
    );
    assert.match(copy, /for the desk/);
    assert.doesNotMatch(c2.unread(), /<show>away<\/show>/, 'held while inactive');
    c2.send(`<active xmlns='urn:xmpp:csi:0'/>`);
    await c2.waitFor(/<show>away<\/show>/, 10_000);
  });

  it('a stream still attached on n1 is closed with conflict when its session resumes on n2 [XEP-0198 5] [RFC6120 4.9.3.3]', async () => {
    const ida = uniqueName('ida');
    await addUsers(nodes.n1, { [ida]: PW });
    const { c, id } = await smLogin(nodes.n1.ports.xmpp, ida, PW, 'tab', RESUME_SECONDS);
    await c.iq('get', `<ping xmlns='urn:xmpp:ping'/>`);
    const { reply } = await rawResume(nodes.n2.ports.xmpp, ida, PW, id, 0, 10_000);
    assert.match(reply, /<resumed /, reply);
    assert.match(
      await c.waitFor(/<\/stream:error>/, 10_000),
      /<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/,
      'the old stream is told another stream took its session',
    );
    await c.waitClosed(10_000);
  });

  it('a previd of another account fails with item-not-found, and its owner still resumes it [XEP-0198 5]', async () => {
    const [carol, mallory] = [uniqueName('carol'), uniqueName('mallory')];
    await addUsers(nodes.n1, { [carol]: PW, [mallory]: PW });
    const { c, id } = await smLogin(nodes.n1.ports.xmpp, carol, PW, 'pc', RESUME_SECONDS);
    c.destroy();
    await c.waitClosed();
    const forged = await rawResume(nodes.n2.ports.xmpp, mallory, PW, id, 0, 10_000);
    assert.match(forged.reply, /<failed[\s\S]*item-not-found/, 'another account: item-not-found');
    forged.c.destroy();
    const owner = await rawResume(nodes.n2.ports.xmpp, carol, PW, id, 0, 10_000);
    assert.match(owner.reply, /<resumed /, `the owner resumes; n2 answered ${owner.reply}`);
  });

  it('a previd naming a node that is not in the cluster, or not an id of ours, fails with item-not-found at once [XEP-0198 5]', async () => {
    const dave = uniqueName('dave');
    await addUsers(nodes.n1, { [dave]: PW });
    for (const previd of [
      'nowhere.AAAAAAAAAAAAAAAA',
      `${'x'.repeat(200)}.AAAAAAAAAAAAAAAA`,
      'n1.short',
      'n1.AAAA/AAAAAAAAAAA',
    ]) {
      const t0 = Date.now();
      const r = await rawResume(nodes.n2.ports.xmpp, dave, PW, previd, 0, 10_000);
      assert.match(r.reply, /<failed[\s\S]*item-not-found/, `${previd}: ${r.reply}`);
      assert.ok(
        Date.now() - t0 < TAKE_TIMEOUT_MS / 2,
        `${previd}: answered without waiting for the take timeout`,
      );
      r.c.destroy();
    }
  });

  // Last: n1 is gone after it.
  it('a drain of n1 sends the client to n2 with see-other-host and it resumes there: unacked replayed, the gap message once, no unavailable to contacts [RFC6120 4.9.3.19] [XEP-0198 5]', async function () {
    this.timeout(90_000);
    const frank = uniqueName('frank');
    const b = await friends(frank, uniqueName('bob'));
    const tab = `${frank}@localhost/tab`;
    const { c, id } = await smLogin(nodes.n1.ports.xmpp, frank, PW, 'tab', RESUME_SECONDS);
    await b.waitFor(isPresence({ from: tab }), 10_000, "frank's available presence");
    await b.send(chat(tab, 'd1', 'd1'));
    await c.waitFor(/d1<\/body>/, 10_000);
    const r = await cluster.cli('n2', 'cluster', 'drain', 'n1');
    assert.equal(r.code, 0, r.stderr);
    const err = await c.waitFor(/<see-other-host[^>]*>[^<]*<\/see-other-host>/, 30_000);
    const to = /:(\d+)<\/see-other-host>/.exec(err)?.[1];
    assert.equal(Number(to), nodes.n2.ports.xmpp, `sent to n2: ${err}`);
    c.destroy();
    await b.send(chat(tab, 'd2', 'd2')); // to n1's detached session, or stranded there
    await ping(b);
    const { c: c2, reply } = await rawResume(Number(to), frank, PW, id, 0, 30_000);
    assert.match(reply, /<resumed /, `resumed on n2 after the drain; it answered ${reply}`);
    assert.match(reply, /h='1'/);
    const got = await c2.waitFor(/d2<\/body>[\s\S]*?<\/message>/, 20_000);
    assert.deepEqual(bodies(got).sort(), ['d1', 'd2'], 'each once');
    await sleep(500);
    assert.doesNotMatch(c2.unread(), /<body>d[12]<\/body>/, 'none twice');
    assert.ok(!b.received.some(unavailableFrom(tab)), 'bob never saw frank/tab go unavailable');
    // Its session taken, n1 did not wait out drainHandoverSeconds: it leaves the cluster.
    await eventually(async () => {
      assert.deepEqual(
        (await cluster.status('n2')).nodes.map((n) => n.id),
        ['n2'],
      );
    }, 15_000);
  });
});
