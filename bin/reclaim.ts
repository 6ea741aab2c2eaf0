/**
 * Gives memory back to the system once a burst of work is over.
 *
 * A burst of logins (devices reconnecting after a network blip, a morning of
 * clients coming online) allocates about 100 KB per login that lives for a
 * few milliseconds. Some of it outlives two young-generation collections and
 * is promoted; V8 then grows the old generation and the young generation to
 * their high-water marks and keeps them: with nothing left to allocate, no
 * further collection runs, and V8's own memory reducer may wait a long time
 * or never start. 10,000 idle XMPP sessions that need ~3 KB each held ~12 KB
 * each of resident memory that way (bench/PROFILE-NOTES.md, eighth round).
 *
 * This watcher samples the event loop once a second. After a burst (a second
 * in which the loop was busy at least `busyElu` of the time), at the first
 * idle second (busy at most `idleElu`), if the heap has grown well past its
 * size after the last reclaim and the last reclaim is `minGapMs` old, it asks
 * V8 for the collection it runs under memory pressure
 * (`HeapProfiler.collectGarbage` through an in-process inspector session: a
 * full mark-compact that also shrinks the young generation and returns freed
 * pages; a plain full collection frees the objects but keeps the pages). The
 * pause (100-300 ms for a 200 MB heap of 10,000 sessions) lands when nothing
 * was waiting; under steady load the loop is never idle for a second, and
 * light load is never a burst, so nothing happens.
 */

import { Session } from 'node:inspector';
import { getHeapStatistics } from 'node:v8';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../broker/index.ts';

export interface ReclaimOptions {
  /** sampling period, ms */
  intervalMs?: number;
  /** a period counts as idle when the event loop was busy at most this fraction of it */
  idleElu?: number;
  /** a period counts as busy (a burst) when the event loop was busy at least this fraction of it */
  busyElu?: number;
  /** reclaim when the heap is this many bytes above its size after the last reclaim */
  growthBytes?: number;
  /** at most one reclaim per this many ms */
  minGapMs?: number;
  /**
   * The event loop's busy fraction over the period just ended; default
   * `performance.eventLoopUtilization`. Tests give their own, so that what
   * counts as a burst, light load or idle is theirs to say, not the
   * machine's (a loaded CI host makes any period look busy).
   */
  utilization?: () => number;
}

export interface Reclaimer {
  /** number of collections run so far */
  readonly runs: number;
  stop(): void;
}

/** Heap size (bytes V8 has committed) to compare against. */
function heapBytes(): number {
  return getHeapStatistics().total_heap_size;
}

function collect(): Promise<void> {
  return new Promise((resolve) => {
    const session = new Session();
    try {
      session.connect();
    } catch {
      resolve();
      return;
    }
    session.post('HeapProfiler.collectGarbage', () => {
      // disconnecting inside the response callback hangs Node 20's event loop
      setImmediate(() => {
        session.disconnect();
        resolve();
      });
    });
  });
}

export function startReclaimer(log: Logger, opts: ReclaimOptions = {}): Reclaimer {
  const intervalMs = opts.intervalMs ?? 1000;
  const idleElu = opts.idleElu ?? 0.05;
  const busyElu = opts.busyElu ?? 0.5;
  const growth = opts.growthBytes ?? 32 * 1024 * 1024;
  const minGapMs = opts.minGapMs ?? 10_000;
  // Start-up counts as a burst and the first baseline is 0: the garbage of
  // loading modules is reclaimed at the first idle second.
  let burst = true;
  let baseline = 0;
  let lastRun = -Infinity;
  let runs = 0;
  let running = false;
  let last = performance.eventLoopUtilization();
  const utilization =
    opts.utilization ??
    (() => {
      const now = performance.eventLoopUtilization();
      const u = performance.eventLoopUtilization(now, last).utilization;
      last = now;
      return u;
    });
  const timer = setInterval(() => {
    const elu = utilization();
    if (running) return;
    if (elu >= busyElu) burst = true;
    // Steady light load never reclaims: it is never a burst followed by an idle second.
    if (!burst || elu > idleElu || performance.now() - lastRun < minGapMs) return;
    const before = heapBytes();
    if (before < baseline + growth) return;
    running = true;
    const t0 = performance.now();
    void collect().then(() => {
      const after = heapBytes();
      baseline = after;
      runs++;
      burst = false;
      running = false;
      lastRun = performance.now();
      log.info(
        { heapBefore: before, heapAfter: after, ms: Math.round(performance.now() - t0) },
        'reclaimed memory after a burst',
      );
      // the collection itself was busy time; do not count it as load
      last = performance.eventLoopUtilization();
    });
  }, intervalMs);
  timer.unref();
  return {
    get runs() {
      return runs;
    },
    stop: () => clearInterval(timer),
  };
}
