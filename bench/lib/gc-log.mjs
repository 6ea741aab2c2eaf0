// Preload (node --import ./bench/lib/gc-log.mjs) that appends every garbage
// collection of the main thread to $PARLEY_BENCH_GC_LOG, one line each:
// "<start, monotonic clock in µs> <pause ms> <kind: 1 scavenge, 4 mark-compact, 8 incremental, 16 weak callbacks>".
// The clock is the one PARLEY_BENCH_LAT_DUMP and --cpu-prof use, so
// bench/tail-gc.ts can tell which slow messages a collection held up.

import { PerformanceObserver, performance } from 'node:perf_hooks';
import fs from 'node:fs';

const file = process.env.PARLEY_BENCH_GC_LOG;
if (file) {
  const offsetUs = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;
  let lines = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      lines.push(
        `${Math.round(e.startTime * 1000 + offsetUs)} ${e.duration.toFixed(3)} ${e.detail?.kind}`,
      );
  }).observe({ entryTypes: ['gc'] });
  const flush = () => {
    if (lines.length) fs.appendFileSync(file, lines.join('\n') + '\n');
    lines = [];
  };
  setInterval(flush, 1000).unref();
  process.on('exit', flush);
}
