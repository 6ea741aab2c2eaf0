// SLOW (about 1-2 minutes, and it needs the npm registry or a warm npm cache):
// the package as an operator gets it. A copy of the checkout (the files git
// knows, tracked or not ignored) is packed with `npm pack` (which builds dist/
// through `prepack`), the tarball installed with `npm install -g` into a
// temporary prefix, and the installed `parley` runs: --help, check-config,
// and a node started and stopped through it. The installed package holds no
// TypeScript and no tsx: the compiled code runs.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertReportsVersion, startNode, stopAllClients, type TestNode } from '../helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TEST_VERSION = '9.9.9-pack-test';

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

describe('SLOW: npm pack → npm install -g into a temporary prefix → a working `parley`', function () {
  this.timeout(300_000);
  let tmp: string;
  let parley: string;
  let installed: string;

  before(function () {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'parley-pack-'));
    const src = path.join(tmp, 'src');
    const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], {
      cwd: ROOT,
      encoding: 'utf8',
    })
      .split('\0')
      .filter(Boolean);
    for (const f of files) {
      if (!existsSync(path.join(ROOT, f))) continue; // deleted, not yet committed
      mkdirSync(path.dirname(path.join(src, f)), { recursive: true });
      cpSync(path.join(ROOT, f), path.join(src, f));
    }
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(src, 'node_modules'));
    const npmEnv = {
      ...process.env,
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    };
    const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', tmp], {
      cwd: src,
      encoding: 'utf8',
      env: npmEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const tarball = path.join(tmp, out.trim().split('\n').pop()!);
    assert.ok(existsSync(tarball), `npm pack made no ${tarball}`);
    const prefix = path.join(tmp, 'prefix');
    const r = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', tarball], {
      encoding: 'utf8',
      env: npmEnv,
      cwd: tmp,
    });
    assert.equal(r.status, 0, r.stderr);
    parley = path.join(prefix, 'bin', 'parley');
    installed = path.join(prefix, 'lib', 'node_modules', 'parley');
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('installs compiled code only: no TypeScript, no tsx, the static files of the pages', () => {
    const own = filesUnder(installed)
      .map((f) => path.relative(installed, f))
      .filter((f) => !f.startsWith(`node_modules${path.sep}`));
    assert.ok(own.length > 50, own.join('\n'));
    assert.deepEqual(
      own.filter((f) => f.endsWith('.ts')),
      [],
    );
    assert.ok(existsSync(path.join(installed, 'dist', 'bin', 'parley.js')));
    assert.ok(existsSync(path.join(installed, 'dist', 'adapters', 'http', 'static', 'admin.html')));
    assert.ok(!existsSync(path.join(installed, 'node_modules', 'tsx')), 'tsx is a dev dependency');
  });

  it('`parley --help` and `parley --version` run', () => {
    const help = spawnSync(parley, ['--help'], { encoding: 'utf8', cwd: tmp });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /Usage: parley/);
    assert.equal(help.stderr, '');
    const v = spawnSync(parley, ['--version'], { encoding: 'utf8', cwd: tmp });
    assert.equal(
      v.stdout.trim(),
      JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version,
    );
  });

  it('`parley check-config` validates a file and prints the effective config', () => {
    const f = path.join(tmp, 'parley.yaml');
    writeFileSync(f, 'domain: pack.example\nxmpp: { tcp: { port: 5333 } }\n');
    const r = spawnSync(
      parley,
      ['--config', f, '--data-dir', path.join(tmp, 'cfg'), 'check-config'],
      { encoding: 'utf8', cwd: tmp },
    );
    assert.equal(r.status, 0, r.stderr);
    const cfg = JSON.parse(r.stdout);
    assert.equal(cfg.domain, 'pack.example');
    assert.deepEqual(cfg.xmpp.tcp, { host: '127.0.0.1', port: 5333 });
    const bad = spawnSync(parley, ['--config', f, '--xmpp-port', 'x', 'check-config'], {
      encoding: 'utf8',
      cwd: tmp,
    });
    assert.equal(bad.status, 2);
  });

  describe('a node started and stopped through the installed command', () => {
    let node: TestNode;
    before(async () => {
      // The version the node reports is the installed package.json's (read at start, not a literal).
      const pkgFile = path.join(installed, 'package.json');
      writeFileSync(
        pkgFile,
        JSON.stringify({ ...JSON.parse(readFileSync(pkgFile, 'utf8')), version: TEST_VERSION }),
      );
      node = await startNode({ launcher: [parley] });
    });
    after(async () => {
      await stopAllClients();
      await node?.dispose();
    });

    it(`serves XMPP, reports ${TEST_VERSION} [XEP-0092] and on /healthz, stops on SIGTERM`, async () => {
      await assertReportsVersion(node, TEST_VERSION, 'p');
      await stopAllClients();
      const pid = node.pid!;
      await node.stop();
      assert.throws(() => process.kill(pid, 0), /ESRCH/);
      assert.ok(
        node.log.some((l) => l.includes('broker stopped')),
        node.log.join('\n'),
      );
    });
  });
});
