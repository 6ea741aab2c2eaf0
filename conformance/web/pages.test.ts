// Black-box, the pages by plain HTTP: the admin page's login rules and its
// JSON, the chat page's files. browser.test.ts drives both in Chromium.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import WebSocket from 'ws';
import {
  DOMAIN,
  isMessage,
  ping,
  presence,
  sleep,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestNode,
} from '../helpers.ts';
import { addUsers } from '../mqtt-helpers.ts';
import { metric, NS_FRAMING, RawWs, scrape } from './web-helpers.ts';

interface Stats {
  node: { domain: string; startedAt: number; now: number };
  connections: {
    total: number;
    byProtocol: Record<string, number>;
    byTransport: { protocol: string; transport: string; count: number }[];
  };
  sessions: number;
  users: string[];
  rates: {
    intervalMs: number;
    samples: {
      t: number;
      messages: number;
      stanzasIn: number;
      stanzasOut: number;
      connections: number;
    }[];
  };
  errors: { time: number; source: string; text: string }[];
}

describe('web pages: admin login and stats, chat page files', function () {
  this.timeout(30_000);
  let node: TestNode;
  let base: string;
  const PW = 'pw-pages';
  const admin = uniqueName('boss');
  const user = uniqueName('user');
  const peer = uniqueName('peer');
  const basic = (u: string, p: string) => ({
    authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`,
  });
  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, { headers, redirect: 'manual' });
  const stats = async (): Promise<Stats> => {
    const r = await get('/admin/api/stats', basic(admin, PW));
    assert.equal(r.status, 200);
    return (await r.json()) as Stats;
  };

  before(async function () {
    this.timeout(60_000);
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
    // `admins` accepts both spellings; an entry that is no account name of this domain is ignored.
    node = await startNode({ config: `admins: [${admin}, 'nobody@elsewhere.example']\n` });
    base = `http://127.0.0.1:${node.ports.http}`;
    await addUsers(node, { [admin]: PW, [user]: PW, [peer]: PW });
  });
  afterEach(() => stopAllClients());
  after(() => node?.dispose());

  describe('admin login (HTTP Basic, RFC 7617)', () => {
    it('redirects /admin to /admin/ without asking for a login', async () => {
      const r = await get('/admin');
      assert.equal(r.status, 301);
      assert.equal(r.headers.get('location'), '/admin/');
    });

    it('asks for a login with 401 and WWW-Authenticate: Basic on every admin path', async () => {
      for (const path of ['/admin/', '/admin/admin.js', '/admin/api/stats']) {
        const r = await get(path);
        assert.equal(r.status, 401, path);
        assert.match(r.headers.get('www-authenticate') ?? '', /^Basic realm="Parley admin"/, path);
        assert.doesNotMatch(await r.text(), /<html|parley_|"users"/, `${path} leaks nothing`);
      }
    });

    it('answers 401 to a wrong password and to an unknown user, alike', async () => {
      const wrong = await get('/admin/', basic(admin, 'nope'));
      const unknown = await get('/admin/', basic('ghost-user', PW));
      assert.equal(wrong.status, 401);
      assert.equal(unknown.status, 401);
      assert.equal(await wrong.text(), await unknown.text());
    });

    it('answers 403 to a valid account that is not an admin', async () => {
      const r = await get('/admin/api/stats', basic(user, PW));
      assert.equal(r.status, 403);
      assert.equal(
        r.headers.get('www-authenticate'),
        null,
        'no new login prompt: the login was right',
      );
    });

    it('lets an admin in, as `name` or `name@domain`, with the page, its script and its JSON', async () => {
      const page = await get('/admin/', basic(admin, PW));
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
      assert.match(await page.text(), /<script src="admin.js"><\/script>/);
      const js = await get('/admin/admin.js', basic(`${admin}@${DOMAIN}`, PW));
      assert.equal(js.status, 200);
      assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
      assert.equal((await get('/admin/nothing-here', basic(admin, PW))).status, 404);
    });

    it('slows down repeated wrong passwords from one address (the shared login throttle)', async () => {
      // limits.authFreeFailures = 3: the 4th failure waits 250 ms, the 5th 500 ms.
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = Date.now();
        assert.equal((await get('/admin/', basic(admin, `wrong-${i}`))).status, 401);
        times.push(Date.now() - t0);
      }
      assert.ok(
        times[4] >= 450,
        `5th failure answered after ${times[4]} ms (all: ${times.join(', ')})`,
      );
      // A right password resets the count.
      assert.equal((await get('/admin/', basic(admin, PW))).status, 200);
      const t0 = Date.now();
      await get('/admin/', basic(admin, 'wrong-again'));
      assert.ok(Date.now() - t0 < 400, 'reset after a success');
      await get('/admin/', basic(admin, PW));
    });
  });

  describe('/admin/api/stats', () => {
    it('shows connections by protocol and transport, users online, and reads the same numbers as /metrics', async () => {
      const before = await stats();
      const c = await xmppClient({
        port: 0,
        service: `ws://127.0.0.1:${node.ports.http}/xmpp-websocket`,
        username: user,
        password: PW,
        resource: 'web',
      });
      await c.send(presence());
      await ping(c);
      const s = await stats();
      assert.equal(s.node.domain, DOMAIN);
      assert.equal(s.connections.byProtocol.xmpp, (before.connections.byProtocol.xmpp ?? 0) + 1);
      assert.ok(
        s.connections.byTransport.some(
          (t) => t.protocol === 'xmpp' && t.transport === 'ws' && t.count === 1,
        ),
        JSON.stringify(s.connections),
      );
      assert.ok(s.users.includes(`${user}@${DOMAIN}`), JSON.stringify(s.users));
      assert.equal(s.sessions, before.sessions + 1);
      const m = await scrape(base);
      assert.equal(
        s.connections.byProtocol.xmpp,
        metric(m, 'parley_connections', { protocol: 'xmpp' }),
        'same as the parley_connections gauge',
      );
      await c.stop();
      await sleep(200);
      const after = await stats();
      assert.ok(!after.users.includes(`${user}@${DOMAIN}`));
      assert.equal(after.connections.byProtocol.xmpp, before.connections.byProtocol.xmpp ?? 0);
    });

    it('keeps one sample a second and counts routed messages in them', async () => {
      const a = await xmppClient({
        port: node.ports.xmpp,
        username: user,
        password: PW,
        resource: 'rate',
      });
      const b = await xmppClient({
        port: node.ports.xmpp,
        username: peer,
        password: PW,
        resource: 'rate',
      });
      await b.send(presence());
      await ping(b);
      const since = Date.now();
      for (let i = 0; i < 5; i++)
        await a.send(xml('message', { to: b.bare, type: 'chat' }, xml('body', {}, `r${i}`)));
      for (let i = 0; i < 5; i++) await b.waitFor(isMessage({ from: a.jid }));
      await sleep(2200); // two sampler ticks
      const s = await stats();
      assert.equal(s.rates.intervalMs, 1000);
      const recent = s.rates.samples.filter((x) => x.t >= since);
      assert.ok(recent.length >= 2, `samples since the messages: ${recent.length}`);
      assert.equal(
        recent.reduce((n, x) => n + x.messages, 0),
        5,
        JSON.stringify(recent),
      );
      assert.ok(recent.reduce((n, x) => n + x.stanzasIn, 0) >= 5);
      const ts = s.rates.samples.map((x) => x.t);
      assert.deepEqual(
        ts,
        [...ts].sort((x, y) => x - y),
        'oldest first',
      );
      assert.ok(s.rates.samples.length <= 600, 'ten minutes at most');
    });

    it('lists recent errors, newest first: failed logins and connections closed for bad input', async () => {
      await assert.rejects(
        xmppClient({ port: node.ports.xmpp, username: user, password: 'wrong', resource: 'x' }),
      );
      const r = await RawWs.connect(`ws://127.0.0.1:${node.ports.http}/xmpp-websocket`);
      r.send(`<open xmlns='${NS_FRAMING}' to='${DOMAIN}' version='1.0'/>`);
      await r.next();
      r.send('<message><body>unclosed</message>');
      await r.waitClosed();
      await sleep(100);
      const s = await stats();
      const texts = s.errors.map((e) => `${e.source}: ${e.text}`);
      const closed = texts.indexOf('xmpp: connection closed: not-well-formed');
      const failed = texts.indexOf('xmpp: failed login');
      assert.ok(closed !== -1 && failed !== -1, texts.join('\n'));
      assert.ok(closed < failed, 'newest first');
      for (let i = 1; i < s.errors.length; i++) assert.ok(s.errors[i - 1].time >= s.errors[i].time);
      const m = await scrape(base);
      assert.ok(
        metric(m, 'parley_errors_total', { source: 'xmpp' }) >= 2,
        'counted in /metrics too',
      );
    });
  });

  describe('/chat/', () => {
    it('serves the page, its script, its config and the real @xmpp/client browser bundle', async () => {
      assert.equal((await get('/chat')).headers.get('location'), '/chat/');
      const page = await get('/chat/');
      assert.equal(page.status, 200);
      const html = await page.text();
      assert.match(html, /<script src="xmpp.min.js"><\/script>/);
      assert.match(html, /<script src="chat.js"><\/script>/);
      assert.match(
        page.headers.get('content-security-policy') ?? '',
        /connect-src 'self' ws: wss:/,
      );
      const bundle = await get('/chat/xmpp.min.js');
      assert.equal(bundle.status, 200);
      assert.match(bundle.headers.get('content-type') ?? '', /^text\/javascript/);
      const onDisk = readFileSync(
        createRequire(import.meta.url).resolve('@xmpp/client/dist/xmpp.min.js'),
      );
      assert.ok(
        Buffer.from(await bundle.arrayBuffer()).equals(onDisk),
        'byte for byte the installed package file',
      );
      const config = await (await get('/chat/config.json')).json();
      assert.deepEqual(config, { domain: DOMAIN, websocketPath: '/xmpp-websocket' });
      assert.equal((await get('/chat/package.json')).status, 404);
    });

    it('refuses other methods on the pages', async () => {
      const r = await fetch(`${base}/chat/`, { method: 'POST', body: 'x' });
      assert.equal(r.status, 405);
    });
  });
});
