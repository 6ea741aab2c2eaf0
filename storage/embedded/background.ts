/**
 * LevelDB compacts in one background thread of its own, started the first
 * time it has something to compact. The server's event loop shares the CPU
 * with it: on a busy core a compaction of the archive takes half the core for
 * seconds, and every message waiting meanwhile is late by a scheduler slice.
 * On Linux that thread is started on purpose while the database opens and
 * then runs at the lowest priority (nice 19): it still gets every cycle the
 * event loop leaves, and LevelDB itself slows writers down when compaction
 * falls behind, so it cannot be starved for good.
 *
 * Threads are found by difference: those of the process before the open
 * (the main thread, V8's and libuv's pools, which the directory creation has
 * started already) against those after it. Anything else is left alone.
 */

import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';

/** The nice value of LevelDB's background thread. */
export const BACKGROUND_NICE = 19;

/** Thread ids of this process, or undefined where /proc has no task list. */
export function threadIds(): Set<number> | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    return new Set(readdirSync('/proc/self/task').map(Number));
  } catch {
    return undefined;
  }
}

/**
 * Lowers the priority of the threads started since `before` was taken; the
 * ids of those changed. Failing to (another OS, a container that forbids it)
 * only loses the optimisation.
 */
export function lowerNewThreads(before: Set<number> | undefined): number[] {
  const after = threadIds();
  if (!before || !after) return [];
  const lowered: number[] = [];
  for (const tid of after) {
    if (before.has(tid) || tid === process.pid) continue;
    try {
      // On Linux the nice value is per thread: setpriority(PRIO_PROCESS, tid).
      setPriority(tid, BACKGROUND_NICE);
      lowered.push(tid);
    } catch {
      // not ours to change, or gone already
    }
  }
  return lowered;
}
