// Log lines (issue 25): JSON lines when stdout is not a terminal (collectors,
// journald, this suite), one readable line per event on a terminal
// (pino-pretty), `--log-format json|pretty` to force either.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, ROOT, ZERO_PORTS } from '../node-args.ts';

/** Start a node, collect stdout until the ready line, stop it; `tty` runs it under script(1) so stdout is a terminal. */
function runUntilReady(dataDir: string, extra: string[], tty = false): Promise<string> {
  const args = [BIN, '--data-dir', dataDir, ...ZERO_PORTS, ...extra, 'start'];
  const p = tty
    ? spawn(
        'script',
        [
          '-qfec',
          ['exec', process.execPath, ...args].map((a, i) => (i === 0 ? a : `'${a}'`)).join(' '),
          '/dev/null',
        ],
        { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
      )
    : spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`not ready:\n${out}`));
    }, 40_000);
    let stopping = false;
    p.stdout!.on('data', (d) => {
      out += d;
      if (!stopping && out.includes('parley node ready')) {
        stopping = true; // more output may follow the ready line: stop once
        clearTimeout(t);
        p.once('exit', () => resolve(out));
        // under script(1) the node is script's child: signal it, and script ends with it
        if (tty) {
          const kids = spawnSync('pgrep', ['-P', String(p.pid)], { encoding: 'utf8' })
            .stdout.split('\n')
            .filter(Boolean);
          for (const k of kids) {
            try {
              process.kill(Number(k), 'SIGTERM');
            } catch {
              // already gone (a helper process of script's that ended meanwhile)
            }
          }
        } else p.kill('SIGTERM');
      }
    });
    p.once('exit', (code) => {
      clearTimeout(t);
      if (!out.includes('parley node ready')) reject(new Error(`exited ${code}:\n${out}`));
    });
  });
}

describe('log format', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'parley-logs-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('stdout not a terminal: every line is a JSON object', async () => {
    const out = await runUntilReady(path.join(dir, 'a'), []);
    const lines = out.trim().split('\n');
    assert.ok(lines.length >= 2);
    for (const l of lines) assert.equal(typeof JSON.parse(l), 'object', l);
    assert.ok(lines.some((l) => JSON.parse(l).msg === 'parley node ready'));
  });

  it('--log-format pretty: one readable line per event, not JSON', async () => {
    const out = await runUntilReady(path.join(dir, 'b'), ['--log-format', 'pretty']);
    const ready = out.split('\n').find((l) => l.includes('parley node ready'))!;
    assert.match(
      ready,
      /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: parley node ready \{.*"domain":"localhost"/,
    );
    assert.throws(() => JSON.parse(ready));
  });

  it('stdout a terminal: readable lines by default; --log-format json forces JSON', async function () {
    if (spawnSync('script', ['--version']).status !== 0) this.skip();
    const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r/g, '');
    const pretty = plain(await runUntilReady(path.join(dir, 'c'), [], true));
    assert.match(pretty, /\] INFO: parley node ready \{/);
    const json = plain(await runUntilReady(path.join(dir, 'd'), ['--log-format', 'json'], true));
    const ready = json.split('\n').find((l) => l.includes('parley node ready'))!;
    assert.equal(JSON.parse(ready).msg, 'parley node ready');
  });

  it('a bad --log-format is refused', () => {
    const r = spawnSync(process.execPath, [BIN, '--log-format', 'xml', 'check-config'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--log-format/);
  });
});
