// The operator's side: `parley user …` with and without a running node,
// config validation with exact key paths, the launcher's GC choice, graceful
// shutdown on SIGTERM.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os, { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { closeAllRaw, rawLogin, runCli, startNode, uniqueName, type TestNode } from '../helpers.ts';

const LAUNCHER = fileURLToPath(new URL('../../bin/parley', import.meta.url));

describe('parley CLI', function () {
  this.timeout(60_000);
  let dir: string;

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'parley-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('manages users with no node running: add, list, passwd, remove', async () => {
    const d = path.join(dir, 'offline-node');
    const name = uniqueName('op');
    let r = await runCli(['--data-dir', d, 'user', 'add', name, 'pw1']);
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(['--data-dir', d, 'user', 'add', name, 'pw2']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /exists/);
    r = await runCli(['--data-dir', d, 'user', 'list']);
    assert.deepEqual(r.stdout.trim().split('\n'), [name]);
    r = await runCli(['--data-dir', d, 'user', 'passwd', name, 'pw3']);
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(['--data-dir', d, 'user', 'remove', name]);
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(['--data-dir', d, 'user', 'list']);
    assert.equal(r.stdout.trim(), '');
    r = await runCli(['--data-dir', d, 'user', 'remove', name]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no user/);
  });

  describe('with a running node (admin socket; the store is not opened twice)', () => {
    let node: TestNode;
    before(async () => {
      node = await startNode();
    });
    after(async () => {
      closeAllRaw();
      await node.dispose();
    });

    it('adds a user the node can log in at once, changes its password, removes it', async () => {
      const name = uniqueName('live');
      let r = await runCli(['--data-dir', node.dataDir, 'user', 'add', name, 'first']);
      assert.equal(r.code, 0, r.stderr);
      const c = await rawLogin(node.ports.xmpp, name, 'first', 'SCRAM-SHA-256');
      c.send('</stream:stream>');
      r = await runCli(['--data-dir', node.dataDir, 'user', 'passwd', name, 'second']);
      assert.equal(r.code, 0, r.stderr);
      await assert.rejects(
        rawLogin(node.ports.xmpp, name, 'first', 'SCRAM-SHA-256'),
        /login failed/,
      );
      const c2 = await rawLogin(node.ports.xmpp, name, 'second', 'SCRAM-SHA-1');
      r = await runCli(['--data-dir', node.dataDir, 'user', 'list']);
      assert.ok(r.stdout.split('\n').includes(name));
      // Removing the account ends its live session.
      r = await runCli(['--data-dir', node.dataDir, 'user', 'remove', name]);
      assert.equal(r.code, 0, r.stderr);
      await c2.waitFor(/<\/stream:stream>/);
      await assert.rejects(
        rawLogin(node.ports.xmpp, name, 'second', 'SCRAM-SHA-256'),
        /login failed/,
      );
    });

    it('status reports the running node', async () => {
      const r = await runCli(['--data-dir', node.dataDir, 'status']);
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout);
      assert.equal(s.domain, 'localhost');
      assert.equal(typeof s.sessions, 'number');
    });
  });

  describe('configuration', () => {
    const check = (yaml: string) => {
      const f = path.join(dir, `${uniqueName('cfg')}.yaml`);
      writeFileSync(f, yaml);
      return runCli(['--config', f, '--data-dir', path.join(dir, 'cfg-data'), 'check-config']);
    };

    it('an unknown key fails with its exact path and exit code 2', async () => {
      const r = await check('xmpp:\n  maxStanzaSizee: 10\n');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /xmpp: Unrecognized key: "maxStanzaSizee"/);
    });

    it('a bad value fails with its exact path', async () => {
      const r = await check('limits:\n  offlineMaxPerUser: lots\n');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /limits\.offlineMaxPerUser: .*expected number/i);
    });

    it('a write buffer below 1 MiB fails with its exact path', async () => {
      const r = await check('storage:\n  writeBufferMiB: 0\n');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /storage\.writeBufferMiB: /);
    });

    it('a reclaim threshold below 1 MiB fails with its exact path', async () => {
      const r = await check('memory:\n  reclaimGrowthMiB: 0\n');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /memory\.reclaimGrowthMiB: /);
    });

    it('a bad nested listener fails with the full path', async () => {
      const r = await check('xmpp:\n  tcp: { host: 127.0.0.1, port: 70000 }\n');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /xmpp\.tcp\.port: /);
    });

    it('a valid file prints the effective config, flags over file', async () => {
      const f = path.join(dir, 'ok.yaml');
      writeFileSync(f, 'domain: example.org\nlimits: { offlineMaxPerUser: 7 }\n');
      const r = await runCli(['--config', f, '--domain', 'chat.example.net', 'check-config']);
      assert.equal(r.code, 0, r.stderr);
      const cfg = JSON.parse(r.stdout);
      assert.equal(cfg.domain, 'chat.example.net');
      assert.equal(cfg.limits.offlineMaxPerUser, 7);
      assert.equal(cfg.xmpp.maxStanzaSize, 262144);
      assert.equal(cfg.storage.writeBufferMiB, 32);
      assert.deepEqual(cfg.memory, { reclaimWhenIdle: true, reclaimGrowthMiB: 32 });
    });
  });

  describe('launcher bin/parley: where V8 collects garbage', () => {
    const gcOf = (node: TestNode): { gc: string; cpus: number; semiSpaceMiB: number | string } => {
      const line = node.log.find((l) => l.includes('garbage collection threads'));
      assert.ok(line, node.log.join('\n'));
      return JSON.parse(line) as { gc: string; cpus: number; semiSpaceMiB: number | string };
    };

    it('on one CPU (taskset) it runs the collector on the event loop (--single-threaded-gc)', async () => {
      const node = await startNode({ launcher: ['taskset', '-c', '0', LAUNCHER] });
      try {
        const { gc, cpus } = gcOf(node);
        assert.equal(gc, 'single');
        assert.equal(cpus, 1);
        const r = await runCli(['--data-dir', node.dataDir, 'status']);
        assert.equal(r.code, 0, r.stderr);
      } finally {
        await node.stop();
      }
    });

    it('with two CPUs it keeps V8 helper threads and 64 MB semi-spaces; PARLEY_GC_THREADS=single and PARLEY_NODE_ARGS override', async function () {
      if (availableParallelism() < 2) this.skip();
      const node = await startNode({ launcher: [LAUNCHER] });
      try {
        assert.equal(gcOf(node).gc, 'parallel');
        assert.equal(
          gcOf(node).semiSpaceMiB,
          64,
          'the launcher gives the young generation 64 MB semi-spaces',
        );
      } finally {
        await node.stop();
      }
      const forced = await startNode({
        launcher: [LAUNCHER],
        env: { PARLEY_GC_THREADS: 'single', PARLEY_NODE_ARGS: '--max-semi-space-size=16' },
      });
      try {
        assert.equal(gcOf(forced).gc, 'single');
        assert.equal(
          gcOf(forced).semiSpaceMiB,
          16,
          'PARLEY_NODE_ARGS comes after the launcher flags, so it lowers the size',
        );
      } finally {
        await forced.stop();
      }
    });

    it('a bad PARLEY_GC_THREADS fails with exit code 2 before Node starts', async () => {
      const r = spawnSync(LAUNCHER, ['--help'], {
        env: { ...process.env, PARLEY_GC_THREADS: 'many' },
        encoding: 'utf8',
      });
      assert.equal(r.status, 2);
      assert.match(r.stderr, /PARLEY_GC_THREADS must be auto, single or parallel/);
    });
  });

  describe('graceful shutdown', () => {
    it('SIGTERM closes every stream with <system-shutdown/> and stops the broker cleanly [RFC6120 4.9.3.22]', async () => {
      const node = await startNode();
      try {
        const name = uniqueName('bye');
        await node.addUser(name, 'pw');
        const c = await rawLogin(node.ports.xmpp, name, 'pw', 'SCRAM-SHA-256');
        await node.stop();
        await c.waitFor(
          /<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/><\/stream:error><\/stream:stream>/,
        );
        assert.ok(
          node.log.some((l) => l.includes('broker stopped')),
          'the node logged a clean stop',
        );
      } finally {
        closeAllRaw();
        await node.dispose();
      }
    });
  });
});
