// Start-up time and memory of a node: compiled (dist/, `npm run build`) vs
// the sources through tsx. Each run: a fresh data directory (with a
// certificate generated once beforehand, so key generation is not timed),
// spawn bin/parley with PARLEY_RUNTIME, time until "parley node ready",
// then RSS from /proc after 2 s idle. Usage: node --import tsx bench/startup.ts [runs]
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, ZERO_PORTS } from '../conformance/node-args.ts';

const LAUNCHER = path.join(ROOT, 'bin', 'parley');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssKiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1]);
}

async function once(
  runtime: 'dist' | 'tsx',
  seed: string,
  inPlace = false,
): Promise<{ readyMs: number; rssMiB: number }> {
  const dir = inPlace ? seed : mkdtempSync(path.join(os.tmpdir(), 'parley-startup-'));
  if (!inPlace) cpSync(seed, dir, { recursive: true });
  const t0 = performance.now();
  const p = spawn(LAUNCHER, ['--data-dir', dir, ...ZERO_PORTS, '--log-format', 'json', 'start'], {
    env: { ...process.env, PARLEY_RUNTIME: runtime },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const readyMs = await new Promise<number>((resolve, reject) => {
    let buf = '';
    p.stdout.on('data', (d) => {
      buf += d;
      if (buf.includes('"parley node ready"')) resolve(performance.now() - t0);
    });
    p.once('exit', (code) => reject(new Error(`exited ${code}`)));
  });
  await sleep(2000);
  const rss = rssKiB(p.pid!);
  p.kill('SIGTERM');
  await new Promise((r) => p.once('exit', r));
  if (!inPlace) rmSync(dir, { recursive: true, force: true });
  return { readyMs, rssMiB: rss / 1024 };
}

const runs = Number(process.argv[2] ?? 5);
const seed = mkdtempSync(path.join(os.tmpdir(), 'parley-startup-seed-'));
// one start generates the certificate; every timed run copies it
await once('dist', seed, true);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = {
  dist: [] as { readyMs: number; rssMiB: number }[],
  tsx: [] as { readyMs: number; rssMiB: number }[],
};
// alternating, so that a busy moment of a shared machine hits both alike
for (let i = 0; i < runs; i++)
  for (const runtime of ['dist', 'tsx'] as const) results[runtime].push(await once(runtime, seed));
for (const [runtime, res] of Object.entries(results)) {
  const ready = res.map((r) => r.readyMs);
  console.log(
    `${runtime}: ready ${median(ready).toFixed(0)} ms (median of ${runs}; min ${Math.min(...ready).toFixed(0)}, max ${Math.max(...ready).toFixed(0)}), RSS ${median(res.map((r) => r.rssMiB)).toFixed(1)} MiB after 2 s idle`,
  );
}
rmSync(seed, { recursive: true, force: true });
