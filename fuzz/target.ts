/**
 * What a fuzz target module exports (fuzz/targets/*.ts). The engine
 * (fuzz/engine.ts) feeds `fuzz` with mutated inputs and keeps those that
 * reach new code in the files named by `cover`.
 */
export interface FuzzTarget {
  /** one line: which parser, what contract */
  about: string;
  /** substrings of the module URLs whose block coverage steers the fuzzer (ours and the parser library we feed) */
  cover: string[];
  /** tokens the mutator inserts or overwrites with (keywords, delimiters, magic bytes) */
  dict: (string | Buffer)[];
  /** longest input tried, in bytes */
  maxLen: number;
  /** Run one input. Returns normally for every input the contract allows; throws ContractViolation (or anything else) otherwise. */
  fuzz(data: Buffer): void;
}

/** The parser broke its contract: an undocumented error escaped, or its output broke a stated bound or property. */
export class ContractViolation extends Error {
  override name = 'ContractViolation';
}

export function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new ContractViolation(what);
}

/** Deterministic chunk sizes drawn from the input itself, so a saved input replays the same way. */
export function splitPoints(data: Buffer, seed: number): number[] {
  const cuts: number[] = [];
  let x = (seed * 2654435761) >>> 0 || 1;
  let at = 0;
  while (at < data.length) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const n = 1 + (x % 9 === 0 ? x % 4096 : x % 17);
    at = Math.min(data.length, at + n);
    cuts.push(at);
  }
  return cuts;
}
