// The operator's daily commands (issue 25) against a running node and, where
// it applies, a stopped one: user info/import, session list/kick, announce,
// offline show, archive purge/export, status counters, backup/restore,
// completion. Every `--json` output is checked against a schema; what a
// command does is checked on the wire (the client kicked sees the stream
// error, the announcement arrives, a restored node serves the data).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import {
  DOMAIN,
  closeAllRaw,
  rawLogin,
  runCli,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import { cliJson, Failure } from './cli-json.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PW = 'ops-pw';

const Session = z.object({
  jid: z.string(),
  user: z.string(),
  resource: z.string(),
  protocol: z.enum(['xmpp', 'mqtt']),
  transport: z.string(),
  address: z.string().nullable(),
  since: z.number().nullable(),
  available: z.boolean(),
  priority: z.number(),
});
const LastLogin = z.object({
  at: z.number(),
  protocol: z.string(),
  transport: z.string(),
  resource: z.string(),
  address: z.string().optional(),
});
const UserInfo = z.strictObject({
  user: z.string(),
  created: z.number().optional(),
  rosterSize: z.number().int(),
  sessions: z.array(Session),
  offline: z.number().int(),
  lastLogin: LastLogin.nullable(),
});
const Counts = z.record(z.string(), z.number());
const Status = z.object({
  version: z.string(),
  domain: z.string(),
  node: z.string(),
  pid: z.number(),
  uptimeMs: z.number(),
  sessions: z.number().int(),
  sessionsByProtocol: Counts,
  users: z.object({ accounts: z.number().int(), online: z.number().int() }),
  memory: z.object({ rssBytes: z.number(), heapUsedBytes: z.number() }),
  connections: Counts,
  logins: Counts,
  messages: z.object({
    routed: Counts,
    delivered: Counts,
    offlineQueued: z.number(),
    archived: z.number(),
  }),
  traffic: Counts,
  metrics: Counts,
});
const Message = z.object({
  from: z.string(),
  to: z.string(),
  type: z.string(),
  body: z.string().optional(),
  subject: z.string().optional(),
  timestamp: z.number().optional(),
});
const OfflineShow = z.object({
  user: z.string(),
  count: z.number().int(),
  messages: z.array(Message),
});
const ArchiveExport = z.object({
  user: z.string(),
  count: z.number().int(),
  messages: z.array(Message.extend({ id: z.string(), stamp: z.number(), xml: z.string() })),
});
const Backup = z.object({
  format: z.literal(1),
  dir: z.string(),
  records: z.number().int(),
  createdAt: z.string(),
  domain: z.string(),
  version: z.string(),
});

const chat = (to: string, body: string) =>
  xml('message', { to, type: 'chat', id: uniqueName('m') }, xml('body', {}, body));
const isMessageWith =
  (body: string) => (el: { name: string; getChildText(n: string): string | null }) =>
    el.name === 'message' && el.getChildText('body') === body;

describe('parley CLI: the daily commands', function () {
  this.timeout(90_000);
  let node: TestNode;
  let tmp: string;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const carol = uniqueName('carol'); // stays offline
  let a: TestClient;

  /** `parley --data-dir <node> --json …`, parsed with the schema. */
  const json = <T extends z.ZodType>(schema: T, args: string[], dataDir = node.dataDir) =>
    cliJson(schema, dataDir, args);
  /** Log `user` in with @xmpp/client (port: this node's unless given); with `presence`, it then sends its initial presence. */
  const login = async (
    user: string,
    resource: string,
    presence = false,
    port = node.ports.xmpp,
  ) => {
    const c = await xmppClient({ port, username: user, password: PW, resource });
    if (presence) await c.send(xml('presence'));
    return c;
  };

  before(async function () {
    this.timeout(120_000);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'parley-ops-'));
    node = await startNode();
    for (const u of [alice, bob, carol]) await node.addUser(u, PW);
    a = await login(alice, 'desk');
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('status --json: version, sessions, users and real counters (logins, connections, messages)', async () => {
    await a.send(chat(`${carol}@${DOMAIN}`, 'for the counters'));
    await a.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })),
    );
    const st = await json(Status, ['status']);
    assert.ok(st.sessions >= 1);
    assert.ok(st.sessionsByProtocol.xmpp >= 1);
    assert.ok(st.users.accounts >= 3);
    assert.ok(st.logins['xmpp.ok'] >= 1, JSON.stringify(st.logins));
    assert.ok(
      Object.keys(st.connections).some((k) => k.startsWith('xmpp.')),
      JSON.stringify(st.connections),
    );
    assert.ok(st.messages.offlineQueued >= 1, JSON.stringify(st.messages));
    assert.ok(st.memory.rssBytes > 0);
  });

  it('user info --json: roster size, sessions, offline count, last login (running node)', async () => {
    await a.request(
      xml(
        'iq',
        { type: 'set' },
        xml('query', { xmlns: 'jabber:iq:roster' }, xml('item', { jid: `${bob}@${DOMAIN}` })),
      ),
    );
    const info = await json(UserInfo, ['user', 'info', alice]);
    assert.equal(info.user, `${alice}@${DOMAIN}`);
    assert.equal(info.rosterSize, 1);
    assert.equal(info.sessions.length, 1);
    assert.equal(info.sessions[0].jid, a.jid);
    assert.equal(info.lastLogin?.protocol, 'xmpp');
    assert.equal(info.lastLogin?.resource, 'desk');
    assert.equal(info.lastLogin?.address, '127.0.0.1');
    const c = await json(UserInfo, ['user', 'info', carol]);
    assert.ok(c.offline >= 1);
    assert.equal(c.lastLogin, null);
    const missing = await runCli([
      '--data-dir',
      node.dataDir,
      '--json',
      'user',
      'info',
      'nobody-here',
    ]);
    assert.equal(missing.code, 1);
    assert.equal(Failure.parse(JSON.parse(missing.stdout)).code, 'item-not-found');
  });

  it('session list [--user]: protocol, transport, address, since, resource', async () => {
    const all = await json(z.array(Session), ['session', 'list']);
    const mine = all.find((s) => s.jid === a.jid);
    assert.ok(mine, JSON.stringify(all));
    assert.equal(mine.protocol, 'xmpp');
    assert.equal(mine.resource, 'desk');
    assert.equal(mine.address, '127.0.0.1');
    assert.ok(mine.since && mine.since <= Date.now() && mine.since > Date.now() - 600_000);
    assert.ok(mine.transport.length > 0);
    const only = await json(z.array(Session), ['session', 'list', '--user', bob]);
    assert.deepEqual(only, []);
    const human = await runCli(['--data-dir', node.dataDir, 'session', 'list', '--user', alice]);
    assert.match(
      human.stdout,
      new RegExp(`^${a.jid.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\txmpp\\t`, 'm'),
    );
  });

  it('session kick JID --reason: the client gets <policy-violation/> with the text; the account logs in again [RFC6120 4.9.3.18]', async () => {
    const victim = await rawLogin(node.ports.xmpp, bob, PW, 'SCRAM-SHA-256', 'phone');
    const r = await json(z.object({ kicked: z.array(z.string()) }), [
      'session',
      'kick',
      `${bob}@${DOMAIN}/phone`,
      '--reason',
      'maintenance window',
    ]);
    assert.deepEqual(r.kicked, [`${bob}@${DOMAIN}/phone`]);
    await victim.waitFor(/<\/stream:stream>/);
    assert.match(victim.text, /<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/);
    assert.match(victim.text, /maintenance window/);
    const again = await runCli([
      '--data-dir',
      node.dataDir,
      '--json',
      'session',
      'kick',
      `${bob}@${DOMAIN}/phone`,
    ]);
    assert.equal(again.code, 1);
    assert.equal(Failure.parse(JSON.parse(again.stdout)).code, 'item-not-found');
    const back = await rawLogin(node.ports.xmpp, bob, PW, 'SCRAM-SHA-256', 'phone');
    back.send('</stream:stream>');
  });

  it('announce: a headline from the server to online sessions; --all-users queues it for the offline ones [XEP-0133 4.23]', async () => {
    const r = await json(
      z.object({ sessions: z.number(), queued: z.number(), queueFull: z.number() }),
      ['announce', 'server restarts at 22:00', '--subject', 'Maintenance'],
    );
    assert.ok(r.sessions >= 1);
    assert.equal(r.queued, 0);
    const got = await a.waitFor(isMessageWith('server restarts at 22:00'));
    assert.equal(got.attrs.from, DOMAIN);
    assert.equal(got.attrs.type, 'headline');
    assert.equal(got.getChildText('subject'), 'Maintenance');
    const before = (await json(OfflineShow, ['offline', 'show', carol])).count;
    const all = await json(
      z.object({ sessions: z.number(), queued: z.number(), queueFull: z.number() }),
      ['announce', '--all-users', 'new terms of use'],
    );
    assert.ok(all.queued >= 1);
    await a.waitFor(isMessageWith('new terms of use'));
    const q = await json(OfflineShow, ['offline', 'show', carol]);
    assert.equal(q.count, before + 1);
    const m = q.messages.find((x) => x.body === 'new terms of use');
    assert.ok(m, JSON.stringify(q.messages));
    assert.equal(m.from, DOMAIN);
    assert.equal(m.type, 'normal');
    // and the user gets it at the next login, from the server [XEP-0160]
    const c = await login(carol, 'late', true);
    const delivered = await c.waitFor(isMessageWith('new terms of use'));
    assert.equal(delivered.attrs.from, DOMAIN);
    await c.stop();
  });

  it('offline show: the queue, oldest first, left in place; works with the node stopped too (below)', async () => {
    const dave = uniqueName('dave');
    await node.addUser(dave, PW);
    await a.send(chat(`${dave}@${DOMAIN}`, 'first'));
    await a.send(chat(`${dave}@${DOMAIN}`, 'second'));
    let q = await json(OfflineShow, ['offline', 'show', dave]);
    for (let i = 0; i < 50 && q.count < 2; i++)
      q = await json(OfflineShow, ['offline', 'show', dave]);
    assert.deepEqual(
      q.messages.map((m) => m.body),
      ['first', 'second'],
    );
    assert.equal(q.messages[0].from, a.jid);
    assert.equal(
      (await json(OfflineShow, ['offline', 'show', dave, '--limit', '1'])).messages.length,
      1,
    );
    assert.equal(
      (await json(OfflineShow, ['offline', 'show', dave])).count,
      2,
      'show left them queued',
    );
  });

  it('archive export --format json|xml: the user archive, oldest first [XEP-0313]; purge --before', async () => {
    const b = await login(bob, 'arch', true);
    const bodies = ['one', 'two & <three>', 'four'];
    for (const body of bodies) {
      await a.send(chat(b.jid, body));
      await b.waitFor(isMessageWith(body));
    }
    const ex = await json(ArchiveExport, ['archive', 'export', bob]);
    assert.deepEqual(
      ex.messages.filter((m) => bodies.includes(m.body ?? '')).map((m) => m.body),
      bodies,
    );
    assert.equal(ex.user, `${bob}@${DOMAIN}`);
    const xr = await runCli([
      '--data-dir',
      node.dataDir,
      'archive',
      'export',
      bob,
      '--format',
      'xml',
    ]);
    assert.equal(xr.code, 0, xr.stderr);
    assert.match(
      xr.stdout,
      /^<\?xml version='1.0' encoding='UTF-8'\?>\n<archive xmlns='urn:parley:archive-export:0'/,
    );
    assert.match(
      xr.stdout,
      /<result xmlns='urn:xmpp:mam:2' id='\d+'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='[^']+'\/><message [^>]*><body>two &amp; &lt;three&gt;<\/body>/,
    );
    // to a file, with --json saying what was written
    const out = path.join(tmp, 'bob.json');
    const w = await json(
      z.object({
        user: z.string(),
        count: z.number(),
        file: z.string(),
        format: z.literal('json'),
      }),
      ['archive', 'export', bob, '-o', out],
    );
    assert.equal(w.count, ex.messages.length);
    // retention: nothing is older than a day; everything is older than tomorrow
    const none = await json(z.object({ removed: z.number(), before: z.string() }), [
      'archive',
      'purge',
      '--before',
      '1d',
    ]);
    assert.equal(none.removed, 0);
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
    const all = await json(z.object({ removed: z.number(), before: z.string() }), [
      'archive',
      'purge',
      '--before',
      tomorrow,
    ]);
    assert.ok(all.removed >= bodies.length);
    assert.equal((await json(ArchiveExport, ['archive', 'export', bob])).messages.length, 0);
    const bad = await runCli([
      '--data-dir',
      node.dataDir,
      'archive',
      'purge',
      '--before',
      'last tuesday',
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--before: not a date/);
    await b.stop();
  });

  it('user import FILE (JSON and CSV): progress on stderr, existing accounts left alone, the new ones log in', async () => {
    const names = Array.from({ length: 12 }, (_, i) => uniqueName(`imp${i}`));
    const jsonFile = path.join(tmp, 'users.json');
    writeFileSync(
      jsonFile,
      JSON.stringify([
        ...names.slice(0, 6).map((u) => ({ username: u, password: `pw-${u}` })),
        { username: alice, password: 'other' },
      ]),
    );
    const r = await runCli(['--data-dir', node.dataDir, 'user', 'import', jsonFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /imported 7\/7/);
    assert.match(r.stdout, /6 added, 1 existed already, 0 failed \(of 7\)/);
    const csv = path.join(tmp, 'users.csv');
    writeFileSync(
      csv,
      `username,password\n${names
        .slice(6)
        .map((u) => `${u},pw,${u}`)
        .join('\n')}\n`,
    );
    const s = await json(
      z.object({
        total: z.number(),
        added: z.number(),
        existing: z.number(),
        failed: z.array(z.object({ username: z.string(), error: z.string() })),
      }),
      ['user', 'import', csv],
    );
    assert.deepEqual(s, { total: 6, added: 6, existing: 0, failed: [] });
    (await rawLogin(node.ports.xmpp, names[0], `pw-${names[0]}`)).send('</stream:stream>');
    (await rawLogin(node.ports.xmpp, names[11], `pw,${names[11]}`)).send('</stream:stream>');
  });

  it('the admin socket checks the new requests: typed errors for a missing or wrong field', async () => {
    const ask = (line: string) =>
      new Promise<{ ok: boolean; code?: string }>((resolve, reject) => {
        const s = net.connect(path.join(node.dataDir, 'admin.sock'));
        let buf = '';
        s.on('data', (d) => {
          buf += d;
          if (buf.includes('\n')) {
            s.end();
            resolve(JSON.parse(buf.slice(0, buf.indexOf('\n'))));
          }
        });
        s.on('connect', () => s.write(line + '\n'));
        s.on('error', reject);
      });
    assert.equal((await ask('{"cmd":"session.kick"}')).code, 'bad-request');
    assert.equal((await ask('{"cmd":"announce","text":""}')).code, 'bad-request');
    assert.equal((await ask('{"cmd":"archive.purge","before":"yesterday"}')).code, 'bad-request');
    assert.equal(
      (await ask('{"cmd":"offline.show","username":"x","limit":0}')).code,
      'bad-request',
    );
    assert.equal((await ask('{"cmd":"backup","dir":"relative/dir"}')).code, 'bad-request');
    assert.equal((await ask('{"cmd":"session.list","user":7}')).code, 'bad-request');
  });

  it('backup DIR while the node serves, restore DIR into a fresh data directory: accounts, rosters, offline messages and archive come back', async () => {
    const erin = uniqueName('erin');
    await node.addUser(erin, PW);
    const b = await login(bob, 'bk', true);
    await a.send(chat(b.jid, 'archived before the backup'));
    await b.waitFor(isMessageWith('archived before the backup'));
    await a.send(chat(`${erin}@${DOMAIN}`, 'waiting for erin'));
    for (let i = 0; i < 50 && (await json(OfflineShow, ['offline', 'show', erin])).count < 1; i++);
    // writes go on while the backup is taken
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await a.send(chat(b.jid, `during ${i}`));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const dir = path.join(tmp, 'backup-1');
    const bk = await json(Backup, ['backup', dir]);
    writing = false;
    await writer;
    assert.equal(bk.dir, dir);
    assert.ok(bk.records > 0);
    const exists = await runCli(['--data-dir', node.dataDir, '--json', 'backup', dir]);
    assert.equal(exists.code, 1);
    assert.equal(Failure.parse(JSON.parse(exists.stdout)).code, 'conflict');
    // a restore refuses a running node
    const refused = await runCli(['--data-dir', node.dataDir, '--json', 'restore', dir]);
    assert.equal(refused.code, 1);
    assert.equal(Failure.parse(JSON.parse(refused.stdout)).code, 'node-running');

    // a fresh node from the backup (its data directory: the restored store and the suite's certificate)
    const fresh = path.join(tmp, 'fresh');
    const restored = await json(
      z.object({ manifest: z.object({ records: z.number() }) }),
      ['restore', dir],
      fresh,
    );
    assert.equal(restored.manifest.records, bk.records);
    // stopped node: the CLI reads the restored store itself
    const users = await json(z.array(z.string()), ['user', 'list'], fresh);
    for (const u of [alice, bob, carol, erin]) assert.ok(users.includes(u), u);
    assert.equal((await json(UserInfo, ['user', 'info', alice], fresh)).rosterSize, 1);
    assert.deepEqual(
      (await json(OfflineShow, ['offline', 'show', erin], fresh)).messages.map((m) => m.body),
      ['waiting for erin'],
    );
    const node2 = await startNode({ dataDir: fresh });
    try {
      const ex = await json(ArchiveExport, ['archive', 'export', bob], fresh);
      assert.ok(ex.messages.some((m) => m.body === 'archived before the backup'));
      // the restored node serves the restored accounts: log in, read the roster, get the offline message
      const a2 = await login(alice, 'again', false, node2.ports.xmpp);
      const roster = await a2.request(
        xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })),
      );
      assert.deepEqual(
        roster
          .getChild('query')!
          .getChildren('item')
          .map((i) => i.attrs.jid),
        [`${bob}@${DOMAIN}`],
      );
      const e2 = await login(erin, 'r', true, node2.ports.xmpp);
      await e2.waitFor(isMessageWith('waiting for erin'));
      const lastLogin = await json(UserInfo, ['user', 'info', erin], fresh);
      assert.equal(lastLogin.lastLogin?.resource, 'r');
    } finally {
      await stopAllClients();
      await node2.stop();
    }
    a = await login(alice, 'desk');
  });

  it('with the node stopped: user info keeps the last login, backup opens the store itself', async () => {
    await stopAllClients();
    await node.stop();
    const info = await json(UserInfo, ['user', 'info', alice]);
    assert.equal(info.sessions.length, 0);
    assert.equal(info.lastLogin?.protocol, 'xmpp');
    const st = await runCli(['--data-dir', node.dataDir, '--json', 'status']);
    assert.equal(st.code, 1);
    assert.equal(Failure.parse(JSON.parse(st.stdout)).code, 'no-node');
    const bk = await json(Backup, ['backup', path.join(tmp, 'backup-stopped')]);
    assert.ok(bk.records > 0);
    assert.deepEqual(await json(z.array(Session), ['session', 'list']), []);
    await node.restart();
  });

  it('completion bash|zsh: commands, subcommands and options', async () => {
    const script = (await runCli(['completion', 'bash'])).stdout;
    const complete = (words: string[]) => {
      const r = spawnSync(
        'bash',
        [
          '-c',
          `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _parley; echo "\${COMPREPLY[@]}"`,
        ],
        { encoding: 'utf8', cwd: ROOT },
      );
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim().split(/\s+/);
    };
    assert.deepEqual(complete(['parley', 'us']), ['user']);
    assert.deepEqual(complete(['parley', 'session', 'k']), ['kick']);
    assert.deepEqual(complete(['parley', '--data-dir', '/x', 'archive', 'export', 'bob', '--fo']), [
      '--format',
    ]);
    assert.ok(complete(['parley', 'user', '']).includes('import'));
    const zsh = await runCli(['completion', 'zsh']);
    assert.match(zsh.stdout, /^#compdef parley\n/);
    if (spawnSync('zsh', ['--version']).status === 0)
      assert.equal(spawnSync('zsh', ['-n', '-c', zsh.stdout]).status, 0);
    assert.equal((await runCli(['completion', 'fish'])).code, 1);
  });
});
