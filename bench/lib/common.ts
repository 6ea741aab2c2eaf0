// Shared helpers for the load generators: flags, percentiles, RSS, one JSON result line.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export type Flags = Record<string, string>;

/** `--key value` and `--flag` (value "true"). */
export function parseFlags(argv = process.argv.slice(2)): Flags {
  const out: Flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out[a.slice(2)] = 'true';
    else out[a.slice(2)] = argv[++i];
  }
  return out;
}

export function num(f: Flags, key: string, dflt: number): number {
  const v = f[key];
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${key}: not a number`);
  return n;
}

export function str(f: Flags, key: string, dflt: string): string {
  return f[key] ?? dflt;
}

export const now = (): number => performance.now();

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** p50/p90/p99/max of latency samples in ms, rounded to µs. */
export function percentiles(samples: number[]): {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  n: number;
} {
  if (samples.length === 0) return { p50: NaN, p90: NaN, p99: NaN, max: NaN, n: 0 };
  const s = Float64Array.from(samples).sort();
  const at = (q: number) =>
    Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))] * 1000) / 1000;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1), n: s.length };
}

/** Resident set size of a process in KiB (VmRSS of /proc/PID/status). */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/**
 * CPU time (user + system, all threads) a process has used, in µs, from
 * /proc/PID/stat: a server's cost per message that other load on the machine
 * changes far less than a wall-clock rate does.
 */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) in parentheses: utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / CLK_TCK;
}

/** A process's read and write system calls so far (all its threads, /proc/PID/io; sockets and files alike). */
export function syscallCounts(pid: number): { reads: number; writes: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return {
    reads: Number(/^syscr: (\d+)/m.exec(io)?.[1]),
    writes: Number(/^syscw: (\d+)/m.exec(io)?.[1]),
  };
}

/** Clock ticks per second of /proc times (USER_HZ: 100 on Linux). */
const CLK_TCK = 100;

/** Loopback source addresses 127.0.0.2…, so 10,000 connections do not exhaust one address's ports or per-IP limits. */
export function sourceAddress(i: number, spread: number): string {
  return `127.0.0.${2 + (i % spread)}`;
}

/** Print the single machine-readable result line. */
export function result(obj: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ ok: true, ...obj }) + '\n');
}

/** Run main(), print a failure line and exit non-zero on error; exit when done (sockets may linger). */
export function run(main: () => Promise<Record<string, unknown>>, hardLimitMs = 300_000): void {
  const t = setTimeout(() => {
    process.stdout.write(JSON.stringify({ ok: false, error: 'time limit reached' }) + '\n');
    process.exit(3);
  }, hardLimitMs);
  t.unref();
  main().then(
    (r) => {
      result(r);
      process.exit(0);
    },
    (err: Error) => {
      process.stdout.write(JSON.stringify({ ok: false, error: err.message }) + '\n');
      process.exit(1);
    },
  );
}

/** Run fn over items with at most `limit` in flight. */
export async function pool<T>(
  items: number,
  limit: number,
  fn: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = new Array(items);
  let next = 0;
  const worker = async () => {
    while (next < items) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items) }, worker));
  return out;
}
