import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CounterMetrics } from '../../broker/index.ts';
import { processGuard } from '../guard.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A logger that keeps its error lines. */
function recordingLogger() {
  const lines: { obj: unknown; msg?: string }[] = [];
  const noop = () => {};
  const log = {
    trace: noop,
    debug: noop,
    info: noop,
    warn: noop,
    error: (obj: unknown, msg?: string) => lines.push({ obj, msg }),
    child: () => log,
  };
  return { log, lines };
}

describe('bin: the process guard (issue 20 item 1, last line of defence)', function () {
  this.timeout(30_000);

  it('logs each uncaught exception and unhandled rejection at error level with the error, and counts them', () => {
    const { log, lines } = recordingLogger();
    const metrics = new CounterMetrics();
    const g = processGuard(log, metrics);
    const boom = new Error('boom');
    g.uncaughtException(boom, 'uncaughtException');
    g.unhandledRejection('not even an Error');
    assert.equal(lines.length, 2);
    assert.deepEqual(lines[0].obj, { err: boom, origin: 'uncaughtException' });
    assert.match(lines[0].msg ?? '', /uncaught exception: the node keeps running/);
    assert.match(lines[1].msg ?? '', /unhandled rejection/);
    assert.equal(metrics.snapshot()['errors.uncaught'], 2);
  });

  it('installed in a real process: a throw in a timer and a rejected promise neither end it', () => {
    const script = `
      import { installProcessGuard } from './bin/guard.ts';
      import { CounterMetrics } from './broker/index.ts';
      const metrics = new CounterMetrics();
      const say = (obj, msg) => console.log(JSON.stringify({ msg, err: String(obj.err) }));
      const log = { trace() {}, debug() {}, info() {}, warn() {}, error: say, child() { return log; } };
      installProcessGuard(log, metrics);
      setTimeout(() => { throw new Error('thrown in a timer'); }, 10);
      Promise.reject(new Error('rejected and forgotten'));
      setTimeout(() => { console.log(JSON.stringify({ alive: true, uncaught: metrics.snapshot()['errors.uncaught'] })); }, 300);
    `;
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      { cwd: ROOT, encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(
      out.some((o) => o.err === 'Error: thrown in a timer' && /uncaught exception/.test(o.msg)),
      r.stdout,
    );
    assert.ok(
      out.some(
        (o) => o.err === 'Error: rejected and forgotten' && /unhandled rejection/.test(o.msg),
      ),
      r.stdout,
    );
    assert.deepEqual(out.at(-1), { alive: true, uncaught: 2 });
  });
});
