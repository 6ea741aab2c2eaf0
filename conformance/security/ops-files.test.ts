// Black-box, issue 20 item 5: what a node leaves on disk for other local
// users. A node started under umask 000 still makes its data directory 0700, every
// file 0600 and the admin socket 0600; a data directory (or admin socket
// directory) others can write in stops the start with a message.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startNode, uniqueName, type TestNode } from '../helpers.ts';

const mode = (p: string) => statSync(p).mode & 0o777;
const octal = (m: number) => m.toString(8).padStart(4, '0');

/** Every path under dir (dir included) with a mode other than 0700 (directories) / 0600 (files, sockets). */
function looseModes(dir: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = statSync(p);
    const want = st.isDirectory() ? 0o700 : 0o600;
    if ((st.mode & 0o777) !== want)
      out.push(`${octal(st.mode & 0o777)} ${path.relative(dir, p) || '.'}`);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(path.join(p, e));
  };
  walk(dir);
  return out;
}

/** A launcher that runs the node under `umask <mask>` (the shell's exec keeps the pid). */
const underUmask = (mask: string) => [
  '/bin/sh',
  '-c',
  `umask ${mask}; exec "$0" "$@"`,
  process.execPath,
  'bin/parley.js',
];

describe('security: data directory and admin socket modes (issue 20 item 5)', function () {
  this.timeout(60_000);
  let tmp: string;
  const nodes: TestNode[] = [];

  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'parley-ops-files-'));
  });
  after(async () => {
    for (const n of nodes) await n.dispose().catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  });

  it('under umask 000 the node creates its data directory 0700, every file 0600 and the admin socket 0600', async () => {
    const dataDir = path.join(tmp, 'umask000', 'data'); // the node creates it (no test certificate seeded)
    const node = await startNode({ dataDir, seedTls: false, launcher: underUmask('000') });
    nodes.push(node);
    await node.addUser(uniqueName('files'), 'pw-files'); // through the running node: the store writes
    assert.equal(octal(mode(dataDir)), '0700', 'data directory');
    assert.equal(octal(mode(path.join(dataDir, 'admin.sock'))), '0600', 'admin socket');
    assert.equal(octal(mode(path.join(dataDir, 'tls', 'key.pem'))), '0600', 'TLS private key');
    for (const sub of ['store', 'mqtt', 'tls'])
      assert.ok(statSync(path.join(dataDir, sub)).isDirectory(), `${sub}/ exists`);
    assert.deepEqual(looseModes(dataDir), [], 'everything in the data directory is owner-only');
    // The socket's mode is what stops other users: connecting still works for the owner.
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(path.join(dataDir, 'admin.sock'), () => {
        c.destroy();
        resolve();
      });
      c.once('error', reject);
    });
  });

  for (const [m, who] of [
    [0o777, /writable by every local user/],
    [0o770, /writable by its group/],
  ] as const) {
    it(`a data directory of mode ${octal(m)} stops the start with a message; nothing is opened in it`, async () => {
      const dataDir = path.join(tmp, `open-${octal(m)}`);
      mkdirSync(dataDir);
      chmodSync(dataDir, m);
      await assert.rejects(startNode({ dataDir, seedTls: false }), (err: Error) => {
        assert.match(err.message, /node exited before ready \(code 1/);
        assert.match(err.message, who);
        assert.match(err.message, /refusing to start/);
        return true;
      });
      assert.deepEqual(readdirSync(dataDir), [], 'no store, socket or key written into it');
    });
  }

  it('an admin socket in a world-writable directory (admin.socket) stops the start', async () => {
    const dataDir = path.join(tmp, 'sockdir-data');
    const sockDir = path.join(tmp, 'sockdir-open');
    mkdirSync(sockDir);
    chmodSync(sockDir, 0o777);
    await assert.rejects(
      startNode({ dataDir, config: `admin: { socket: ${path.join(sockDir, 'admin.sock')} }\n` }),
      /admin socket directory .* is writable by every local user/,
    );
  });

  it('a data directory others could read (an older install, umask 022) is closed to 0700 at start', async () => {
    const dataDir = path.join(tmp, 'was-0755');
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755);
    const node = await startNode({ dataDir });
    nodes.push(node);
    assert.equal(octal(mode(dataDir)), '0700');
    assert.ok(
      node.log.some((l) => l.includes('data directory was open to other local users')),
      'a warning is logged',
    );
  });
});
