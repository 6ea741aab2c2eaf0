/**
 * A small coverage-guided fuzzer on V8's own block coverage, run inside a
 * worker thread by scripts/fuzz.ts.
 *
 * Why not Jazzer.js: its only release that installs without downloading
 * (4.0.0, binary inside the npm tarball) is built against glibc 2.38 and does
 * not load on Debian 12 (glibc 2.36); older releases fetch their binary at
 * install time, and the tarball carries no C++ source to build. See
 * docs/fuzzing.md.
 *
 * The loop is libFuzzer's in miniature: the worker starts precise coverage
 * (`Profiler.startPreciseCoverage`, call counts + block ranges) through the
 * in-process inspector BEFORE importing the target, runs one input, takes
 * the coverage (which resets the counters), and turns every executed block
 * of the covered files into a feature (block × log2 bucket of its count). An
 * input that shows a feature never seen before joins the corpus; new inputs
 * are corpus entries mutated by libFuzzer-style byte mutators, dictionary
 * tokens and crossover.
 *
 * The input being run is mirrored into shared memory first, so the parent
 * can save it when the worker hangs (no progress) or runs out of heap.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import type { FuzzTarget } from './target.ts';

export interface EngineOptions {
  /** fuzz/targets/<name>.ts, absolute */
  targetFile: string;
  name: string;
  /** run for this long (fuzz mode) */
  seconds: number;
  /** seed corpus (committed) and the working corpus (kept between runs, outside the repo) */
  seedDir: string;
  workDir: string;
  /** where a crashing input is written */
  crashDir: string;
  /** replay seed + work corpus once and stop */
  regress: boolean;
  rngSeed: number;
  /** shared: [0] execs, [1] length of the input being run; then the input bytes */
  shared: SharedArrayBuffer;
}

export type EngineMessage =
  | {
      type: 'stats';
      execs: number;
      corpus: number;
      features: number;
      coveredBlocks: number;
      totalBlocks: number;
      ms: number;
    }
  | {
      type: 'crash';
      signature: string;
      message: string;
      file: string;
      input: string;
      fresh: boolean;
    }
  | {
      type: 'done';
      execs: number;
      corpus: number;
      features: number;
      coveredBlocks: number;
      totalBlocks: number;
      ms: number;
      crashes: number;
    };

const HEADER = 8;

// ------------------------------------------------------------------ rng ----

let rs = 1;
function rnd(n: number): number {
  rs ^= rs << 13;
  rs ^= rs >>> 17;
  rs ^= rs << 5;
  rs >>>= 0;
  return n <= 1 ? 0 : rs % n;
}

// ------------------------------------------------------------- mutators ----

const INTERESTING = [
  0x00, 0x01, 0x7f, 0x80, 0xff, 0x0a, 0x0d, 0x20, 0x3c, 0x3e, 0x26, 0x27, 0x22, 0x2f, 0x3a, 0x3d,
  0x7b, 0x7d, 0x5b, 0x5d, 0xc0, 0xe0, 0xef, 0xf0, 0xf4, 0xf8,
];
const NUMBERS = [
  '0',
  '-1',
  '1',
  '127',
  '128',
  '255',
  '256',
  '65535',
  '65536',
  '2147483648',
  '4294967296',
  '9007199254740992',
  '1e308',
  'NaN',
  '0x10',
  '1.5',
];
/** Unicode that normalisation, case mapping and UTF-8 decoding treat specially. */
const UNICODE = [
  '\u0130',
  '\u212a',
  '\u2126',
  '\u1e9e',
  '\u00df',
  '\ufb01',
  '\u0345',
  '\u03f4',
  '\u2460',
  '\uff21',
  '\u200b',
  '\u202e',
  '\u0301',
  '\u1100\u1161',
  '\ufeff',
  '\ufffd',
  '\u{1f600}',
  '\u{10ffff}',
  '\u0000',
];
const BAD_UTF8 = [
  Buffer.from([0xc0, 0x80]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  Buffer.from([0xe2, 0x82]),
  Buffer.from([0xff]),
  Buffer.from([0xf0, 0x9f, 0x98]),
];

function pickToken(dict: Buffer[]): Buffer {
  const r = rnd(10);
  if (r < 6 && dict.length) return dict[rnd(dict.length)];
  if (r < 7) return Buffer.from(NUMBERS[rnd(NUMBERS.length)]);
  if (r < 9) return Buffer.from(UNICODE[rnd(UNICODE.length)]);
  return BAD_UTF8[rnd(BAD_UTF8.length)];
}

function mutateOnce(b: Buffer, dict: Buffer[], corpus: Buffer[], maxLen: number): Buffer {
  const len = b.length;
  const pos = () => rnd(len + 1);
  switch (rnd(12)) {
    case 0: // flip a bit
      if (!len) break;
      b = Buffer.from(b);
      b[rnd(len)] ^= 1 << rnd(8);
      return b;
    case 1: // an interesting byte
      if (!len) break;
      b = Buffer.from(b);
      b[rnd(len)] = INTERESTING[rnd(INTERESTING.length)];
      return b;
    case 2: {
      // insert random bytes
      const n = 1 + rnd(8);
      const ins = Buffer.alloc(n);
      for (let i = 0; i < n; i++) ins[i] = rnd(3) ? 0x20 + rnd(95) : rnd(256);
      const p = pos();
      return Buffer.concat([b.subarray(0, p), ins, b.subarray(p)]);
    }
    case 3: {
      // delete a range
      if (!len) break;
      const p = rnd(len);
      const n = 1 + rnd(Math.min(len - p, 32));
      return Buffer.concat([b.subarray(0, p), b.subarray(p + n)]);
    }
    case 4:
    case 5: {
      // insert a token
      const p = pos();
      return Buffer.concat([b.subarray(0, p), pickToken(dict), b.subarray(p)]);
    }
    case 6: {
      // overwrite with a token
      const t = pickToken(dict);
      const p = pos();
      return Buffer.concat([b.subarray(0, p), t, b.subarray(Math.min(len, p + t.length))]);
    }
    case 7: {
      // duplicate a range (nesting, repetition)
      if (!len) break;
      const p = rnd(len);
      const n = 1 + rnd(Math.min(len - p, 256));
      const times = 1 + rnd(rnd(8) === 0 ? 64 : 3);
      const piece = b.subarray(p, p + n);
      return Buffer.concat([
        b.subarray(0, p + n),
        ...Array.from({ length: times }, () => piece),
        b.subarray(p + n),
      ]);
    }
    case 8: {
      // crossover: a prefix of this, a suffix of another
      const o = corpus[rnd(corpus.length)];
      if (!o) break;
      return Buffer.concat([b.subarray(0, pos()), o.subarray(rnd(o.length + 1))]);
    }
    case 9: {
      // splice a piece of another entry in
      const o = corpus[rnd(corpus.length)];
      if (!o || !o.length) break;
      const s = rnd(o.length);
      const p = pos();
      return Buffer.concat([b.subarray(0, p), o.subarray(s, s + 1 + rnd(64)), b.subarray(p)]);
    }
    case 10: {
      // a run of digits becomes an interesting number
      const s = b.toString('latin1');
      const runs = [...s.matchAll(/-?\d+/g)];
      if (!runs.length) break;
      const m = runs[rnd(runs.length)];
      return Buffer.concat([
        b.subarray(0, m.index),
        Buffer.from(NUMBERS[rnd(NUMBERS.length)]),
        b.subarray(m.index! + m[0].length),
      ]);
    }
    case 11: // truncate
      if (!len) break;
      return b.subarray(0, rnd(len));
  }
  return Buffer.concat([b, pickToken(dict)]).subarray(0, maxLen);
}

function mutate(b: Buffer, dict: Buffer[], corpus: Buffer[], maxLen: number): Buffer {
  const n = 1 + rnd(rnd(4) === 0 ? 16 : 4);
  for (let i = 0; i < n; i++) b = mutateOnce(b, dict, corpus, maxLen);
  return b.length > maxLen ? b.subarray(0, maxLen) : b;
}

// ------------------------------------------------------------- coverage ----

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface ScriptCoverage {
  scriptId: string;
  url: string;
  functions: { ranges: Range[] }[];
}

function bucket(count: number): number {
  return count === 1
    ? 0
    : count === 2
      ? 1
      : count === 3
        ? 2
        : count < 8
          ? 3
          : count < 16
            ? 4
            : count < 32
              ? 5
              : count < 128
                ? 6
                : 7;
}

class Coverage {
  private readonly session = new Session();
  private readonly scripts = new Map<string, number>();
  /** set once the target module (which names them) is loaded */
  wanted: string[] = [];
  /** blocks ever executed, by script index and range (for the stats line) */
  readonly blocks = new Set<number>();
  /** every block range of the covered files seen so far, executed or not */
  readonly known = new Set<number>();
  /** block ranges ever reported inside each function, by script index and function start */
  private readonly fnBlocks = new Map<string, Map<number, [number, number]>>();

  constructor() {
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  private post(method: string, params?: object): any {
    let out: any;
    let error: Error | null = null;
    // The in-thread session answers synchronously.
    this.session.post(method, params ?? {}, (err, res) => {
      error = err;
      out = res;
    });
    if (error) throw error;
    return out;
  }

  private scriptIndex(sc: ScriptCoverage): number {
    let i = this.scripts.get(sc.url);
    if (i === undefined) {
      i = this.wanted.some((w) => sc.url.includes(w)) ? this.scripts.size + 1 : 0;
      this.scripts.set(sc.url, i);
    }
    return i;
  }

  /**
   * Features hit since the last call (taking coverage resets V8's counters).
   * V8 reports a function's range with its count, then only the nested
   * blocks whose count differs from the range around them (a block run as
   * often as its function is merged away). So every block range ever
   * reported for a function is remembered, and one that is absent this time
   * ran as often as the innermost reported range around it.
   */
  take(into: number[]): void {
    const res = this.post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    for (const sc of res.result) {
      const si = this.scriptIndex(sc);
      if (si === 0) continue;
      for (const f of sc.functions) {
        const [fn, ...inner] = f.ranges;
        if (!fn || fn.count === 0) continue;
        const fkey = `${si}:${fn.startOffset}`;
        let blocks = this.fnBlocks.get(fkey);
        if (!blocks) this.fnBlocks.set(fkey, (blocks = new Map()));
        for (const r of inner)
          if (!blocks.has(r.startOffset * 1e6 + r.endOffset))
            blocks.set(r.startOffset * 1e6 + r.endOffset, [r.startOffset, r.endOffset]);
        this.feature(into, si, fn.startOffset, fn.endOffset, fn.count);
        for (const [, [start, end]] of blocks) {
          // the innermost reported range holding this block gives its count
          let count = fn.count;
          let span = Infinity;
          for (const r of inner) {
            if (
              r.startOffset <= start &&
              r.endOffset >= end &&
              r.endOffset - r.startOffset < span
            ) {
              span = r.endOffset - r.startOffset;
              count = r.count;
            }
          }
          this.feature(into, si, start, end, count);
        }
      }
    }
  }

  private feature(into: number[], si: number, start: number, end: number, count: number): void {
    const block =
      (Math.imul(si, 0x9e3779b1) ^
        Math.imul(start, 0x85ebca6b) ^
        Math.imul(end + 1, 0xc2b2ae35)) >>>
      3;
    this.known.add(block);
    if (count === 0) return;
    this.blocks.add(block);
    into.push(block * 8 + bucket(count));
  }

  /** Covered files so far (those the target loaded). */
  files(): string[] {
    return [...this.scripts].filter(([, i]) => i > 0).map(([u]) => u);
  }
}

// --------------------------------------------------------------- corpus ----

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

/** Committed corpus files by content hash. */
const committed = new Map<string, string>();

function readDir(dir: string, remember = false): Buffer[] {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  const out: Buffer[] = [];
  for (const n of names) {
    const f = path.join(dir, n);
    if (n.startsWith('.') || !statSync(f).isFile()) continue;
    const data = readFileSync(f);
    if (remember) committed.set(sha1(data), f);
    out.push(data);
  }
  return out;
}

/**
 * What makes two findings the same: for a contract violation, the check that
 * failed (its line in the target) and the rule's wording up to the first
 * colon; otherwise the error's type and the first two frames outside fuzz/.
 */
function signatureOf(err: unknown): { signature: string; message: string } {
  const e = err instanceof Error ? err : new Error(String(err));
  const lines = (e.stack ?? '').split('\n').map((l) => l.trim().replace(/^at /, ''));
  const frame = (l: string) =>
    l
      .replace(
        /^.*?\(?file:\/\/[^)]*?\/(?=(?:fuzz|adapters|broker|bin|storage|node_modules)\/)/,
        '',
      )
      .replace(/\)$/, '');
  let where: string[];
  let what: string;
  if (e.name === 'ContractViolation') {
    where = lines.filter((l) => l.includes('/fuzz/targets/')).slice(0, 1);
    what = e.message.split(/[:"\n]/)[0].trim();
  } else {
    where = lines.filter((l) => l.includes('file://') && !l.includes('/fuzz/')).slice(0, 2);
    what = e.message.replace(/\d+/g, 'N').slice(0, 100);
  }
  return {
    signature: `${e.name}: ${what} @ ${where.map(frame).join(' < ')}`,
    message: (e.stack ?? e.message).split('\n').slice(0, 8).join('\n'),
  };
}

// ----------------------------------------------------------------- main ----

async function main(o: EngineOptions): Promise<void> {
  rs = o.rngSeed >>> 0 || 1;
  const header = new Int32Array(o.shared, 0, 2);
  const mirror = new Uint8Array(o.shared, HEADER);
  const send = (m: EngineMessage) => parentPort!.postMessage(m);

  // Coverage starts before the target is imported: V8 has block ranges only
  // for functions compiled while precise coverage is on.
  const cov = new Coverage();
  const mod = (await import(pathToFileURL(o.targetFile).href)) as { target: FuzzTarget };
  const target = mod.target;
  cov.wanted = target.cover;
  const dict = target.dict.map((t) => (typeof t === 'string' ? Buffer.from(t) : t));
  const seen = new Set<number>();
  const corpus: Buffer[] = [];
  const crashes = new Set<string>();
  let execs = 0;
  const feats: number[] = [];
  const t0 = Date.now();

  mkdirSync(o.workDir, { recursive: true });
  cov.take([]); // drop what loading the target ran

  const run = (input: Buffer): boolean => {
    const n = Math.min(input.length, mirror.length);
    mirror.set(input.subarray(0, n));
    Atomics.store(header, 1, n);
    let failed: unknown;
    try {
      target.fuzz(input);
    } catch (err) {
      failed = err ?? new Error('undefined thrown');
    }
    Atomics.store(header, 0, ++execs);
    feats.length = 0;
    cov.take(feats);
    let fresh = false;
    for (const f of feats) {
      if (!seen.has(f)) {
        seen.add(f);
        fresh = true;
      }
    }
    if (failed !== undefined) {
      const { signature, message } = signatureOf(failed);
      const isNew = !crashes.has(signature);
      crashes.add(signature);
      if (isNew) {
        // A committed reproducer is reported, not copied again.
        let file = committed.get(sha1(input));
        if (!file) {
          mkdirSync(o.crashDir, { recursive: true });
          file = path.join(o.crashDir, `crash-${sha1(input).slice(0, 16)}`);
          writeFileSync(file, input);
        }
        send({
          type: 'crash',
          signature,
          message,
          file,
          input: JSON.stringify(input.toString('latin1').slice(0, 400)),
          fresh: isNew,
        });
      }
      return false;
    }
    return fresh;
  };

  const stats = () => ({
    execs,
    corpus: corpus.length,
    features: seen.size,
    coveredBlocks: cov.blocks.size,
    totalBlocks: cov.known.size,
    ms: Date.now() - t0,
  });

  // Replay: the committed seeds (and crash reproducers), then the working corpus.
  const seeds = [...readDir(o.seedDir, true), ...readDir(o.workDir)];
  if (seeds.length === 0) seeds.push(Buffer.alloc(0));
  for (const s of seeds) if (run(s.subarray(0, target.maxLen))) corpus.push(s);
  if (corpus.length === 0) corpus.push(seeds[0]);

  if (!o.regress) {
    const deadline = t0 + o.seconds * 1000;
    let lastStats = Date.now();
    while (Date.now() < deadline) {
      for (let k = 0; k < 64; k++) {
        // Favour recent (deeper) entries a little.
        const i =
          rnd(3) === 0 ? corpus.length - 1 - rnd(Math.min(corpus.length, 16)) : rnd(corpus.length);
        const input = mutate(corpus[i], dict, corpus, target.maxLen);
        if (run(input)) {
          corpus.push(input);
          writeFileSync(path.join(o.workDir, sha1(input)), input);
        }
      }
      if (Date.now() - lastStats >= 10_000) {
        lastStats = Date.now();
        send({ type: 'stats', ...stats() });
      }
      // Let the parent's messages and timers run.
      await new Promise((r) => setImmediate(r));
    }
  }
  send({ type: 'done', ...stats(), crashes: crashes.size });
}

if (parentPort && workerData) await main(workerData as EngineOptions);
