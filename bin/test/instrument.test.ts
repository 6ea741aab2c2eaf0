import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CounterMetrics } from '../../broker/index.ts';
import { EmbeddedStorage } from '../../storage/embedded.ts';
import { instrumentStorage } from '../instrument.ts';

/** The metrics sink a node uses, recording every timed call as it arrives. */
class Recording extends CounterMetrics {
  readonly ops: [string, boolean][] = [];
  override storeOp(op: string, ms: number, ok: boolean): void {
    assert.ok(ms >= 0 && Number.isFinite(ms), `a duration for ${op}`);
    this.ops.push([op, ok]);
    super.storeOp(op, ms, ok);
  }
}

describe('storage instrumentation (bin/instrument.ts)', function () {
  let dir: string;
  beforeEach(function () {
    dir = mkdtempSync(path.join(tmpdir(), 'parley-instrument-'));
  });
  afterEach(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  it('times every store call by store and method, results unchanged; a failed call counts as a store error', async function () {
    const metrics = new Recording();
    const storage = instrumentStorage(new EmbeddedStorage({ dir }), metrics);
    await storage.open();
    try {
      const kv = storage.kv<{ n: number }>('accounts');
      await kv.put('alice', { n: 1 });
      assert.deepEqual(await kv.get('alice'), { n: 1 });
      const archive = storage.archive<{ body: string }>('mam');
      const rec = await archive.append({
        conversation: 'a|b',
        timestamp: 1,
        owners: ['a', 'b'],
        with: 'b',
        id: 'm1',
        value: { body: 'hi' },
      });
      assert.equal(rec.seq, 1);
      assert.equal(await archive.lastSeq('a|b'), 1);
      // A NUL in a conversation id is refused by the store: the caller still gets the rejection.
      await assert.rejects(
        archive.append({
          conversation: 'a\u0000b',
          timestamp: 1,
          owners: ['a'],
          with: 'b',
          id: 'm2',
          value: { body: 'x' },
        }),
        TypeError,
      );
      assert.deepEqual(metrics.ops, [
        ['kv.accounts.put', true],
        ['kv.accounts.get', true],
        ['archive.mam.append', true],
        ['archive.mam.lastSeq', true],
        ['archive.mam.append', false],
      ]);
      assert.equal(metrics.snapshot()['store.errors.archive.mam.append'], 1);
      assert.equal(metrics.snapshot()['errors.store'], 1);
    } finally {
      await storage.close();
    }
  });
});
