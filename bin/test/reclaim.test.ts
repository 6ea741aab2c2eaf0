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
    // The busy fraction each period reports is the test's, not the machine's: on a loaded CI host the
    // real one of "a little work every 25 ms" crossed the burst threshold and made the test fail.
    let load = 0;
    r = startReclaimer(rec.log, { intervalMs: 100, growthBytes: 8 * 1024 * 1024, minGapMs: 0, utilization: () => load });
    await until(() => r!.runs >= 1, 5000); // start-up counts as a burst
    assert.equal(r.runs, 1);
    // light load (20 % busy: neither a burst nor idle) while the heap grows
    load = 0.2;
    const ring: number[][] = [];
    for (let i = 0; i < 40; i++) {
      ring[i % 16] = new Array<number>(1 << 18).fill(i);
      await sleep(25);
    }
    assert.ok(getHeapStatistics().total_heap_size > rec.runs[0].heapAfter + 8 * 1024 * 1024, 'the heap did not grow');
    // then idle periods: light load was no burst, so nothing is owed
    load = 0;
    await sleep(600);
    assert.equal(r.runs, 1, 'light load reclaimed');
    // the same heap after a burst and an idle period is reclaimed (the test above can fail)
    load = 0.9;
    await sleep(250);
    load = 0;
    await until(() => r!.runs >= 2, 5000);
    ring.length = 0;
    r.stop();

    let gapLoad = 0;
    const gap = startReclaimer(rec.log, { intervalMs: 100, growthBytes: 8 * 1024 * 1024, minGapMs: 60_000, utilization: () => gapLoad });
    r = gap;
    await until(() => gap.runs >= 1, 3000);
    burst(300, 64);
    gapLoad = 0.9;
    await sleep(250);
    gapLoad = 0;
    await sleep(600);
    assert.equal(gap.runs, 1, 'reclaimed twice within minGapMs');
  });
});
