/**
 * The embedded store across processes: a write acknowledged before kill -9
 * is still there on reopen [docs/architecture.md principle 3, "Nothing acknowledged is lost"], a
 * directory held by a running process cannot be opened twice, and instances
 * taking turns on one directory never reuse a seq.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { EmbeddedStorage } from '../embedded.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const child = fileURLToPath(new URL('./fixtures/embedded-child.ts', import.meta.url));

/** Starts the child; `onLine` sees each stdout line. */
function start(
  mode: 'write' | 'hold',
  dir: string,
  onLine: (line: string, proc: ChildProcess) => void,
) {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, mode, dir], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  createInterface({ input: proc.stdout! }).on('line', (line) => onLine(line, proc));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { proc, exited };
}

describe('embedded storage across processes and instances', function () {
  let dir: string;
  let running: ChildProcess | undefined;

  beforeEach(async function () {
    dir = await mkdtemp(join(tmpdir(), 'parley-crash-'));
  });

  afterEach(async function () {
    if (running && running.exitCode === null && running.signalCode === null)
      running.kill('SIGKILL');
    running = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps every write acknowledged before kill -9', async function () {
    const lines: string[] = [];
    const { proc, exited } = start('write', dir, (line, p) => {
      lines.push(line);
      // Kill mid-way, with four writers still busy.
      if (lines.length === 1500) p.kill('SIGKILL');
    });
    running = proc;
    const { signal } = await exited;
    // Lines read after the kill was sent were still acknowledged writes.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(signal, 'SIGKILL', 'the child was killed, it did not finish');
    assert.ok(lines.length >= 1500, `got ${lines.length} lines`);
    assert.ok(!lines.includes('finished'));

    const storage = new EmbeddedStorage({ dir });
    await storage.open();
    try {
      const kv = storage.kv<number>('crash');
      const archive = storage.archive<{ n: number }>('crash');
      const queue = storage.queue<number>('crash');
      const records = (await archive.query('shared', { limit: 1_000_000 })).records;
      const bySeq = new Map(records.map((r) => [r.seq, r.id]));
      const queued = new Map<string, Map<string, number>>();
      let checked = 0;
      for (const line of lines) {
        const [kind, a, b, c] = line.split(' ');
        if (kind === 'kv') assert.equal(await kv.get(a), Number(b), line);
        if (kind === 'ar') assert.equal(bySeq.get(Number(a)), b, line);
        if (kind === 'q') {
          if (!queued.has(a)) {
            const items = await queue.list(a);
            queued.set(a, new Map(items.map((i) => [i.id, i.value])));
            // The count is written in the same batch as the items.
            assert.equal(await queue.count(a), items.length, `count of ${a}`);
          }
          assert.equal(queued.get(a)!.get(b), Number(c), line);
        }
        checked++;
      }
      assert.equal(checked, lines.length);
      // Seq and record are one batch: no gap, and the next append follows on.
      assert.deepEqual(
        records.map((r) => r.seq),
        Array.from({ length: records.length }, (_, i) => i + 1),
      );
      assert.equal(await archive.lastSeq('shared'), records.length);
      // Owner counts are checkpoints plus the index entries after them: exact after a crash too.
      for (const [owner, peer] of [
        ['a', 'b'],
        ['b', 'a'],
      ]) {
        assert.equal(
          (await archive.queryOwner(owner, { count: true, limit: 0 })).count,
          records.length,
          `count of ${owner}`,
        );
        assert.equal(
          (await archive.queryOwner(owner, { with: peer, count: true, limit: 0 })).count,
          records.length,
          `count of ${owner} with ${peer}`,
        );
      }
      const next = await archive.append({
        conversation: 'shared',
        timestamp: 0,
        owners: ['a'],
        with: 'b',
        id: 'x',
        value: { n: 0 },
      });
      assert.equal(next.seq, records.length + 1);
    } finally {
      await storage.close();
    }
  });

  it('an instance reopened after another one appended continues its seqs', async function () {
    const record = { conversation: 'c', timestamp: 0, owners: ['a'], with: 'b', id: 'x', value: 1 };
    const first = new EmbeddedStorage({ dir });
    await first.open();
    const archive = first.archive<number>('mam');
    await archive.append(record);
    await first.close();
    const second = new EmbeddedStorage({ dir });
    await second.open();
    assert.equal((await second.archive<number>('mam').append(record)).seq, 2);
    await second.close();
    // The first instance must not trust the seq it cached before closing.
    await first.open();
    assert.equal((await archive.append(record)).seq, 3);
    assert.equal((await archive.query('c')).records.length, 3);
    await first.close();
  });

  it('refuses a directory another process has open, and opens it once that process is gone', async function () {
    let ready!: () => void;
    const isReady = new Promise<void>((resolve) => (ready = resolve));
    const { proc, exited } = start('hold', dir, (line) => line === 'ready' && ready());
    running = proc;
    await isReady;

    const second = new EmbeddedStorage({ dir });
    await assert.rejects(second.open(), /in use by another process/);
    assert.equal(await second.ping(), false);

    proc.kill('SIGKILL');
    await exited;
    await second.open();
    assert.equal(await second.ping(), true);
    await second.close();
  });
});
