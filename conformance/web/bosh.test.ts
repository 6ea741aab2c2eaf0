// Black-box: XMPP over BOSH [XEP-0206, XEP-0124] by raw HTTP requests against a
// spawned node: session creation, SASL, restart, bind, long polling, request
// ids, acknowledgements, errors for bad rid/sid, inactivity and terminate.
import assert from 'node:assert/strict';
import https from 'node:https';
import {
  DOMAIN,
  NS_SASL,
  NS_STREAM,
  NS_STREAMS_ERR,
  isMessage,
  sleep,
  startNode,
  stopAllClients,
  testCa,
  uniqueName,
  xml,
  xmppClient,
  type TestNode,
} from '../helpers.ts';
import {
  BoshClient,
  NS_HTTPBIND,
  NS_XBOSH,
  parseStrict,
  post,
  type BoshResponse,
} from './bosh-client.ts';

const PW = 'bosh-pw';
const ALLOWED_ORIGIN = 'http://allowed.example';
const CONFIG = `
web:
  maxBodySize: 8192
  allowedOrigins: ['${ALLOWED_ORIGIN}']
  bosh:
    inactivity: 5
    maxWait: 10
    maxRequestsPerSecond: 20
    polling: 2
`;

/** The terminal binding condition of a response, or undefined when it is not a terminate [XEP-0124 §17.2]. */
function terminated(r: BoshResponse): string | undefined {
  if (r.body?.attrs.type !== 'terminate') return undefined;
  return r.body.attrs.condition ?? '(none)';
}

const pingIq = (id: string) =>
  `<iq xmlns='jabber:client' type='get' id='${id}' to='${DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>`;

/** Settles within ms? Returns true when the promise is still pending after ms. */
async function stillPending(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await sleep(ms);
  return !settled;
}

describe('BOSH [XEP-0124, XEP-0206]', function () {
  this.timeout(30_000);
  let node: TestNode;
  let url: string;
  const user = uniqueName('bosh');
  const friend = uniqueName('tcp');

  before(async function () {
    this.timeout(60_000);
    node = await startNode({ config: CONFIG });
    url = `http://127.0.0.1:${node.ports.http}/http-bind`;
    await node.addUser(user, PW);
    await node.addUser(friend, PW);
  });
  after(async () => {
    await stopAllClients();
    await node?.dispose();
  });

  /** A logged-in, bound BOSH session (wait 2 s unless asked). */
  async function session(resource = uniqueName('r'), attrs: Record<string, string | number> = {}) {
    const c = new BoshClient(url);
    await c.create(attrs);
    const { jid } = await c.login(user, PW, resource);
    return { c, jid };
  }

  describe('session creation [XEP-0124 §7, XEP-0206 §3-4]', function () {
    it('the response carries sid, wait, hold, requests, polling, inactivity, ver, from, authid, ack, xmpp:version, restartlogic and the stream features', async () => {
      const c = new BoshClient(url);
      const r = await c.create({ wait: 60, hold: 1, ver: '1.6', ack: 1 });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-type'), 'text/xml; charset=utf-8'); // [XEP-0124 §7.1] no 'content' asked
      const b = r.body;
      assert.ok(b.is('body', NS_HTTPBIND), r.text);
      assert.equal(b.attrs.type, undefined, r.text);
      assert.match(b.attrs.sid, /^[0-9a-f]{32}$/); // [XEP-0124 §7.2] opaque, unpredictable
      assert.equal(b.attrs.wait, '10', 'wait is capped by web.bosh.maxWait'); // [XEP-0124 §7.2] ≤ requested
      assert.equal(b.attrs.hold, '1');
      assert.equal(b.attrs.requests, '2'); // [XEP-0124 §7.2] hold + 1
      assert.equal(b.attrs.polling, '2');
      assert.equal(b.attrs.inactivity, '5');
      assert.equal(b.attrs.ver, '1.6', 'the lower of the client and server versions'); // [XEP-0124 §7.2 'ver']
      assert.equal(b.attrs.from, DOMAIN);
      assert.equal(b.attrs.ack, String(c.rid)); // [XEP-0124 §7.2, §9.1] acknowledgements in use
      assert.match(b.attrs.authid, /^[0-9a-f]+$/); // [XEP-0206 §4] the stream id
      assert.equal(b.attrs['xmpp:version'], '1.0');
      assert.equal(b.attrs['xmpp:restartlogic'], 'true');
      assert.equal(b.attrs['xmlns:xmpp'], NS_XBOSH);
      const features = b.getChild('features', NS_STREAM); // parsed strictly: xmlns:stream is declared on <body/>
      assert.ok(features, r.text);
      const mechs = features
        .getChild('mechanisms', NS_SASL)
        ?.getChildren('mechanism')
        .map((m) => m.getText());
      assert.deepEqual(mechs, ['SCRAM-SHA-256', 'SCRAM-SHA-1'], 'no PLAIN over plain HTTP');
      assert.equal(features.getChild('starttls'), undefined, 'no STARTTLS over BOSH [XEP-0206 §4]');
    });

    it("honours the 'content' attribute for the Content-Type of every response [XEP-0124 §7.1]", async () => {
      const c = new BoshClient(url);
      const r = await c.create({ content: 'text/plain; charset=utf-8' });
      assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
      await c.login(user, PW, uniqueName('ct'));
      const r2 = await c.send(
        `<iq xmlns='jabber:client' type='get' id='p1' to='${DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>`,
      );
      assert.equal(r2.headers.get('content-type'), 'text/plain; charset=utf-8');
    });

    it('a domain not served → host-unknown [XEP-0124 §17.2]', async () => {
      const r = await new BoshClient(url).create({ to: 'elsewhere.example' });
      assert.equal(r.status, 200);
      assert.equal(terminated(r), 'host-unknown', r.text);
    });
  });

  describe('SASL, restart, bind [XEP-0206 §5]', function () {
    it('SCRAM-SHA-256 over plain HTTP, then restart (features with bind) and resource binding', async () => {
      const c = new BoshClient(url);
      await c.create();
      const { jid, restart } = await c.login(user, PW, 'laptop');
      assert.equal(jid, `${user}@${DOMAIN}/laptop`);
      // [XEP-0206 §5] the answer to the restart request carries the new stream's features
      const f = restart.body.getChild('features', NS_STREAM);
      assert.ok(f?.getChild('bind', 'urn:ietf:params:xml:ns:xmpp-bind'), restart.text);
    });

    it('a restart request before SASL success → bad-request, session over [XEP-0206 §5]', async () => {
      const c = new BoshClient(url);
      await c.create();
      const r = await c.send('', { 'xmpp:restart': 'true' });
      assert.equal(terminated(r), 'bad-request', r.text);
      assert.equal(terminated(await c.send()), 'item-not-found');
    });

    it('a wrong password → SASL failure in the body, the session goes on', async () => {
      const c = new BoshClient(url);
      await c.create();
      await assert.rejects(() => c.login(user, 'wrong-password'), /SASL failed/);
      const r = await c.send();
      assert.equal(terminated(r), undefined, r.text);
    });
  });

  describe('long polling and chat with a TCP user [XEP-0124 §4, §8]', function () {
    it('a held request is answered as soon as a message from a TCP user arrives', async () => {
      const { c, jid } = await session('held', { wait: 10 });
      const tcp = await xmppClient({
        port: node.ports.xmpp,
        username: friend,
        password: PW,
        resource: 'tcp',
      });
      const started = Date.now();
      const poll = c.send();
      assert.ok(
        await stillPending(poll, 500),
        'an empty request must be held while there is nothing to say',
      );
      await tcp.send(
        xml(
          'message',
          { to: jid, type: 'chat', id: 'm1' },
          xml('body', {}, 'hello over long poll'),
        ),
      );
      const r = await poll;
      assert.ok(Date.now() - started < 8000, 'answered on arrival, not after wait');
      const msg = r.body.getChild('message');
      assert.ok(msg, r.text);
      assert.equal(msg.getNS(), 'jabber:client');
      assert.equal(msg.attrs.from, tcp.jid);
      assert.equal(msg.getChildText('body'), 'hello over long poll');
    });

    it('a message sent over BOSH reaches the TCP user', async () => {
      const { c, jid } = await session('sender');
      const tcp = await xmppClient({
        port: node.ports.xmpp,
        username: friend,
        password: PW,
        resource: 'tcp2',
      });
      const r = await c.send(
        `<message xmlns='jabber:client' to='${tcp.jid}' type='chat' id='b1'><body>hi from BOSH</body></message>`,
      );
      assert.equal(terminated(r), undefined, r.text);
      const got = await tcp.waitFor(isMessage({ id: 'b1' }), 5000);
      assert.equal(got.attrs.from, jid);
      assert.equal(got.getChildText('body'), 'hi from BOSH');
    });

    it('with nothing to say, a request is answered with an empty <body/> after wait seconds [XEP-0124 §8]', async () => {
      const c = new BoshClient(url);
      await c.create({ wait: 1 });
      const started = Date.now();
      const r = await c.send();
      const took = Date.now() - started;
      assert.ok(took >= 900 && took < 4000, `answered after ${took} ms`);
      assert.equal(r.body.getChildElements().length, 0, r.text);
      assert.equal(r.body.attrs.type, undefined, r.text);
    });

    it('hold=1: a second request makes the server answer the held one at once [XEP-0124 §4, §8]', async () => {
      const { c } = await session('hold', { wait: 10 });
      const first = c.send();
      assert.ok(await stillPending(first, 300));
      const started = Date.now();
      const second = c.send(
        `<iq xmlns='jabber:client' type='get' id='ping-h' to='${DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>`,
      );
      const r1 = await first;
      assert.ok(
        Date.now() - started < 2000,
        'the older request is answered when the newer arrives',
      );
      assert.equal(terminated(r1), undefined, r1.text);
      await second; // held until the pong is there
      const pong = await c.waitFor((el) => el.name === 'iq' && el.attrs.id === 'ping-h');
      assert.equal(pong.attrs.type, 'result');
      assert.ok(Date.now() - started < 5000, 'the pong did not wait for wait=10');
    });
  });

  describe('request ids [XEP-0124 §14]', function () {
    it('requests arriving out of order are processed in rid order; a response acknowledges later rids [§14.2, §9.1]', async () => {
      const { c } = await session('order');
      const tcp = await xmppClient({
        port: node.ports.xmpp,
        username: friend,
        password: PW,
        resource: 'order',
      });
      const msg = (id: string) =>
        `<message xmlns='jabber:client' to='${tcp.jid}' type='chat' id='${id}'><body>${id}</body></message>`;
      const one = c.next(msg('o1'));
      const two = c.next(msg('o2'));
      const rid1 = c.rid - 1;
      const p2 = c.post(two); // rid+2 first: it waits for rid+1
      assert.ok(await stillPending(p2, 300), 'a request ahead of a missing rid waits');
      const r1 = await c.post(one);
      const a = await tcp.waitFor(isMessage({ type: 'chat' }), 5000);
      const b = await tcp.waitFor(isMessage({ type: 'chat' }), 5000);
      assert.deepEqual([a.attrs.id, b.attrs.id], ['o1', 'o2'], 'forwarded in rid order');
      assert.equal(
        r1.body.attrs.ack,
        String(rid1 + 1),
        'the answer to rid acknowledges rid+1 [§9.1]',
      );
      await p2;
    });

    it('a repeated rid gets the buffered response again, byte for byte [§14.3]', async () => {
      const { c } = await session('repeat');
      const text = c.next(
        `<iq xmlns='jabber:client' type='get' id='ping-r' to='${DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>`,
      );
      const r1 = await c.post(text);
      const pong = r1.body.getChild('iq');
      assert.equal(pong?.attrs.id, 'ping-r', r1.text);
      const r2 = await c.post(text);
      assert.equal(r2.status, 200);
      assert.equal(r2.text, r1.text);
      // and the session goes on
      const r3 = await c.send(
        `<iq xmlns='jabber:client' type='get' id='ping-r2' to='${DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>`,
      );
      assert.equal(r3.body.getChild('iq')?.attrs.id, 'ping-r2', r3.text);
    });

    it('a repeated rid still held: the old copy gets a recoverable error, the new one the answer [§14.3, §17.3]', async () => {
      const { c } = await session('reheld', { wait: 10 });
      const text = c.next();
      const old = c.post(text);
      assert.ok(await stillPending(old, 300));
      const again = c.post(text);
      const r1 = await old;
      assert.equal(r1.body.attrs.type, 'error', r1.text);
      assert.ok(await stillPending(again, 300), 'the repeat is held in its place');
      const next = c.send(); // the next rid makes the server answer the held one
      const r2 = await again;
      assert.equal(terminated(r2), undefined, r2.text);
      await c.send('', { type: 'terminate' });
      await next;
    });

    it('a rid beyond the window → terminate item-not-found, and the session is gone [§14.2]', async () => {
      const { c } = await session('window');
      c.rid += 2; // requests='2': rid+3 is out of the window
      const r = await c.send();
      assert.equal(r.status, 200);
      assert.equal(terminated(r), 'item-not-found', r.text);
      c.rid -= 3;
      assert.equal(terminated(await c.send()), 'item-not-found', 'no session any more');
    });

    it('an old rid whose response is no longer buffered → item-not-found [§14.3]', async () => {
      const { c } = await session('old');
      const first = c.next(pingIq('old-1'));
      await c.post(first);
      await c.send(pingIq('old-2'));
      await c.send(pingIq('old-3')); // requests='2' responses are kept: the first is gone now
      const r = await c.post(first);
      assert.equal(terminated(r), 'item-not-found', r.text);
    });

    it('a legacy client (no ver) gets the deprecated HTTP 404 instead [§17.1]', async () => {
      const c = new BoshClient(url);
      const created = await c.create({ ver: undefined });
      assert.equal(created.body.attrs.ver, '1.11', 'the server still says what it supports');
      c.rid += 5;
      const r = await c.send();
      assert.equal(r.status, 404);
      assert.equal(terminated(r), 'item-not-found');
    });

    it("acknowledgements: a client ack below the last answered rid gets an immediate 'report' [§9.2]", async () => {
      const { c } = await session('acks', { ack: 1, wait: 10 });
      const acked = c.rid; // every response so far was received
      const r1 = await c.send(pingIq('v1'), { ack: acked });
      assert.equal(r1.body.getChild('iq')?.attrs.id, 'v1', r1.text);
      assert.equal(terminated(r1), undefined, r1.text);
      const started = Date.now();
      // claim the answer to the previous request never arrived: the server reports it at once
      const r2 = await c.send('', { ack: acked });
      assert.ok(Date.now() - started < 3000, 'answered at once, not after wait');
      assert.equal(r2.body.attrs.report, String(acked + 1), r2.text);
      assert.match(r2.body.attrs.time ?? '', /^\d+$/);
    });
  });

  describe('errors [XEP-0124 §17]', function () {
    it('an unknown sid → terminate item-not-found [§17.2]', async () => {
      const r = await post(url, `<body xmlns='${NS_HTTPBIND}' rid='12345' sid='no-such-session'/>`);
      assert.equal(r.status, 200);
      assert.equal(terminated(r), 'item-not-found', r.text);
    });

    const malformed: [string, string][] = [
      ['not well-formed', `<body xmlns='${NS_HTTPBIND}' rid='1' to='${DOMAIN}'`],
      ['not XML at all', 'hello'],
      ['wrong root namespace', `<body xmlns='jabber:client' rid='1' to='${DOMAIN}'/>`],
      ['no rid', `<body xmlns='${NS_HTTPBIND}' to='${DOMAIN}'/>`],
      ['rid not a number', `<body xmlns='${NS_HTTPBIND}' rid='abc' to='${DOMAIN}'/>`],
      ['rid above 2^53-1', `<body xmlns='${NS_HTTPBIND}' rid='9007199254740992' to='${DOMAIN}'/>`],
      ['hold not a number', `<body xmlns='${NS_HTTPBIND}' rid='1' hold='x' to='${DOMAIN}'/>`],
    ];
    for (const [name, text] of malformed) {
      it(`malformed session request (${name}) → bad-request [§17.1, §17.2]`, async () => {
        const r = await post(url, text);
        assert.equal(r.status, 400, r.text); // no 'ver' we could read: the deprecated HTTP code as well
        assert.equal(terminated(r), 'bad-request', r.text);
      });
    }

    it('a malformed request in a session (not a legacy client) → 200 terminate bad-request, session over', async () => {
      const c = new BoshClient(url);
      await c.create();
      const r = await post(url, `<body xmlns='${NS_HTTPBIND}' sid='${c.sid}' rid='oops'/>`);
      assert.equal(r.status, 200);
      assert.equal(terminated(r), 'bad-request', r.text);
      assert.equal(terminated(await c.send()), 'item-not-found');
    });

    it('restricted XML inside the body → the stream error of TCP, as remote-stream-error [XEP-0206 §6, RFC6120 11.1]', async () => {
      const { c } = await session('restricted');
      const r = await c.send(
        `<message xmlns='jabber:client' to='${user}@${DOMAIN}'><!-- no comments --><body>x</body></message>`,
      );
      assert.equal(terminated(r), 'remote-stream-error', r.text);
      const err = r.body.getChild('error', NS_STREAM);
      assert.ok(err?.getChild('restricted-xml', NS_STREAMS_ERR), r.text);
    });

    it('a body larger than web.maxBodySize → HTTP 413 policy-violation', async () => {
      const c = new BoshClient(url);
      await c.create();
      const big = `<message xmlns='jabber:client' to='${user}@${DOMAIN}'><body>${'x'.repeat(9000)}</body></message>`;
      const r = await c.send(big);
      assert.equal(r.status, 413);
      assert.equal(terminated(r), 'policy-violation', r.text);
      assert.equal(
        terminated(await c.send()),
        'item-not-found',
        'the session with a cut request is over',
      );
    });

    it('more simultaneous requests than requests=2 → policy-violation [§11]', async () => {
      const c = new BoshClient(url);
      await c.create({ wait: 10 });
      const held = c.post(c.next()); // rid+1: held
      assert.ok(await stillPending(held, 200));
      const second = c.next(); // rid+2: still in flight
      const third = c.post(c.next()); // rid+3: waits for rid+2
      assert.ok(await stillPending(third, 200));
      const r2 = await c.post(second); // three unanswered requests
      assert.equal(terminated(r2), 'policy-violation', r2.text);
      assert.equal(terminated(await held), 'policy-violation');
      assert.equal(terminated(await third), 'policy-violation');
    });

    it('more than maxRequestsPerSecond requests → policy-violation', async () => {
      const c = new BoshClient(url);
      await c.create();
      const text = c.next();
      await c.post(text);
      // 25 repeats of a buffered rid at once: well over 20 in one second
      const answers = await Promise.all(Array.from({ length: 25 }, () => post(url, text)));
      const conditions = answers.map(terminated);
      assert.ok(conditions.includes('policy-violation'), conditions.join(','));
    });

    it('a polling session (hold=0) that polls faster than polling=2 s → policy-violation [§12]', async () => {
      const c = new BoshClient(url);
      const created = await c.create({ hold: 0 });
      assert.equal(created.body.attrs.hold, '0');
      assert.ok(
        Number(created.body.attrs.inactivity) > 2,
        'a polling session gets more inactivity time [§12]',
      );
      const r1 = await c.send();
      assert.equal(terminated(r1), undefined, r1.text);
      const r2 = await c.send();
      assert.equal(terminated(r2), 'policy-violation', r2.text);
    });
  });

  describe('end of session', function () {
    it('no request for longer than inactivity (5 s) ends the session [§10]', async function () {
      this.timeout(20_000);
      const { c, jid } = await session('idle');
      const tcp = await xmppClient({
        port: node.ports.xmpp,
        username: friend,
        password: PW,
        resource: 'idle',
      });
      const ping = (id?: string) =>
        xml('iq', { type: 'get', to: jid, id }, xml('ping', { xmlns: 'urn:xmpp:ping' }));
      await tcp.send(ping('alive'));
      await c.waitFor(
        (el) => el.name === 'iq' && el.getChild('ping', 'urn:xmpp:ping') !== undefined,
        5000,
        'ping while alive',
      );
      await sleep(6500); // nothing held, no request: inactivity is 5 s
      const r = await c.send();
      assert.equal(terminated(r), 'item-not-found', r.text); // as if the session never existed
      const answer = await tcp.request(ping());
      assert.equal(answer.attrs.type, 'error', `the BOSH resource is gone: ${answer}`);
    });

    it('a stream error (resource taken over from TCP) ends the session as remote-stream-error [XEP-0206 §6]', async () => {
      const resource = uniqueName('same');
      const { c } = await session(resource);
      await xmppClient({ port: node.ports.xmpp, username: user, password: PW, resource });
      const r = await c.send(); // nothing was held when the stream ended: this request is told
      assert.equal(terminated(r), 'remote-stream-error', r.text);
      assert.ok(r.body.getChild('error', NS_STREAM)?.getChild('conflict', NS_STREAMS_ERR), r.text);
      assert.equal(terminated(await c.send()), 'item-not-found', 'told once, then gone');
    });

    it("type='terminate' with unavailable presence ends the session [§13]", async () => {
      const { c } = await session('bye');
      const r = await c.send(`<presence xmlns='jabber:client' type='unavailable'/>`, {
        type: 'terminate',
      });
      assert.equal(r.status, 200);
      assert.equal(r.body.attrs.type, 'terminate', r.text);
      assert.equal(r.body.attrs.condition, undefined, 'a clean end has no condition');
      assert.equal(terminated(await c.send()), 'item-not-found');
    });
  });

  describe('HTTP [XEP-0124 §5]', function () {
    it('CORS: a preflight from an allowed origin is answered, a POST carries Access-Control-Allow-Origin', async () => {
      const pre = await fetch(url, {
        method: 'OPTIONS',
        headers: { origin: ALLOWED_ORIGIN, 'access-control-request-method': 'POST' },
      });
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN);
      assert.match(pre.headers.get('access-control-allow-methods') ?? '', /POST/);
      const c = new BoshClient(url);
      const r = await post(url, c.wrap({ rid: 77, to: DOMAIN, ver: '1.6', wait: 1 }), {
        origin: ALLOWED_ORIGIN,
      });
      assert.equal(r.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN);
      assert.ok(r.body.attrs.sid);
    });

    it('a request from an origin not allowed → 403, no session', async () => {
      const r = await fetch(url, {
        method: 'POST',
        body: `<body xmlns='${NS_HTTPBIND}' rid='5' to='${DOMAIN}' ver='1.6'/>`,
        headers: { origin: 'http://evil.example' },
      });
      assert.equal(r.status, 403);
      assert.equal(r.headers.get('access-control-allow-origin'), null);
    });

    it('over HTTPS the session is secure: PLAIN is offered too', async () => {
      const text = new BoshClient(url).wrap({
        rid: 9,
        to: DOMAIN,
        ver: '1.6',
        wait: 1,
        'xmpp:version': '1.0',
      });
      const ca = await testCa();
      const raw = await new Promise<string>((resolve, reject) => {
        const req = https.request(
          {
            host: '127.0.0.1',
            port: node.ports.https,
            path: '/http-bind',
            method: 'POST',
            ca, // the suite's test CA: verification on
          },
          (res) => {
            let data = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (data += d));
            res.on('end', () => resolve(data));
          },
        );
        req.on('error', reject);
        req.end(text);
      });
      const mechs = parseStrict(raw)
        .getChild('features', NS_STREAM)
        ?.getChild('mechanisms', NS_SASL)
        ?.getChildren('mechanism')
        .map((m) => m.getText());
      assert.deepEqual(mechs, ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'], raw);
    });

    it('GET → 405 (BOSH requests are POSTs)', async () => {
      const r = await fetch(url);
      assert.equal(r.status, 405);
      assert.match(r.headers.get('allow') ?? '', /POST/);
    });
  });
});
