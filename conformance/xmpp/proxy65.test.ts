// Black-box XEP-0065 SOCKS5 Bytestreams proxy: two @xmpp/client users
// negotiate a stream through proxy.localhost, connect to its SOCKS5 listener
// with real TCP sockets, and relay bytes both ways; then the limits and the
// hostile inputs a new listener must survive.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  disco,
  DOMAIN,
  nextId,
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
import { socksConnect, streamHash, tcpConnect, type ByteReader } from '../socks5-client.ts';
import { metric, scrape } from '../web/web-helpers.ts';

const NS = 'http://jabber.org/protocol/bytestreams';
const PROXY = `proxy.${DOMAIN}`;
const PW = 'pw-proxy';
const MB = 1024 * 1024;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('XEP-0065 SOCKS5 bytestreams proxy', function () {
  this.timeout(30_000);
  let node: TestNode;
  let port = 0;
  let a: TestClient;
  let b: TestClient;
  let c: TestClient;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const carol = uniqueName('carol');
  const open: ByteReader[] = [];

  const activate = (by: TestClient, sid: string, target: string) =>
    by.request(
      xml(
        'iq',
        { type: 'set', to: PROXY },
        xml('query', { xmlns: NS, sid }, xml('activate', {}, target)),
      ),
    );
  /** target connects first, then the requester, then the requester activates [XEP-0065 6] */
  const pair = async (req: TestClient, target: TestClient) => {
    const sid = nextId('sid');
    const hash = streamHash(sid, req.jid, target.jid);
    const t = await socksConnect(port, hash);
    const r = await socksConnect(port, hash);
    open.push(t.r, r.r);
    assert.equal(t.code, 0);
    assert.equal(r.code, 0);
    return { sid, hash, t: t.r, r: r.r, activate: () => activate(req, sid, target.jid) };
  };

  before(async function () {
    this.timeout(60_000);
    node = await startNode({
      config:
        'modules:\n  proxy65:\n    enabled: true\n    port: 0\n    publicHost: 127.0.0.1\n    handshakeTimeoutSeconds: 2\n    activationTimeoutSeconds: 5\n' +
        '    maxConnectionsPerIp: 6\n    maxStreamsPerUser: 1\n    maxBytesPerStream: 4194304\n    bandwidthPerUser: 2097152\n',
    });
    for (const u of [alice, bob, carol]) await node.addUser(u, PW);
    [a, b, c] = await Promise.all(
      [alice, bob, carol].map((username) =>
        xmppClient({ port: node.ports.xmpp, username, password: PW }),
      ),
    );
  });
  afterEach(async () => {
    for (const r of open.splice(0)) r.sock.destroy();
    await Promise.all(
      [a, b, c].map((x) =>
        x.request(xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' }))),
      ),
    );
  });
  after(async () => {
    await stopAllClients();
    await node?.dispose();
  });

  it('the server lists proxy.localhost; its disco#info says proxy/bytestreams; the streamhost query gives host and port [XEP-0065 6; XEP-0030]', async () => {
    const items = await disco(a, 'items', DOMAIN);
    assert.ok(
      items.getChildren('item').some((i) => i.attrs.jid === PROXY),
      items.toString(),
    );
    const info = await disco(a, 'info', PROXY);
    assert.ok(
      info
        .getChildren('identity')
        .some((i) => i.attrs.category === 'proxy' && i.attrs.type === 'bytestreams'),
    );
    assert.ok(info.getChildren('feature').some((f) => f.attrs.var === NS));
    const r = await a.request(xml('iq', { type: 'get', to: PROXY }, xml('query', { xmlns: NS })));
    const sh = r.getChild('query', NS)!.getChild('streamhost')!;
    assert.equal(sh.attrs.jid, PROXY);
    assert.equal(sh.attrs.host, '127.0.0.1');
    port = Number(sh.attrs.port);
    assert.ok(port > 0);
  });

  it('two clients negotiate over XMPP and relay 1 MiB one way and an answer back through the proxy [XEP-0065 5.3, 6]', async () => {
    const sid = nextId('sid');
    let target: ByteReader | undefined;
    // bob (target) answers the offer: connects to the stream host and says which one he used
    b.xmpp.iqCallee.set(NS, 'query', async (ctx: { stanza: Element }) => {
      const q = ctx.stanza.getChild('query', NS)!;
      const sh = q.getChild('streamhost')!;
      const conn = await socksConnect(
        Number(sh.attrs.port),
        streamHash(q.attrs.sid, ctx.stanza.attrs.from, b.jid),
      );
      assert.equal(conn.code, 0);
      target = conn.r;
      open.push(conn.r);
      return xml(
        'query',
        { xmlns: NS, sid: q.attrs.sid },
        xml('streamhost-used', { jid: sh.attrs.jid }),
      );
    });
    const offer = await a.request(
      xml(
        'iq',
        { type: 'set', to: b.jid },
        xml(
          'query',
          { xmlns: NS, sid, mode: 'tcp' },
          xml('streamhost', { jid: PROXY, host: '127.0.0.1', port: String(port) }),
        ),
      ),
    );
    assert.equal(offer.attrs.type, 'result', offer.toString());
    assert.equal(offer.getChild('query', NS)!.getChild('streamhost-used')!.attrs.jid, PROXY);
    const req = await socksConnect(port, streamHash(sid, a.jid, b.jid));
    open.push(req.r);
    assert.equal(req.code, 0);
    const payload = randomBytes(MB);
    req.r.sock.write(payload.subarray(0, 1000)); // before activation: held, not relayed early
    const act = await activate(a, sid, b.jid);
    assert.equal(act.attrs.type, 'result', act.toString());
    req.r.sock.write(payload.subarray(1000));
    assert.equal(sha256(await target!.read(MB)), sha256(payload));
    target!.sock.write('thanks');
    assert.equal((await req.r.read(6)).toString(), 'thanks');
    target!.sock.end();
    await req.r.closed; // one side closed: the proxy closes the other
  });

  it('activation errors: unknown stream → item-not-found, one side connected → not-allowed, no sid → bad-request [XEP-0065 6]', async () => {
    const unknown = await activate(a, 'no-such-sid', b.jid);
    assert.deepEqual(stanzaError(unknown), { type: 'cancel', condition: 'item-not-found' });
    const sid = nextId('sid');
    const t = await socksConnect(port, streamHash(sid, a.jid, b.jid));
    open.push(t.r);
    assert.deepEqual(stanzaError(await activate(a, sid, b.jid)), {
      type: 'cancel',
      condition: 'not-allowed',
    });
    // bob cannot activate alice's stream: the hash binds the requester's JID
    const r = await socksConnect(port, streamHash(sid, a.jid, b.jid));
    open.push(r.r);
    assert.equal(stanzaError(await activate(b, sid, b.jid)).condition, 'item-not-found');
    const bad = await a.request(
      xml(
        'iq',
        { type: 'set', to: PROXY },
        xml('query', { xmlns: NS }, xml('activate', {}, b.jid)),
      ),
    );
    assert.equal(stanzaError(bad).condition, 'bad-request');
  });

  it('a third connection with the same hash is refused; per-user stream limit → resource-constraint [XEP-0065 implementation notes]', async () => {
    const p = await pair(a, b);
    const third = await socksConnect(port, p.hash);
    open.push(third.r);
    assert.equal(third.code, 2, 'connection not allowed');
    assert.equal((await p.activate()).attrs.type, 'result');
    const q = await pair(a, c);
    assert.deepEqual(stanzaError(await q.activate()), {
      type: 'wait',
      condition: 'resource-constraint',
    });
    p.t.sock.destroy();
    await p.r.closed;
    const again = await activate(a, q.sid, c.jid);
    assert.equal(again.attrs.type, 'result', 'once the first stream ended, the second activates');
  });

  it('lenient: a CONNECT with a port other than 0 and the hash in upper case pairs with the lower-case one (docs/leniency.md)', async () => {
    const sid = nextId('sid');
    const hash = streamHash(sid, c.jid, b.jid);
    const t = await socksConnect(port, hash.toUpperCase(), 7777);
    const r = await socksConnect(port, hash);
    open.push(t.r, r.r);
    assert.deepEqual([t.code, r.code], [0, 0]);
    assert.equal((await activate(c, sid, b.jid)).attrs.type, 'result');
    r.r.sock.write('x');
    assert.equal((await t.r.read(1)).toString(), 'x');
  });

  it('bandwidth per user: 3.5 MiB at 2 MiB/s (one second of burst) takes at least 0.6 s; past maxBytesPerStream both sides close', async () => {
    const p = await pair(c, a);
    assert.equal((await p.activate()).attrs.type, 'result');
    const data = randomBytes(3.5 * MB);
    const started = Date.now();
    p.r.sock.write(data);
    assert.equal(sha256(await p.t.read(data.length)), sha256(data));
    assert.ok(Date.now() - started >= 600, `took ${Date.now() - started} ms`);
    p.r.sock.write(randomBytes(MB)); // 4.5 MiB > 4 MiB
    const got = await p.t.rest();
    assert.ok(got.length < MB, `relayed ${got.length} bytes past the cap`);
    await p.r.closed;
  });

  it('hostile input: wrong version, no acceptable method, UDP ASSOCIATE, IPv4 address, a hash that is not SHA-1 hex, over 64 KiB before activation [RFC1928 3, 6]', async () => {
    const v4 = await tcpConnect(port);
    v4.sock.write(Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0]));
    await v4.rest();
    const noAuth = await tcpConnect(port);
    noAuth.sock.write(Buffer.from([5, 1, 2])); // username/password only
    assert.deepEqual([...(await noAuth.read(2))], [5, 0xff]);
    noAuth.sock.destroy();
    for (const [req, code] of [
      [Buffer.from([5, 3, 0, 3, 40, ...Buffer.from('a'.repeat(40)), 0, 0]), 7],
      [Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 80]), 8],
      [Buffer.from([5, 1, 0, 3, 9, ...Buffer.from('localhost'), 0, 80]), 2],
    ] as const) {
      const s = await tcpConnect(port);
      s.sock.write(Buffer.from([5, 1, 0]));
      await s.read(2);
      s.sock.write(req);
      const reply = await s.read(2);
      assert.deepEqual([...reply], [5, code], `request ${req.subarray(0, 5).toString('hex')}`);
      s.sock.destroy();
    }
    // more than 64 KiB before activation: closed, not buffered
    const eager = await socksConnect(port, streamHash(nextId('sid'), a.jid, b.jid));
    open.push(eager.r);
    const sent = Date.now();
    eager.r.sock.write(Buffer.alloc(70 * 1024));
    await eager.r.rest(8000);
    assert.ok(Date.now() - sent < 3000, 'closed for the bytes, not by the 5 s activation timeout');
  });

  it('connections per IP are capped at accept; a silent connection is closed after the handshake timeout, an unactivated one after the activation timeout', async () => {
    const silent: ByteReader[] = [];
    for (let i = 0; i < 5; i++) silent.push(await tcpConnect(port));
    const waitingOne = await socksConnect(port, streamHash(nextId('sid'), a.jid, b.jid)); // the 6th: handshake done, never activated
    open.push(waitingOne.r, ...silent);
    const accepted = Date.now();
    const over = await tcpConnect(port);
    assert.equal((await over.rest(5000)).length, 0, 'nothing written');
    assert.ok(
      Date.now() - accepted < 1500,
      'the 7th from 127.0.0.1 is closed at accept, not by the 2 s handshake timeout',
    );
    const t0 = Date.now();
    await Promise.all(silent.map((s) => s.rest(10_000)));
    assert.ok(Date.now() - t0 < 8000);
    await waitingOne.r.rest(10_000);
    // all closed: a new connection is accepted again
    const fresh = await socksConnect(port, streamHash(nextId('sid'), a.jid, b.jid));
    open.push(fresh.r);
    assert.equal(fresh.code, 0);
    // each close is counted with its reason on /metrics
    const m = await scrape(`http://127.0.0.1:${node.ports.http}`);
    const closed = (reason: string) =>
      metric(m, 'parley_connections_closed_total', { protocol: 'socks5', reason });
    assert.ok(closed('refused') >= 1, 'refused at accept');
    assert.ok(closed('handshake-timeout') >= 5);
    assert.ok(closed('activation-timeout') >= 1);
    assert.ok(
      closed('byte-cap') >= 1 && closed('early-bytes') >= 1 && closed('refused-request') >= 3,
    );
    assert.ok(metric(m, 'parley_connections', { protocol: 'socks5' }) >= 1, 'the open one');
  });
});
