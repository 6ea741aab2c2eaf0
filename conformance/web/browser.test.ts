// A real browser: Debian's Chromium driven by playwright-core (never a
// downloaded browser) opens the chat page, logs in over XMPP-over-WebSocket
// with the @xmpp/client browser bundle and chats with a TCP user; opens the
// admin page and watches the connection count move; manages accounts,
// sessions and rooms from the admin page and checks each action on the wire.
// Screenshots go to .test-artifacts/. scripts/test.sh installs the `chromium` package when
// /usr/bin/chromium is missing.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import {
  createClient,
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
import { join, MUC, say } from '../muc-helpers.ts';
import { addUsers } from '../mqtt-helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '.test-artifacts',
);

describe('in Chromium: the chat page and the admin page', function () {
  this.timeout(60_000);
  let node: TestNode;
  let base: string;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const PW = 'pw-browser';
  const admin = uniqueName('admin');
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');

  /** A new page in its own context; page errors and console errors (CSP violations included) fail the test. */
  const open = async (
    opts: Parameters<Browser['newContext']>[0] = {},
  ): Promise<{ page: Page; problems: string[] }> => {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 }, ...opts });
    contexts.push(ctx);
    const page = await ctx.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/401 \(Unauthorized\)/.test(m.text()))
        problems.push(`console: ${m.text()}`);
    });
    return { page, problems };
  };
  const shot = (page: Page, name: string) =>
    page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `${CHROMIUM} is missing: run scripts/test.sh (it installs Debian's chromium) or apt-get install chromium`,
      );
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket; // for @xmpp/client in Node 20
    const started = startNode({ config: `admins: [${admin}]\n` });
    // launch() starts Chromium with a fresh temporary --user-data-dir of its own.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 30_000,
    });
    node = await started;
    base = `http://127.0.0.1:${node.ports.http}`;
    await addUsers(node, { [admin]: PW, [alice]: PW, [bob]: PW });
  });
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((c) => c.close().catch(() => {})));
    await stopAllClients();
  });
  after(async () => {
    await browser?.close();
    await node?.dispose();
  });

  it('chat page: logs in over WebSocket and exchanges messages with a TCP user', async () => {
    const bobTcp = await xmppClient({
      port: node.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'desk',
    });
    await bobTcp.send(presence());
    await ping(bobTcp);

    const { page, problems } = await open();
    await page.goto(`${base}/chat/`);
    assert.equal(await page.title(), 'Parley web chat');
    await page.fill('#username', alice);
    await page.fill('#password', PW);
    await shot(page, 'chat-login.png');
    await page.click('#login');
    // 30 s: under the parallel suite on two cores Chromium's first SCRAM login has taken over 10 s.
    await page
      .waitForSelector('#chat:not([hidden])', { timeout: 30_000 })
      .catch(async (e: Error) => {
        const status = await page.textContent('#status').catch(() => '?');
        throw new Error(`${e.message}\nstatus: ${status}\nproblems: ${problems.join('; ')}`);
      });
    assert.match(
      (await page.textContent('#status')) ?? '',
      new RegExp(`online as ${alice}@${DOMAIN}`),
    );
    const fullJid = (await page.textContent('#whoami')) ?? '';
    assert.match(fullJid, new RegExp(`^${alice}@${DOMAIN}/web-`));

    // browser → TCP
    await page.fill('#to', bob);
    await page.fill('#body', 'hello from Chromium');
    await page.click('#send');
    const got = await bobTcp.waitFor(
      isMessage({ from: fullJid, type: 'chat' }),
      5000,
      'message from the browser',
    );
    assert.equal(got.getChildText('body'), 'hello from Chromium');

    // TCP → browser, to the bare JID: the page sent available presence, so it gets it.
    await bobTcp.send(
      xml(
        'message',
        { to: `${alice}@${DOMAIN}`, type: 'chat' },
        xml('body', {}, 'hello back from TCP <b>not bold</b>'),
      ),
    );
    const li = page.locator('#messages li.in', { hasText: 'hello back from TCP' });
    await li.waitFor({ timeout: 5000 });
    assert.equal(
      await li.locator('.body').textContent(),
      'hello back from TCP <b>not bold</b>',
      'shown as text, not markup',
    );
    assert.match((await li.locator('.who').textContent()) ?? '', new RegExp(`^${bob}@${DOMAIN}`));
    await shot(page, 'chat.png');

    // A wrong password is refused and said so on the page.
    const second = await open();
    await second.page.goto(`${base}/chat/`);
    await second.page.fill('#username', alice);
    await second.page.fill('#password', 'wrong');
    await second.page.click('#login');
    await second.page.waitForFunction(
      () => /Login failed/.test(document.getElementById('error')?.textContent ?? ''),
      null,
      { timeout: 10_000 },
    );
    assert.match((await second.page.textContent('#error')) ?? '', /not-authorized/);
    assert.deepEqual(problems, []);
  });

  it('admin page: needs a login, then shows the connection count change live', async () => {
    // Without credentials the browser gets the 401 challenge and shows nothing of the page.
    const anonymous = await open();
    await assert.rejects(anonymous.page.goto(`${base}/admin/`), /ERR_INVALID_AUTH_CREDENTIALS/);
    assert.equal((await anonymous.page.request.get(`${base}/admin/api/stats`)).status(), 401);

    const { page, problems } = await open({ httpCredentials: { username: admin, password: PW } });
    const res = await page.goto(`${base}/admin/`);
    assert.equal(res?.status(), 200);
    await page.waitForFunction(
      () => /updated/.test(document.getElementById('status')?.textContent ?? ''),
      null,
      { timeout: 10_000 },
    );
    const count = async () => Number(await page.textContent('#conn-total'));
    const before = await count();

    // A client connects over WebSocket; the page (polling every 2 s) shows it.
    const c = await xmppClient({
      port: 0,
      service: `ws://127.0.0.1:${node.ports.http}/xmpp-websocket`,
      username: alice,
      password: PW,
      resource: 'watched',
    });
    await c.send(presence());
    const peer = await xmppClient({
      port: node.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'peer',
    });
    await peer.send(presence());
    await page.waitForFunction(
      (n) => Number(document.getElementById('conn-total')?.textContent) === n,
      before + 2,
      { timeout: 6000 },
    );
    await page.locator('#users li', { hasText: `${alice}@${DOMAIN}` }).waitFor({ timeout: 6000 });
    assert.equal(await page.textContent('#conn-xmpp'), String(before + 2));

    // Some traffic for the chart, then a screenshot once it is drawn.
    for (let i = 0; i < 20; i++)
      await c.send(
        xml('message', { to: `${bob}@${DOMAIN}`, type: 'chat' }, xml('body', {}, `tick ${i}`)),
      );
    await ping(c);
    await sleep(2500);
    await page.waitForSelector('#rates polyline[data-series="messages"]', { timeout: 6000 });
    await shot(page, 'admin.png');

    await c.stop();
    await peer.stop();
    await page.waitForFunction(
      (n) => Number(document.getElementById('conn-total')?.textContent) === n,
      before,
      { timeout: 6000 },
    );
    assert.deepEqual(problems, []);
  });

  it('admin page: add an account (it logs in), its detail (roster, sessions, offline count), kick, reset password, remove; rooms and per-protocol charts', async () => {
    const { page, problems } = await open({ httpCredentials: { username: admin, password: PW } });
    await page.goto(`${base}/admin/`);
    const toast = (re: RegExp) =>
      page.waitForFunction(
        (src) => new RegExp(src).test(document.getElementById('toast')?.textContent ?? ''),
        re.source,
        { timeout: 10_000 },
      );

    // add: the form → user.add over the admin API; the new account logs in over TCP
    const fresh = uniqueName('fresh');
    await page.fill('#new-username', fresh);
    await page.fill('#new-password', 'first-pw');
    await page.click('#add-button');
    await toast(new RegExp(`account ${fresh} added`));
    const f = await xmppClient({
      port: node.ports.xmpp,
      username: fresh,
      password: 'first-pw',
      resource: 'laptop',
    });
    await f.send(presence());
    await f.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'query',
          { xmlns: 'jabber:iq:roster' },
          xml('item', { jid: `${alice}@${DOMAIN}`, name: 'Alice' }),
        ),
      ),
    );
    // an offline message waits for bob
    await f.send(
      xml('message', { to: `${bob}@${DOMAIN}`, type: 'chat' }, xml('body', {}, 'for later')),
    );

    // the same name again: the API's conflict, shown on the page
    await page.fill('#new-username', fresh);
    await page.fill('#new-password', 'x');
    await page.click('#add-button');
    await toast(/exists/);

    // detail of bob: one offline message
    await page.fill('#account-filter', bob);
    await page.click(`#accounts tr[data-user="${bob}"] button[data-action="details"]`);
    await page.waitForFunction(
      () => document.getElementById('detail-offline')?.textContent === '1',
      null,
      { timeout: 10_000 },
    );

    // detail of the new account: its roster and its session
    await page.fill('#account-filter', fresh);
    await page.click(`#accounts tr[data-user="${fresh}"] button[data-action="details"]`);
    await page.waitForFunction(
      (u) => document.getElementById('detail-user')?.textContent === u,
      `${fresh}@${DOMAIN}`,
      { timeout: 10_000 },
    );
    assert.equal(await page.textContent('#detail-roster-size'), '1');
    assert.equal(await page.textContent('#detail-session-count'), '1');
    assert.match(
      (await page.textContent('#detail-roster')) ?? '',
      new RegExp(`${alice}@${DOMAIN}.*Alice.*none`),
    );
    assert.match(
      (await page.textContent('#detail-sessions')) ?? '',
      new RegExp(`${fresh}@${DOMAIN}/laptop`),
    );

    // rooms: alice in a room, three messages; MQTT over WebSocket for the per-protocol charts
    const a = await xmppClient({
      port: node.ports.xmpp,
      username: alice,
      password: PW,
      resource: 'muc',
    });
    const room = uniqueName('lobby');
    await join(a, room, 'alice');
    for (const body of ['one', 'two', 'three']) await say(a, room, body);
    const m = await mqtt.connectAsync(`ws://127.0.0.1:${node.ports.http}/mqtt`, {
      username: bob,
      password: PW,
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    const row = `#rooms tr[data-room="${room}@${MUC}"]`;
    // The page polls: a row drawn from a poll answered before the messages shows 0 until the next one.
    await page
      .waitForFunction(
        (sel) => document.querySelector(`${sel} .messages`)?.textContent === '3',
        row,
        { timeout: 10_000 },
      )
      .catch(async (e: Error) => {
        const seen = await page.textContent(`${row} .messages`).catch(() => 'no row');
        throw new Error(`${e.message}\nmessages shown: ${seen}`);
      });
    assert.equal(await page.textContent(`${row} .occupants`), '1');
    await page.waitForSelector('#proto-conn polyline[data-series="mqtt"]', { timeout: 10_000 });
    await page.waitForSelector('#proto-traffic polyline[data-series="xmpp"]', { timeout: 10_000 });
    await page
      .locator('#sessions tr', { hasText: `${fresh}@${DOMAIN}/laptop` })
      .waitFor({ timeout: 10_000 });
    await shot(page, 'admin-manage.png');
    await m.endAsync();

    // kick from the detail: the client gets the policy-violation stream error and is closed [RFC6120 4.9.3.18]
    await page.click(
      `#detail-sessions tr[data-jid="${fresh}@${DOMAIN}/laptop"] button[data-action="kick"]`,
    );
    await f.closed;
    assert.ok(
      f.errors.some((e) => (e as { condition?: string }).condition === 'policy-violation'),
      `no policy-violation stream error: ${f.errors.join('; ')}`,
    );
    await toast(/kicked/);

    // reset the password: the old one fails, the new one logs in
    await page.fill('#reset-value', 'second-pw');
    await page.click('#reset-password button[type="submit"]');
    await toast(/password of .* changed/);
    await assert.rejects(
      createClient({ port: node.ports.xmpp, username: fresh, password: 'first-pw' }).start(),
    );
    await (
      await xmppClient({ port: node.ports.xmpp, username: fresh, password: 'second-pw' })
    ).stop();

    // remove, after the confirmation dialog: the account cannot log in and leaves the list
    page.once('dialog', (d) => void d.accept());
    await page.click('#remove-user');
    await toast(/removed/);
    await assert.rejects(
      createClient({ port: node.ports.xmpp, username: fresh, password: 'second-pw' }).start(),
    );
    await page.waitForFunction(
      (u) => !document.querySelector(`#accounts tr[data-user="${u}"]`),
      fresh,
      { timeout: 10_000 },
    );

    // the page's API runs only the page's commands, JSON only, same origin only
    const cmd = (data: unknown, headers: Record<string, string> = {}) =>
      page.request.post(`${base}/admin/api/command`, {
        data: JSON.stringify(data),
        headers: { 'content-type': 'application/json', ...headers },
      });
    const backup = await cmd({ cmd: 'backup', dir: '/tmp/x' });
    assert.equal(backup.status(), 403);
    assert.equal((await backup.json()).code, 'forbidden');
    assert.equal(
      (await cmd({ cmd: 'user.list' }, { origin: 'http://evil.example' })).status(),
      403,
    );
    assert.equal(
      (
        await page.request.post(`${base}/admin/api/command`, { form: { cmd: 'user.list' } })
      ).status(),
      415,
    );
    assert.equal((await cmd({ cmd: 'user.info', username: 'nobody-at-all' })).status(), 404);
    // the one failed request the page made is the conflict it was meant to get
    assert.deepEqual(
      problems.filter((p) => !/status of 409 \(Conflict\)/.test(p)),
      [],
    );
  });
});
