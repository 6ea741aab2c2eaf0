/**
 * Run the fuzz targets of fuzz/targets/ (docs/fuzzing.md).
 *
 *   npm run fuzz                      every target, 60 s each
 *   npm run fuzz -- xmpp-parser 300   one target, 5 minutes
 *   npm run fuzz -- --regress         replay the committed corpus (and crash reproducers) once
 *
 * Each target runs in a worker thread (fuzz/engine.ts) watched from here:
 * an input that makes no progress for --hang-ms, or that exhausts the
 * worker's heap, is saved like a crash and the worker is restarted. Exit
 * status 1 when any target broke its contract.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { EngineMessage, EngineOptions } from '../fuzz/engine.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FUZZ = path.join(ROOT, 'fuzz');
const ENGINE = path.join(FUZZ, 'worker.mjs');

interface Args {
  targets: string[];
  seconds: number;
  regress: boolean;
  hangMs: number;
  heapMb: number;
  workDir: string;
  seed: number;
}

function parseArgs(argv: string[]): Args {
  const all = readdirSync(path.join(FUZZ, 'targets'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.slice(0, -3))
    .sort();
  const a: Args = {
    targets: [],
    seconds: 60,
    regress: false,
    hangMs: 10_000,
    heapMb: 512,
    workDir: path.join(os.tmpdir(), 'parley-fuzz'),
    seed: Date.now(),
  };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    if (v === '--regress') a.regress = true;
    else if (v === '--hang-ms') a.hangMs = Number(argv[++i]);
    else if (v === '--heap-mb') a.heapMb = Number(argv[++i]);
    else if (v === '--work') a.workDir = path.resolve(argv[++i]);
    else if (v === '--seed') a.seed = Number(argv[++i]);
    else if (v === '--help' || v === '-h') {
      console.log(
        `usage: npm run fuzz -- [target...] [seconds] [--regress] [--hang-ms N] [--heap-mb N] [--work DIR] [--seed N]\ntargets: ${all.join(', ')}`,
      );
      process.exit(0);
    } else if (/^\d+$/.test(v)) a.seconds = Number(v);
    else if (all.includes(v)) a.targets.push(v);
    else {
      console.error(`unknown target or option ${v}; targets: ${all.join(', ')}`);
      process.exit(2);
    }
  }
  if (a.targets.length === 0) a.targets = all;
  return a;
}

interface Result {
  target: string;
  execs: number;
  corpus: number;
  features: number;
  coveredBlocks: number;
  totalBlocks: number;
  ms: number;
  crashes: string[];
}

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

/** One worker run; resolves with its final stats, or with what the watchdog saw when it hung or ran out of heap. */
function runWorker(
  args: Args,
  name: string,
  seconds: number,
  res: Result,
  attempt: number,
): Promise<'done' | 'restart'> {
  const maxLen = 1 << 16;
  const shared = new SharedArrayBuffer(8 + maxLen);
  const header = new Int32Array(shared, 0, 2);
  const opts: EngineOptions = {
    targetFile: path.join(FUZZ, 'targets', `${name}.ts`),
    name,
    seconds,
    seedDir: path.join(FUZZ, 'corpus', name),
    workDir: path.join(args.workDir, name),
    crashDir: path.join(FUZZ, 'corpus', name),
    regress: args.regress,
    rngSeed: args.seed + attempt * 7919,
    shared,
  };
  const worker = new Worker(ENGINE, {
    workerData: opts,
    resourceLimits: { maxOldGenerationSizeMb: args.heapMb },
  });
  const saveCurrent = (kind: string, why: string): void => {
    const input = Buffer.from(new Uint8Array(shared, 8, Atomics.load(header, 1)));
    const dir = path.join(FUZZ, 'corpus', name);
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${kind}-${sha1(input).slice(0, 16)}`);
    writeFileSync(file, input);
    res.crashes.push(`${kind}: ${why} (input ${file}, ${input.length} bytes)`);
    console.log(
      `  [${name}] ${kind.toUpperCase()}: ${why}\n    input saved to ${path.relative(ROOT, file)}: ${JSON.stringify(input.toString('latin1').slice(0, 200))}`,
    );
  };
  return new Promise((resolve) => {
    let lastExecs = -1;
    let lastChange = Date.now();
    let loaded = false;
    let outcome: 'done' | 'restart' = 'done';
    const dog = setInterval(() => {
      const e = Atomics.load(header, 0);
      if (e !== lastExecs) {
        lastExecs = e;
        lastChange = Date.now();
        loaded ||= e > 0;
        return;
      }
      // Loading the target (tsx compiling it) is not a hang; a stuck input is.
      if (loaded && Date.now() - lastChange > args.hangMs) {
        saveCurrent('hang', `no progress for ${args.hangMs} ms`);
        outcome = 'restart';
        void worker.terminate();
      }
    }, 250);
    worker.on('message', (m: EngineMessage) => {
      if (m.type === 'crash') {
        res.crashes.push(`${m.signature} (input ${m.file})`);
        console.log(
          `  [${name}] CRASH ${m.signature}\n    ${m.message.split('\n').join('\n    ')}\n    input: ${path.relative(ROOT, m.file)}: ${m.input}`,
        );
      } else {
        res.execs = m.execs;
        res.corpus = m.corpus;
        res.features = m.features;
        res.coveredBlocks = m.coveredBlocks;
        res.totalBlocks = m.totalBlocks;
        res.ms = m.ms;
        if (m.type === 'stats')
          console.log(
            `  [${name}] ${(m.ms / 1000).toFixed(0)} s: ${m.execs} execs (${Math.round(m.execs / (m.ms / 1000))}/s), corpus ${m.corpus}, features ${m.features}, blocks ${m.coveredBlocks}/${m.totalBlocks}`,
          );
      }
    });
    worker.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') {
        saveCurrent('oom', `worker heap (${args.heapMb} MiB) exhausted`);
        outcome = 'restart';
      } else {
        res.crashes.push(`engine error: ${err.stack ?? err.message}`);
        console.log(`  [${name}] engine error: ${err.stack ?? err.message}`);
      }
    });
    worker.on('exit', () => {
      clearInterval(dog);
      resolve(outcome);
    });
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  console.log(
    args.regress
      ? `replaying the corpus of ${args.targets.join(', ')}`
      : `fuzzing ${args.targets.join(', ')} for ${args.seconds} s each (seed ${args.seed}, working corpus in ${args.workDir})`,
  );
  const results: Result[] = [];
  for (const name of args.targets) {
    const res: Result = {
      target: name,
      execs: 0,
      corpus: 0,
      features: 0,
      coveredBlocks: 0,
      totalBlocks: 0,
      ms: 0,
      crashes: [],
    };
    const end = Date.now() + args.seconds * 1000;
    let execs = 0;
    for (let attempt = 0; attempt < 20; attempt++) {
      const left = Math.max(1, Math.round((end - Date.now()) / 1000));
      const outcome = await runWorker(args, name, left, res, attempt);
      execs += res.execs;
      res.execs = 0;
      if (outcome === 'done' || args.regress || Date.now() >= end) break;
    }
    res.execs = execs;
    results.push(res);
    console.log(
      `${name}: ${res.execs} execs in ${(res.ms / 1000).toFixed(0)} s, corpus ${res.corpus}, features ${res.features}, blocks covered ${res.coveredBlocks} of ${res.totalBlocks} seen, ${res.crashes.length} finding(s)`,
    );
  }
  console.log(
    '\n| target | execs | corpus | features | blocks covered / seen | findings |\n| --- | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const r of results)
    console.log(
      `| ${r.target} | ${r.execs} | ${r.corpus} | ${r.features} | ${r.coveredBlocks} / ${r.totalBlocks} | ${r.crashes.length} |`,
    );
  process.exitCode = results.some((r) => r.crashes.length) ? 1 : 0;
}

await main();
