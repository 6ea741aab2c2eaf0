// Black-box attacks on the HTTP(S) listener (issue 20): exact bytes over raw
// sockets, then proof that the node still serves HTTP, XMPP and MQTT.
import assert from 'node:assert/strict';
import net from 'node:net';
import type { MqttClient } from 'mqtt';
import WebSocket from 'ws';
import {
  closeAllRaw,
  DOMAIN,
  ping,
  RawConn,
  sleep,
  startNode,
  stopAllClients,
  uniqueName,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import { addUsers, endAllMqtt, mqttConnect, nextMessage } from '../mqtt-helpers.ts';

const NS_HTTPBIND = 'http://jabber.org/protocol/httpbind';

/** The port a listener reported in the node's log line `msg`. */
function loggedPort(node: TestNode, msg: string, pick: (rec: any) => number | undefined): number {
  for (const line of node.log) {
    if (!line.includes(`"${msg}"`)) continue;
    const port = pick(JSON.parse(line));
    if (port) return port;
  }
  throw new Error(`no port in a "${msg}" log line:\n${node.log.join('\n')}`);
}

/** A plain TCP socket from a chosen loopback address (each 127.x.y.z is another client address). */
function connectFrom(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    open.add(s);
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}
const open = new Set<net.Socket>();

/** Resolves true when the socket is closed by the server within `ms`. */
function closedWithin(s: net.Socket, ms: number): Promise<boolean> {
  if (s.destroyed || s.readableEnded) return Promise.resolve(true);
  s.resume(); // read on, so that the server's FIN is seen
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** One raw request over a fresh socket (TLS for the HTTPS port); the whole response text once the server closes or `until` matches. */
async function raw(
  port: number,
  bytes: string,
  opts: { tls?: boolean; until?: RegExp } = {},
): Promise<string> {
  const c = await RawConn.connect(port, { directTls: opts.tls });
  c.send(bytes);
  const got = await c.waitFor(opts.until ?? /^HTTP\/1\.1 \d{3} [^\r]*\r\n[\s\S]*?\r\n\r\n/, 10_000);
  c.destroy();
  return got;
}

const status = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);

describe('security: the HTTP(S) listener (issue 20)', function () {
  this.timeout(30_000);
  const PW = 'pw-http-sec';
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');

  after(async () => {
    closeAllRaw();
    for (const s of open) s.destroy();
    await stopAllClients();
    await endAllMqtt();
  });

  describe('malformed requests get 400 and never end the process (item 1)', () => {
    let node: TestNode;
    let xmpp: TestClient;
    let mqttSub: MqttClient;
    let mqttPub: MqttClient;
    let mqttPort: number;

    before(async function () {
      this.timeout(60_000);
      node = await startNode();
      await addUsers(node, { [alice]: PW, [bob]: PW });
      mqttPort = loggedPort(node, 'mqtt listening', (r) => r.mqtt?.tcp);
      xmpp = await xmppClient({ port: node.ports.xmpp, username: alice, password: PW });
      mqttSub = await mqttConnect(mqttPort, {
        username: bob,
        password: PW,
        clientId: uniqueName('sub'),
      });
      mqttPub = await mqttConnect(mqttPort, {
        username: alice,
        password: PW,
        clientId: uniqueName('pub'),
      });
      await mqttSub.subscribeAsync('sec/http', { qos: 1 });
    });
    after(() => node?.dispose());

    /** The node still answers HTTP, the XMPP session pings, the MQTT session delivers. */
    const stillServing = async (tag: string) => {
      assert.equal(
        (await fetch(`http://127.0.0.1:${node.ports.http}/healthz`)).status,
        200,
        `${tag}: /healthz`,
      );
      await ping(xmpp);
      const got = nextMessage(mqttSub, 'sec/http', 5000);
      await mqttPub.publishAsync('sec/http', tag, { qos: 1 });
      assert.equal((await got).payload, tag);
    };

    // [RFC9112 3.2] a Host header with an invalid field value gets 400
    it('GET /healthz with `Host: a b` gets 400, over HTTP and HTTPS; the node keeps serving', async () => {
      const bad = 'GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n';
      assert.equal(status(await raw(node.ports.http, bad)), 400);
      await stillServing('host-http');
      assert.equal(status(await raw(node.ports.https, bad, { tls: true })), 400);
      await stillServing('host-https');
    });

    // [RFC9112 3.2.1] the origin-form `//[` is a path, never an authority to parse
    it('the request target `//[` gets 400 or 404, never a crash', async () => {
      for (const target of ['//[', '//[::1', '/%', '//a:b@[x]/']) {
        const text = await raw(
          node.ports.http,
          `GET ${target} HTTP/1.1\r\nHost: localhost\r\n\r\n`,
        );
        assert.ok([400, 404].includes(status(text)), `${target}: ${text}`);
        const tls = await raw(
          node.ports.https,
          `GET ${target} HTTP/1.1\r\nHost: localhost\r\n\r\n`,
          { tls: true },
        );
        assert.ok([400, 404].includes(status(tls)), `${target} over TLS: ${tls}`);
      }
      // absolute-form with a bad authority, asterisk-form and authority-form [RFC9112 3.2.2-3.2.4]
      for (const target of ['http://[/healthz', '*', 'localhost:80']) {
        assert.equal(
          status(await raw(node.ports.http, `GET ${target} HTTP/1.1\r\nHost: localhost\r\n\r\n`)),
          400,
          target,
        );
      }
      await stillServing('target');
    });

    it('a WebSocket upgrade with `Host: a b` gets 400; one reset right after its request is harmless', async () => {
      const upgrade = (host: string) =>
        `GET /xmpp-websocket HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n`;
      assert.equal(status(await raw(node.ports.http, upgrade('a b'))), 400);
      assert.equal(status(await raw(node.ports.https, upgrade('a b'), { tls: true })), 400);
      // The refusal is written to a socket the client already reset.
      for (let i = 0; i < 20; i++) {
        const s = await connectFrom(node.ports.http, '127.0.0.1');
        s.write(upgrade('a b').replace('xmpp\r\n', 'nothing-we-speak\r\n'));
        s.resetAndDestroy();
      }
      await sleep(200);
      await stillServing('upgrade');
    });

    it("what Node's HTTP parser refuses gets 400 and a close (clientError)", async () => {
      const text = await raw(
        node.ports.http,
        'GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n',
      );
      assert.equal(status(text), 400);
      await stillServing('parser');
    });
  });

  describe('TLS is decided by the socket, never by the request target (item 4)', () => {
    let node: TestNode;
    before(async function () {
      this.timeout(60_000);
      node = await startNode();
    });
    after(() => node?.dispose());

    const sessionRequest = (target: string) => {
      const body = `<body xmlns='${NS_HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0' ver='1.11' rid='1000' to='${DOMAIN}' wait='5' hold='1'/>`;
      return `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    };

    // [RFC6120 6.4.1] PLAIN only over TLS; [XEP-0206] BOSH over plain HTTP is not TLS whatever the target says
    it('`POST https://127.0.0.1/http-bind` to the plain port is plain: no PLAIN offered', async () => {
      const text = await raw(node.ports.http, sessionRequest('https://127.0.0.1/http-bind'), {
        until: /<\/body>|<body[^>]*\/>/,
      });
      assert.equal(status(text), 200, text);
      assert.match(text, /<mechanism>SCRAM-SHA-256<\/mechanism>/);
      assert.doesNotMatch(
        text,
        /<mechanism>PLAIN<\/mechanism>/,
        'PLAIN offered over cleartext HTTP',
      );
    });

    it('`POST http://127.0.0.1/http-bind` to the HTTPS port is TLS: PLAIN offered', async () => {
      const text = await raw(node.ports.https, sessionRequest('http://127.0.0.1/http-bind'), {
        tls: true,
        until: /<\/body>|<body[^>]*\/>/,
      });
      assert.match(text, /<mechanism>PLAIN<\/mechanism>/);
    });

    // [XEP-0156] the announced endpoints follow the socket's scheme
    it('host-meta announces ws:// and http:// to an absolute https:// target on the plain port', async () => {
      const text = await raw(
        node.ports.http,
        'GET https://127.0.0.1/.well-known/host-meta.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n',
        {
          until: /\}\]\}|\]\}$/,
        },
      );
      assert.match(text, /"href":"ws:\/\/127\.0\.0\.1\/xmpp-websocket"/);
      assert.doesNotMatch(text, /wss:|https:/);
    });
  });

  describe('time limits: TLS handshake, headers, BOSH body, keep-alive (item 6)', () => {
    let node: TestNode;
    before(async function () {
      this.timeout(60_000);
      node = await startNode({
        config:
          'web:\n  tlsHandshakeTimeoutMs: 1000\n  headersTimeoutMs: 1500\n  requestTimeoutMs: 8000\n  bodyTimeoutMs: 1500\n  keepAliveTimeoutMs: 1000\n',
      });
    });
    after(() => node?.dispose());

    it('a TLS handshake that never starts is dropped at tlsHandshakeTimeoutMs', async () => {
      const s = await connectFrom(node.ports.https, '127.0.0.1');
      assert.equal(
        await closedWithin(s, 8000),
        true,
        'socket still open long after the handshake timeout',
      );
    });

    it('headers dribbled past headersTimeoutMs get 408 and a close', async () => {
      const c = await RawConn.connect(node.ports.http);
      c.send('GET /healthz HTTP/1.1\r\nHost: localhost\r\n');
      const t = setInterval(() => c.send('X-Slow: 1\r\n'), 300);
      try {
        assert.equal(status(await c.waitFor(/^HTTP\/1\.1 \d{3}[^\r]*\r\n/, 8000)), 408);
        await c.waitClosed(5000);
      } finally {
        clearInterval(t);
      }
    });

    // [XEP-0124 §17.2] policy-violation; [RFC9110 15.5.9] 408
    it('a BOSH body dribbled at a few bytes a second is cut at bodyTimeoutMs with 408 and a terminate body', async () => {
      const c = await RawConn.connect(node.ports.http);
      c.send(
        'POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: 500\r\n\r\n<body ',
      );
      const t = setInterval(() => c.send(' '), 250);
      try {
        const head = await c.waitFor(/^HTTP\/1\.1 \d{3}[\s\S]*?\r\n\r\n/, 8000);
        assert.equal(status(head), 408, head);
        const body = await c.waitFor(/<body[^>]*\/>/, 3000);
        assert.match(body, /type=['"]terminate['"]/);
        assert.match(body, /condition=['"]policy-violation['"]/);
        await c.waitClosed(5000);
      } finally {
        clearInterval(t);
      }
    });

    it('an idle keep-alive socket is closed after keepAliveTimeoutMs', async () => {
      const c = await RawConn.connect(node.ports.http);
      c.send('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
      assert.equal(status(await c.waitFor(/ok\n/, 5000)), 200);
      await c.waitClosed(4000);
    });

    it('a socket that sends nothing at all is closed after headersTimeoutMs, over HTTP and after a TLS handshake', async () => {
      const s = await connectFrom(node.ports.http, '127.0.0.1');
      assert.equal(await closedWithin(s, 8000), true);
      const t = await RawConn.connect(node.ports.https, { directTls: true });
      await t.waitClosed(8000);
    });
  });

  describe('socket caps at accept time (item 6)', () => {
    let node: TestNode;
    before(async function () {
      this.timeout(60_000);
      node = await startNode({ config: 'web:\n  maxSocketsPerIp: 3\n  maxSockets: 6\n' });
    });
    after(() => node?.dispose());

    const get = async (s: net.Socket): Promise<string> => {
      let got = '';
      s.on('data', (d) => (got += d));
      s.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
      for (let i = 0; i < 100 && !/ok\n/.test(got); i++) await sleep(50);
      return got;
    };

    it('past maxSocketsPerIp a socket from that address is closed at once, on HTTP and HTTPS alike; others still get in', async () => {
      const held = [
        await connectFrom(node.ports.http, '127.0.0.2'),
        await connectFrom(node.ports.https, '127.0.0.2'),
        await connectFrom(node.ports.http, '127.0.0.2'),
      ];
      await sleep(100);
      for (const port of [node.ports.http, node.ports.https]) {
        const over = await connectFrom(port, '127.0.0.2');
        assert.equal(
          await closedWithin(over, 5000),
          true,
          `a 4th socket from one address to ${port} stays open`,
        );
      }
      // another address is not affected
      assert.match(await get(await connectFrom(node.ports.http, '127.0.0.3')), /^HTTP\/1\.1 200/);
      // a freed slot is usable again
      held[0].destroy();
      await sleep(300);
      assert.match(await get(await connectFrom(node.ports.http, '127.0.0.2')), /^HTTP\/1\.1 200/);
      for (const s of held) s.destroy();
      for (const s of open) s.destroy();
      await sleep(300);
    });

    it('past maxSockets in total a socket from any address is closed at once', async () => {
      const held: net.Socket[] = [];
      for (let i = 0; i < 6; i++) held.push(await connectFrom(node.ports.http, `127.0.1.${i + 1}`));
      await sleep(100);
      const over = await connectFrom(node.ports.http, '127.0.2.1');
      assert.equal(await closedWithin(over, 5000), true, 'a socket past the total stays open');
      for (const s of held) s.destroy();
      await sleep(300);
      assert.equal((await fetch(`http://127.0.0.1:${node.ports.http}/healthz`)).status, 200);
    });
  });

  describe('/metrics token and listener; Origin checks for WebSocket and BOSH', () => {
    let node: TestNode;
    const TOKEN = 'sec-test-token-0123456789';
    before(async function () {
      this.timeout(60_000);
      node = await startNode({
        config: `web:\n  metricsToken: ${TOKEN}\n  metrics: { host: 127.0.0.1, port: 0 }\n  allowedOrigins: ['https://good.example']\n`,
      });
    });
    after(() => node?.dispose());

    // [RFC6750 2.1, 3]
    it('/metrics is served only on web.metrics and wants the bearer token', async () => {
      const port = loggedPort(node, 'parley node ready', (r) => r.web?.metrics);
      assert.equal(
        (await fetch(`http://127.0.0.1:${node.ports.http}/metrics`)).status,
        404,
        'metrics on the public listener',
      );
      const none = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(none.status, 401);
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer /);
      assert.equal(
        (
          await fetch(`http://127.0.0.1:${port}/metrics`, {
            headers: { authorization: 'Bearer wrong-token-0123456789' },
          })
        ).status,
        401,
      );
      const ok = await fetch(`http://127.0.0.1:${port}/metrics`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(ok.status, 200);
      assert.match(await ok.text(), /^# HELP parley_/m);
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      assert.equal(
        (await fetch(`http://127.0.0.1:${port}/chat/`)).status,
        404,
        'pages on the metrics listener',
      );
    });

    // [RFC6455 10.2] the server checks Origin against its list
    it('a WebSocket from an Origin not in web.allowedOrigins gets 403; a listed one and none get through', async () => {
      const open = (origin?: string) =>
        new Promise<number>((resolve) => {
          const ws = new WebSocket(
            `ws://127.0.0.1:${node.ports.http}/xmpp-websocket`,
            'xmpp',
            origin ? { origin } : {},
          );
          ws.on('upgrade', () => {
            resolve(101);
            ws.terminate();
          });
          ws.on('unexpected-response', (_req, res) => {
            resolve(res.statusCode ?? 0);
            ws.terminate();
          });
          ws.on('error', () => {});
        });
      assert.equal(await open('https://evil.example'), 403);
      assert.equal(await open('https://good.example'), 101);
      assert.equal(await open(), 101);
    });

    it('BOSH CORS echoes only listed origins, never *', async () => {
      const url = `http://127.0.0.1:${node.ports.http}/http-bind`;
      const good = await fetch(url, {
        method: 'OPTIONS',
        headers: { origin: 'https://good.example' },
      });
      assert.equal(good.status, 204);
      assert.equal(good.headers.get('access-control-allow-origin'), 'https://good.example');
      const bad = await fetch(url, {
        method: 'OPTIONS',
        headers: { origin: 'https://evil.example' },
      });
      assert.equal(bad.status, 403);
      assert.equal(bad.headers.get('access-control-allow-origin'), null);
    });
  });
});
