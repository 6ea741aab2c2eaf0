/**
 * Helpers shared by the storage backends, so that every backend agrees on id
 * formats, ordering and what a storable value is.
 */

import type { ArchiveQuery, ArchiveRecord } from './types.ts';

/**
 * Width of zero-padded sequence numbers and queue ids. 16 digits hold
 * Number.MAX_SAFE_INTEGER, so string order equals numeric order. Never change:
 * it is part of the on-disk key layout and of the queue ids clients hold.
 */
export const SEQ_WIDTH = 16;

/** Zero-pads a non-negative integer to {@link SEQ_WIDTH} digits. */
export function pad(n: number): string {
  return String(n).padStart(SEQ_WIDTH, '0');
}

/** Default page size of {@link ArchiveQuery.limit}, as documented in types.ts. */
export const DEFAULT_LIMIT = 100;

/**
 * Compares strings by Unicode code point, which is the order of their UTF-8
 * bytes: the order LevelDB and MongoDB sort keys in. JavaScript's default sort
 * compares UTF-16 code units and disagrees for characters above U+FFFF.
 */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Normalises a value to what a JSON round trip gives, so that every backend
 * stores the same thing (undefined fields dropped, Dates as strings) and the
 * caller's object is never aliased. `undefined` itself has no JSON form and is
 * rejected rather than silently read back as "missing".
 */
export function jsonClone<T>(value: T): T {
  const text = JSON.stringify(value);
  if (text === undefined)
    throw new TypeError('storage values must be JSON-serialisable (got undefined)');
  return JSON.parse(text) as T;
}

/**
 * Rejects ids containing NUL: the embedded backend uses NUL to separate a
 * conversation or owner from the rest of a key, so that one id's key range can
 * never contain another id's keys. JIDs and MQTT client ids cannot contain NUL.
 */
export function checkId(kind: string, id: string): void {
  if (typeof id !== 'string' || id.includes('\u0000')) {
    throw new TypeError(`${kind} must be a string without NUL characters`);
  }
}

/** The seq bounds of a query as an inclusive integer range; empty when lo > hi. */
export function seqRange(q: ArchiveQuery): { lo: number; hi: number } {
  const lo = Math.max(1, Math.floor(q.afterSeq ?? 0) + 1);
  const hi =
    q.beforeSeq === undefined
      ? Number.MAX_SAFE_INTEGER
      : Math.min(Number.MAX_SAFE_INTEGER, Math.ceil(q.beforeSeq) - 1);
  return { lo, hi };
}

/** The page size of a query: {@link DEFAULT_LIMIT} unless given, never negative. */
export function pageLimit(q: ArchiveQuery): number {
  return q.limit === undefined ? DEFAULT_LIMIT : Math.max(0, Math.floor(q.limit));
}

/** True when a timestamp passes the query's inclusive start/end bounds. */
export function inTimeRange(q: ArchiveQuery, timestamp: number): boolean {
  return (
    (q.start === undefined || timestamp >= q.start) && (q.end === undefined || timestamp <= q.end)
  );
}

/**
 * Runs async tasks one at a time per key, in call order. Used for the
 * read-modify-write steps (next seq, next queue id, counters) that must not
 * interleave within one process; different keys run concurrently.
 */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `task` once every earlier task of `key` has settled. */
  async run<R>(key: string, task: () => Promise<R>): Promise<R> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    // The chain only ever resolves, so one failed task cannot wedge the key.
    const tail = previous.then(() => done);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await task();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** True when nothing of `key` is running or waiting. */
  idle(key: string): boolean {
    return !this.#tails.has(key);
  }
}

/**
 * An archive record: the appended input and its seq, as a literal. Not
 * `{ ...input, seq }`: V8 gives such a spread copy with a field added a
 * hidden class of its own, one per appended message.
 */
export function withSeq<T>(input: Omit<ArchiveRecord<T>, 'seq'>, seq: number): ArchiveRecord<T> {
  return { conversation: input.conversation, seq, timestamp: input.timestamp, owners: input.owners, with: input.with, id: input.id, value: input.value };
}
