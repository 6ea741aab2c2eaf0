// Black-box, the HTTP listener of one node: XMPP over WebSocket [RFC7395]
// with @xmpp/client and with raw frames, MQTT over WebSocket with the `mqtt`
// package, connection discovery [XEP-0156], health and /metrics.
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import WebSocket from 'ws';
import {
  DOMAIN,
  isMessage,
  NS_BIND,
  NS_ROSTER,
  NS_SASL,
  NS_STREAM,
  NS_STREAMS_ERR,
  ping,
  presence,
  rosterGet,
  rosterItem,
  ScramClient,
  sleep,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type Element,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import { addUsers, nextMessage } from '../mqtt-helpers.ts';
import {
  metric,
  NS_FRAMING,
  parseFrame,
  parsePrometheus,
  RawWs,
  scrape,
  type Node,
} from './web-helpers.ts';

describe('web listener: WebSocket transports, discovery, health, metrics', function () {
  this.timeout(30_000);
  let node: TestNode;
  let base: string;
  let wsUrl: string;
  const PW = 'pw-web';
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const device = uniqueName('device');
  const raws = new Set<RawWs>();
  const mqtts = new Set<MqttClient>();

  /** @xmpp/client over WebSocket; it creates `new WebSocket(url, ['xmpp'])` from the global. */
  const wsLogin = async (username: string, resource: string): Promise<TestClient> => {
    const c = await xmppClient({ port: 0, service: wsUrl, username, password: PW, resource });
    await c.send(presence());
    await ping(c);
    return c;
  };
  const tcpLogin = async (username: string, resource: string): Promise<TestClient> => {
    const c = await xmppClient({ port: node.ports.xmpp, username, password: PW, resource });
    await c.send(presence());
    await ping(c);
    return c;
  };
  const raw = async (protocols?: string[]): Promise<RawWs> => {
    const r = await RawWs.connect(wsUrl, protocols);
    raws.add(r);
    return r;
  };
  const mqttWs = (opts: mqtt.IClientOptions): Promise<MqttClient> => {
    const c = mqtt.connect(`ws://127.0.0.1:${node.ports.http}/mqtt`, {
      reconnectPeriod: 0,
      connectTimeout: 5000,
      protocolVersion: 4,
      ...opts,
    });
    mqtts.add(c);
    return new Promise((resolve, reject) => {
      c.once('connect', () => resolve(c));
      c.once('error', reject);
      c.once('close', () => reject(new Error('closed before CONNACK')));
    });
  };
  const chat = (to: string, body: string, id?: string) =>
    xml('message', { to, type: 'chat', id }, xml('body', {}, body));

  before(async function () {
    this.timeout(60_000);
    // Node 20 has no WebSocket global; @xmpp/websocket uses the global one.
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
    node = await startNode();
    base = `http://127.0.0.1:${node.ports.http}`;
    wsUrl = `ws://127.0.0.1:${node.ports.http}/xmpp-websocket`;
    await addUsers(node, { [alice]: PW, [bob]: PW, [device]: PW });
  });
  afterEach(async () => {
    for (const r of raws) r.terminate();
    raws.clear();
    await Promise.all([...mqtts].map((c) => c.endAsync(true).catch(() => {})));
    mqtts.clear();
    await stopAllClients();
    await sleep(100); // let the unbinds reach the core before the next test
  });
  after(() => node?.dispose());

  describe('XMPP over WebSocket with @xmpp/client', () => {
    it('logs in and chats both ways with a user on TCP', async () => {
      const a = await wsLogin(alice, 'browser');
      const b = await tcpLogin(bob, 'desk');
      assert.equal(a.jid, `${alice}@${DOMAIN}/browser`);
      await a.send(chat(b.bare, 'hello from a WebSocket', 'w1'));
      const got = await b.waitFor(
        isMessage({ from: a.jid, type: 'chat' }),
        3000,
        'message from the ws user',
      );
      assert.equal(got.getChildText('body'), 'hello from a WebSocket');
      assert.equal(got.attrs.id, 'w1');
      await b.send(chat(a.bare, 'hello from TCP', 't1'));
      const back = await a.waitFor(
        isMessage({ from: b.jid, type: 'chat' }),
        3000,
        'message from the tcp user',
      );
      assert.equal(back.getChildText('body'), 'hello from TCP');
    });

    it('gets and sets the roster [RFC6121 2.1.3, 2.3]', async () => {
      const a = await wsLogin(alice, 'roster');
      const set = await a.request(
        xml(
          'iq',
          { type: 'set' },
          xml('query', { xmlns: NS_ROSTER }, xml('item', { jid: `${bob}@${DOMAIN}`, name: 'Bob' })),
        ),
      );
      assert.equal(set.attrs.type, 'result', set.toString());
      const r = await a.request(rosterGet());
      assert.equal(r.attrs.type, 'result');
      assert.equal(rosterItem(r, `${bob}@${DOMAIN}`)?.attrs.name, 'Bob', r.toString());
    });

    it('answers a ping [XEP-0199]', async () => {
      const a = await wsLogin(alice, 'ping');
      const r = await a.request(
        xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })),
      );
      assert.equal(r.attrs.type, 'result');
    });

    it('closes cleanly: the client sends <close/>, gets <close/> back, the socket ends [RFC7395 3.6]', async () => {
      const a = await wsLogin(alice, 'close');
      let disconnect: { clean: boolean } | undefined;
      a.xmpp.on('disconnect', (info: { clean: boolean }) => (disconnect = info));
      // stop() sends <close/> and resolves with the server's <close/> (its parser's 'end')
      const reply = (await a.xmpp.stop()) as unknown as Element | undefined;
      assert.ok(reply?.is('close', NS_FRAMING), `server answered ${reply?.toString()}`);
      await a.closed;
      assert.deepEqual(
        disconnect?.clean,
        true,
        'the WebSocket closed cleanly (close frames both ways)',
      );
      assert.equal(a.xmpp.status, 'offline');
    });
  });

  describe('RFC 7395 framing, raw frames', () => {
    const open = (to = DOMAIN) => `<open xmlns='${NS_FRAMING}' to='${to}' version='1.0'/>`;

    it('refuses a handshake without the xmpp subprotocol with HTTP 400 [RFC7395 3.1]', async () => {
      await assert.rejects(
        RawWs.connect(wsUrl, ['chat']),
        (err: { status?: number }) => err.status === 400,
      );
      await assert.rejects(
        RawWs.connect(wsUrl, []),
        (err: { status?: number }) => err.status === 400,
      );
    });

    it('answers <open/> to an unknown host with <open/>, host-unknown, <close/>, then closes [RFC7395 3.3.2]', async () => {
      const r = await raw();
      r.send(open('other.example'));
      const opened = parseFrame(await r.next());
      assert.equal(opened.name, 'open');
      assert.equal(opened.uri, NS_FRAMING);
      const err = parseFrame(await r.next());
      assert.equal(err.name, 'error');
      assert.equal(err.uri, NS_STREAM);
      assert.ok(err.child('host-unknown', NS_STREAMS_ERR), `not host-unknown: ${r.frames[1]}`);
      const close = parseFrame(await r.next());
      assert.equal(close.name, 'close');
      assert.equal(close.uri, NS_FRAMING);
      await r.waitClosed();
    });

    it("replies <close/> to the client's <close/> and closes the WebSocket [RFC7395 3.6]", async () => {
      const r = await raw();
      r.send(open());
      assert.equal(parseFrame(await r.next()).name, 'open');
      assert.equal(parseFrame(await r.next()).name, 'features');
      r.send(`<close xmlns='${NS_FRAMING}'/>`);
      const close = parseFrame(await r.next());
      assert.equal(close.name, 'close');
      assert.equal(close.uri, NS_FRAMING);
      assert.equal(await r.waitClosed(), 1000);
    });

    it('sends one complete element per message, each declaring its own prefixes, through a whole login [RFC7395 3.4]', async () => {
      const r = await raw();
      r.send(open());
      const opened = parseFrame(await r.next());
      assert.deepEqual(
        [opened.name, opened.attrs.from, opened.attrs.version],
        ['open', DOMAIN, '1.0'],
      );
      assert.ok(opened.attrs.id, 'stream id');
      let features = parseFrame(await r.next());
      assert.equal(features.uri, NS_STREAM);
      assert.equal(
        features.prefix,
        'stream',
        'features as <stream:features> with xmlns:stream declared in the frame',
      );
      assert.equal(features.child('starttls'), undefined, 'no STARTTLS on WebSocket');
      const mechs = features.child('mechanisms', NS_SASL)!.children.map((m) => m.text);
      assert.ok(mechs.includes('SCRAM-SHA-256'), mechs.join(' '));
      assert.ok(!mechs.includes('PLAIN'), 'no PLAIN on an unencrypted WebSocket [RFC6120 6.4.1]');
      // SCRAM-SHA-256, one element per message
      const scram = new ScramClient('SHA-256', alice, PW);
      r.send(
        `<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${Buffer.from(scram.clientFirst()).toString('base64')}</auth>`,
      );
      const challenge = parseFrame(await r.next());
      assert.equal(challenge.name, 'challenge', r.frames.at(-1));
      r.send(
        `<response xmlns='${NS_SASL}'>${Buffer.from(scram.clientFinal(Buffer.from(challenge.text, 'base64').toString())).toString('base64')}</response>`,
      );
      const success = parseFrame(await r.next());
      assert.equal(success.name, 'success');
      assert.ok(
        scram.verifyServerFinal(Buffer.from(success.text, 'base64').toString()),
        'server signature',
      );
      // [RFC7395 3.5] stream restart: a new <open/>
      r.send(open());
      assert.equal(parseFrame(await r.next()).name, 'open');
      features = parseFrame(await r.next());
      assert.ok(features.child('bind', NS_BIND), 'bind offered after the restart');
      r.send(
        `<iq type='set' id='b1' xmlns='jabber:client'><bind xmlns='${NS_BIND}'><resource>raw</resource></bind></iq>`,
      );
      const bound = parseFrame(await r.next());
      assert.equal(bound.child('bind', NS_BIND)?.child('jid')?.text, `${alice}@${DOMAIN}/raw`);
      r.send(
        `<iq type='get' id='p1' to='${DOMAIN}' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`,
      );
      const pong = parseFrame(await r.next());
      assert.deepEqual([pong.name, pong.attrs.type, pong.attrs.id], ['iq', 'result', 'p1']);
      // Every frame of the conversation stood alone (parseFrame throws otherwise).
      const parsed: Node[] = r.frames.map(parseFrame);
      assert.equal(parsed.length, r.frames.length);
    });

    it('closes with a stream error when the client sends bad XML in a frame', async () => {
      const r = await raw();
      r.send(open());
      await r.next();
      await r.next();
      r.send('<message><body>unclosed</message>');
      const err = parseFrame(await r.next());
      assert.equal(err.name, 'error');
      assert.ok(err.child('not-well-formed', NS_STREAMS_ERR), r.frames.at(-1));
      assert.equal(parseFrame(await r.next()).name, 'close');
      await r.waitClosed();
    });
  });

  describe('MQTT over WebSocket', () => {
    it('round-trips a QoS 1 message on a plain topic', async () => {
      const c = await mqttWs({ username: device, password: PW, clientId: 'ws-qos1' });
      const topic = `web/${uniqueName('t')}`;
      await c.subscribeAsync(topic, { qos: 1 });
      const got = nextMessage(c, topic);
      await c.publishAsync(topic, 'over a WebSocket', { qos: 1 }); // resolves on PUBACK
      const m = await got;
      assert.equal(m.payload, 'over a WebSocket');
      assert.equal(m.qos, 1);
    });

    it('refuses a bad password with CONNACK return code 4, as on TCP', async () => {
      await assert.rejects(
        mqttWs({ username: device, password: 'wrong', clientId: 'ws-bad' }),
        /Bad username or password/i,
      );
    });

    it('chats with an XMPP user through chat/{user} both ways (docs/mqtt-mapping.md §4)', async () => {
      const dev = await mqttWs({ username: device, password: PW, clientId: 'ws-sensor' });
      await dev.subscribeAsync(`chat/${device}`, { qos: 1 });
      const h = await tcpLogin(alice, 'desk');
      const toDevice = nextMessage(dev, `chat/${device}`);
      await h.send(chat(`${device}@${DOMAIN}`, 'lights on', 'x1'));
      const json = JSON.parse((await toDevice).payload);
      assert.deepEqual([json.from, json.id, json.body], [`${alice}@${DOMAIN}`, 'x1', 'lights on']);
      await dev.publishAsync(`chat/${alice}`, JSON.stringify({ body: 'done', id: 'm1' }), {
        qos: 1,
      });
      const msg = await h.waitFor(
        isMessage({ from: `${device}@${DOMAIN}/ws-sensor`, type: 'chat' }),
        3000,
        'message from the ws device',
      );
      assert.equal(msg.getChildText('body'), 'done');
    });
  });

  describe('discovery and health', () => {
    it('host-meta (XRD) lists the WebSocket and BOSH endpoints [XEP-0156 3]', async () => {
      const r = await fetch(`${base}/.well-known/host-meta`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^application\/xrd\+xml/);
      const xrd = parseFrame((await r.text()).replace(/^<\?xml[^>]*\?>/, ''));
      assert.equal(xrd.uri, 'http://docs.oasis-open.org/ns/xri/xrd-1.0');
      const links = Object.fromEntries(
        xrd.children.filter((c) => c.name === 'Link').map((l) => [l.attrs.rel, l.attrs.href]),
      );
      assert.equal(
        links['urn:xmpp:alt-connections:websocket'],
        `ws://127.0.0.1:${node.ports.http}/xmpp-websocket`,
      );
      assert.equal(
        links['urn:xmpp:alt-connections:xbosh'],
        `http://127.0.0.1:${node.ports.http}/http-bind`,
      );
    });

    it('host-meta.json lists the same endpoints', async () => {
      const r = await fetch(`${base}/.well-known/host-meta.json`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      const { links } = (await r.json()) as { links: { rel: string; href: string }[] };
      const byRel = Object.fromEntries(links.map((l) => [l.rel, l.href]));
      assert.equal(
        byRel['urn:xmpp:alt-connections:websocket'],
        `ws://127.0.0.1:${node.ports.http}/xmpp-websocket`,
      );
      assert.equal(
        byRel['urn:xmpp:alt-connections:xbosh'],
        `http://127.0.0.1:${node.ports.http}/http-bind`,
      );
    });

    it('the announced WebSocket endpoint works', async () => {
      const { links } = (await (await fetch(`${base}/.well-known/host-meta.json`)).json()) as {
        links: { rel: string; href: string }[];
      };
      const href = links.find((l) => l.rel === 'urn:xmpp:alt-connections:websocket')!.href;
      const c = await xmppClient({
        port: 0,
        service: href,
        username: bob,
        password: PW,
        resource: 'discovered',
      });
      await ping(c);
    });

    it('/healthz answers 200, /readyz answers ready JSON', async () => {
      const h = await fetch(`${base}/healthz`);
      assert.equal(h.status, 200);
      const r = await fetch(`${base}/readyz`);
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), { ready: true, store: true, cluster: true });
    });

    it('answers 404 for an unknown path', async () => {
      assert.equal((await fetch(`${base}/no-such-thing`)).status, 404);
    });
  });

  describe('/metrics', () => {
    it('parses as Prometheus text with the documented families', async () => {
      const m = await scrape(base);
      const expect: Record<string, string> = {
        parley_connections: 'gauge',
        parley_logins_total: 'counter',
        parley_connections_closed_total: 'counter',
        parley_stanzas_total: 'counter',
        parley_messages_total: 'counter',
        parley_delivery_latency_seconds: 'histogram',
        parley_store_operation_seconds: 'histogram',
        parley_errors_total: 'counter',
        parley_nodejs_eventloop_lag_seconds: 'gauge',
        parley_process_resident_memory_bytes: 'gauge',
      };
      for (const [name, type] of Object.entries(expect))
        assert.equal(m.get(name)?.type, type, `${name} should be a ${type}`);
    });

    // The parser above must be able to fail: malformed exposition, one row each.
    const bad: [string, string][] = [
      ['no final newline', '# TYPE a counter\na 1'],
      ['sample outside its family', '# TYPE a counter\nb 1\n'],
      ['bad value', '# TYPE a gauge\na one\n'],
      ['unquoted label', '# TYPE a gauge\na{x=1} 1\n'],
      ['bad escape', '# TYPE a gauge\na{x="\\q"} 1\n'],
      ['series twice', '# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n'],
      ['TYPE after samples', '# TYPE a gauge\na 1\n# TYPE a gauge\n'],
      ['unknown type', '# TYPE a thing\na 1\n'],
      ['histogram without +Inf', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
      [
        'histogram not cumulative',
        '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      ],
    ];
    for (const [what, text] of bad) {
      it(`the strict parser refuses: ${what}`, () => assert.throws(() => parsePrometheus(text)));
    }
    it('the strict parser accepts a well-formed exposition', () => {
      const f = parsePrometheus(
        '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n# TYPE c counter\nc_total{a="x\\"y"} 1\n',
      );
      assert.equal(metric(f, 'h', {}, 'h_count'), 2);
      assert.equal(f.get('c')?.samples[0].labels.a, 'x"y');
    });

    it('counters move when traffic flows: logins, stanzas, messages, connections by transport', async () => {
      const ws = (m: Awaited<ReturnType<typeof scrape>>) =>
        metric(m, 'parley_connections', { protocol: 'xmpp', transport: 'ws' });
      const before = await scrape(base);
      const a = await wsLogin(alice, 'metrics');
      const b = await tcpLogin(bob, 'metrics');
      for (let i = 0; i < 3; i++) await a.send(chat(b.bare, `m${i}`));
      for (let i = 0; i < 3; i++) await b.waitFor(isMessage({ from: a.jid }), 3000, `message ${i}`);
      const during = await scrape(base);
      assert.equal(ws(during), ws(before) + 1, 'the XMPP WebSocket counted under transport="ws"');
      await assert.rejects(
        xmppClient({
          port: 0,
          service: wsUrl,
          username: alice,
          password: 'wrong',
          resource: 'bad',
        }),
      );
      const later = await scrape(base);
      const d = (family: string, labels: Record<string, string>, sample = family) =>
        metric(later, family, labels, sample) - metric(before, family, labels, sample);
      assert.ok(
        d('parley_logins_total', { protocol: 'xmpp', result: 'ok' }) >= 2,
        'two successful logins',
      );
      assert.ok(
        d('parley_logins_total', { protocol: 'xmpp', result: 'failed' }) >= 1,
        'one failed login',
      );
      assert.ok(
        d('parley_stanzas_total', { protocol: 'xmpp', direction: 'in' }) >= 3 + 4,
        'stanzas in: 3 messages, presences, pings',
      );
      assert.ok(
        d('parley_stanzas_total', { protocol: 'xmpp', direction: 'out' }) >= 3,
        'stanzas out',
      );
      assert.ok(
        d('parley_messages_total', { event: 'routed', kind: 'message' }) >= 3,
        'routed messages',
      );
      assert.ok(
        d('parley_messages_total', { event: 'delivered', kind: 'message' }) >= 3,
        'delivered messages',
      );
      assert.ok(
        d('parley_messages_total', { event: 'archived', kind: 'message' }) >= 3,
        'archived messages',
      );
      assert.ok(
        d('parley_delivery_latency_seconds', {}, 'parley_delivery_latency_seconds_count') >= 3,
        'latency observed per delivery',
      );
      await a.stop();
      // The server sees the close a moment later.
      let after = await scrape(base);
      for (let i = 0; i < 20 && ws(after) !== ws(before); i++)
        after = await sleep(100).then(() => scrape(base));
      assert.equal(ws(after), ws(before), 'a closed WebSocket is no longer counted');
    });
  });
});
