// Development aid, not part of the runner: which of a fixed-rate run's slowest
// messages (the p99 tail) a garbage collection held up, in the server or in
// the generator.
//   PARLEY_BENCH_LAT_DUMP=lat.txt taskset -c 1 node [--import ./bench/lib/gc-log.mjs] --import tsx bench/mqtt-load.ts … --mode rate
//   node --import tsx bench/tail-gc.ts lat.txt server-gc.txt [generator-gc.txt]
// The server's log comes from starting it with --import ./bench/lib/gc-log.mjs
// and PARLEY_BENCH_GC_LOG=FILE (dev-server: --node-args import=/abs/path/bench/lib/gc-log.mjs).
import { readFileSync } from 'node:fs';

const KIND: Record<string, string> = {
  '1': 'scavenge',
  '2': 'minor-mc',
  '4': 'mark-compact',
  '8': 'incremental',
  '16': 'weak',
};
const [latFile, serverFile, genFile] = process.argv.slice(2);
if (!latFile || !serverFile) {
  console.error('usage: tail-gc.ts LAT_DUMP SERVER_GC_LOG [GENERATOR_GC_LOG]');
  process.exit(2);
}
const rows = (file: string) =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' '));
// [send time µs, latency ms]
const msgs = rows(latFile).map(([t, l]) => [Number(t), Number(l)] as const);
const gcs = [
  ...rows(serverFile).map(([s, d, k]) => ({
    who: 'server',
    s: Number(s),
    e: Number(s) + Number(d) * 1000,
    d: Number(d),
    kind: KIND[k] ?? k,
  })),
  ...(genFile ? rows(genFile) : []).map(([s, d, k]) => ({
    who: 'generator',
    s: Number(s),
    e: Number(s) + Number(d) * 1000,
    d: Number(d),
    kind: KIND[k] ?? k,
  })),
];
const first = msgs[0][0];
const last = msgs[msgs.length - 1][0] + msgs[msgs.length - 1][1] * 1000;
const inRun = gcs.filter((g) => g.e >= first && g.s <= last);
const sorted = msgs.map((m) => m[1]).sort((a, b) => a - b);
const q = (v: number[], p: number) => v[Math.min(v.length - 1, Math.floor(p * v.length))];
const p99 = q(sorted, 0.99);
/** the collection that overlapped a message's time in flight, if any */
const heldBy = (m: readonly [number, number]) =>
  inRun.find((g) => g.s <= m[0] + m[1] * 1000 && g.e >= m[0]);
const tail = msgs.filter((m) => m[1] >= p99);
const byCause = new Map<string, number>();
for (const m of tail) {
  const g = heldBy(m);
  const k = g ? `${g.who} ${g.kind}` : 'no collection';
  byCause.set(k, (byCause.get(k) ?? 0) + 1);
}
const untouched = msgs
  .filter((m) => !heldBy(m))
  .map((m) => m[1])
  .sort((a, b) => a - b);
console.log(
  `${msgs.length} messages over ${((last - first) / 1e6).toFixed(1)} s: p50 ${q(sorted, 0.5)} ms, p99 ${p99} ms`,
);
console.log(
  `p99 of the messages no collection overlapped: ${q(untouched, 0.99)} ms (${msgs.length - untouched.length} overlapped one)`,
);
console.log(`the ${tail.length} messages at or above the p99, by what overlapped them:`);
for (const [k, n] of [...byCause].sort((a, b) => b[1] - a[1]))
  console.log(`  ${String(n).padStart(5)}  ${k}`);
console.log('collections during the run:');
const groups = new Map<string, number[]>();
for (const g of inRun)
  groups.set(`${g.who} ${g.kind}`, [...(groups.get(`${g.who} ${g.kind}`) ?? []), g.d]);
for (const [k, ds] of groups)
  console.log(
    `  ${k}: ${ds.length}, mean ${(ds.reduce((a, b) => a + b, 0) / ds.length).toFixed(2)} ms, longest ${Math.max(...ds).toFixed(2)} ms`,
  );
