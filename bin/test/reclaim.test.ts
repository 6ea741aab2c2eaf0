import assert from 'node:assert/strict';
import { getHeapStatistics } from 'node:v8';
import { silentLogger, type Logger } from '../../broker/index.ts';
import { startReclaimer, type Reclaimer } from '../reclaim.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  heapBefore: number;
  heapAfter: number;
  ms: number;
}

function recorder(): { log: Logger; runs: Run[] } {
  const runs: Run[] = [];
  const log: Logger = {
    ...silentLogger,
    info: (obj) => {
      if (typeof obj === 'object') runs.push(obj as Run);
    },
  };
  return { log, runs };
}

/** Keeps the event loop busy for `ms`, leaving `mib` MiB of garbage that survived collections. */
function burst(ms: number, mib: number): void {
  let keep: unknown[][] = [];
  const end = performance.now() + ms;
  let made = 0;
  while (performance.now() < end || made < mib) {
    // 1 MiB of small objects, held until the burst ends so that it is promoted
    const chunk: unknown[] = [];
    for (let i = 0; i < 16_384; i++) chunk.push({ i, s: `x${i}` });
    keep.push(chunk);
    made++;
    if (keep.length > mib) keep = keep.slice(1);
  }
  keep = [];
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(20);
}

describe('bin: memory reclaim after a burst', () => {
  let r: Reclaimer | undefined;
  afterEach(() => r?.stop());

  it('collects at the first idle period after a burst and the heap shrinks', async () => {
    const rec = recorder();
    r = startReclaimer(rec.log, { intervalMs: 100, growthBytes: 8 * 1024 * 1024, minGapMs: 0 });
    // start-up counts as a burst: the first idle period sets the baseline
    await until(() => r!.runs >= 1, 3000);
    assert.equal(r.runs, 1);
    burst(300, 64);
    const grown = getHeapStatistics().total_heap_size;
    await until(() => r!.runs >= 2, 3000);
    assert.equal(r.runs, 2, 'no reclaim after the burst');
    const [first, run] = rec.runs;
    assert.ok(grown > first.heapAfter + 32 * 1024 * 1024, `the burst did not grow the heap: ${grown}`);
    assert.ok(run.heapBefore >= first.heapAfter + 8 * 1024 * 1024, `reclaimed below the threshold: ${run.heapBefore}`);
    // back to about the size after the first reclaim
    assert.ok(run.heapAfter < first.heapAfter + 8 * 1024 * 1024, `heap ${run.heapBefore} -> ${run.heapAfter}, baseline ${first.heapAfter}`);
  });

  it('never collects under steady light load, nor twice within minGapMs', async () => {
    const rec = recorder();
    // 500 ms periods: in a long test run one collection of mocha's own heap (or of the ring below, on a
    // slow machine) must not make a period a burst; at 300 ms one did in a full CI run
    r = startReclaimer(rec.log, { intervalMs: 500, growthBytes: 8 * 1024 * 1024, minGapMs: 0 });
    await until(() => r!.runs >= 1, 5000);
    assert.equal(r.runs, 1);
    // a little work every 25 ms for 2 s (neither a burst nor idle) that grows the heap
    const ring: number[][] = [];
    const end = Date.now() + 2000;
    for (let i = 0; Date.now() < end; i++) {
      ring[i % 16] = new Array<number>(1 << 18).fill(i);
      await sleep(25);
    }
    assert.ok(getHeapStatistics().total_heap_size > rec.runs[0].heapAfter + 8 * 1024 * 1024, 'the heap did not grow');
    ring.length = 0;
    // at least two whole idle periods: a reclaim owed to the light load would have run by then
    await sleep(1500);
    assert.equal(r.runs, 1, 'light load reclaimed');
    r.stop();

    const gap = startReclaimer(rec.log, { intervalMs: 100, growthBytes: 8 * 1024 * 1024, minGapMs: 60_000 });
    r = gap;
    await until(() => gap.runs >= 1, 3000);
    burst(300, 64);
    await sleep(600);
    assert.equal(gap.runs, 1, 'reclaimed twice within minGapMs');
  });
});
