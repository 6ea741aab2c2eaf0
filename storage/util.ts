/**
 * Helpers shared by the storage backends, so that every backend agrees on id
 * formats, ordering and what a storable value is.
 */

import type { ArchiveQuery, ArchiveRecord, OwnerQuery, OwnerRecord } from './types.ts';

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
export function withSeq<T>(
  input: Omit<ArchiveRecord<T>, 'seq'>,
  seq: number,
  pos?: number,
): ArchiveRecord<T> {
  const r: ArchiveRecord<T> = {
    conversation: input.conversation,
    seq,
    timestamp: input.timestamp,
    owners: input.owners,
    with: input.with,
    id: input.id,
    value: input.value,
  };
  if (input.archivedFor !== undefined) r.archivedFor = input.archivedFor;
  if (pos !== undefined) r.pos = pos;
  return r;
}

/**
 * The next archive position: one more than the last, and at least the
 * record's timestamp in ms × 1000, so ids sort by archive time and a time
 * bound is an id bound (docs/architecture.md, "Archive ids").
 */
export function nextPos(last: number, timestamp: number): number {
  const t = Number.isFinite(timestamp) && timestamp > 0 ? Math.floor(timestamp) * 1000 : 0;
  const pos = Math.max(last + 1, t);
  if (!Number.isSafeInteger(pos)) throw new RangeError('archive position out of range');
  return pos;
}

/** The archive time (ms) of a position. */
export function posTime(pos: number): number {
  return Math.floor(pos / 1000);
}

/** A client-supplied archive id as a position, or undefined when it cannot be one. */
export function parseArchiveId(id: string): number | undefined {
  if (!/^[1-9]\d{0,15}$/.test(id)) return undefined;
  const n = Number(id);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The owners whose archive lists a record: `archivedFor`, else every owner; each once. */
export function archivers(record: { owners: string[]; archivedFor?: string[] }): string[] {
  const list = record.archivedFor ?? record.owners;
  const out = [...new Set(list)];
  for (const o of out) {
    checkId('owner', o);
    if (!record.owners.includes(o)) throw new TypeError('archivedFor must be a subset of owners');
  }
  return out;
}

/**
 * The peer of a record in one owner's archive, for the `with` filter: the
 * other party of a two-owner record (the owner itself for a note to self),
 * else the record's `with` (the sender, in a room's archive).
 */
export function peerOf(record: { owners: string[]; with: string }, owner: string): string {
  if (record.owners.length >= 2) return record.owners.find((o) => o !== owner) ?? owner;
  return record.with;
}

/**
 * The inclusive position bounds of an owner query's filters (start, end,
 * afterId, beforeId), or undefined when an id is not a position at all.
 */
export function filterBounds(q: OwnerQuery): { lo: number; hi: number } {
  let lo = 1;
  let hi = Number.MAX_SAFE_INTEGER;
  if (q.start !== undefined) lo = Math.max(lo, Math.ceil(q.start) * 1000);
  if (q.end !== undefined) hi = Math.min(hi, Math.floor(q.end) * 1000 + 999);
  const a = q.afterId === undefined ? undefined : parseArchiveId(q.afterId);
  if (a !== undefined) lo = Math.max(lo, a + 1);
  const b = q.beforeId === undefined ? undefined : parseArchiveId(q.beforeId);
  if (b !== undefined) hi = Math.min(hi, b - 1);
  return { lo, hi };
}

/** The bounds of the page: the filter bounds narrowed by after/before. */
export function pageBounds(q: OwnerQuery): { lo: number; hi: number } {
  let { lo, hi } = filterBounds(q);
  const a = q.after === undefined ? undefined : parseArchiveId(q.after);
  if (a !== undefined) lo = Math.max(lo, a + 1);
  const b = q.before === undefined ? undefined : parseArchiveId(q.before);
  if (b !== undefined) hi = Math.min(hi, b - 1);
  return { lo, hi };
}

/** The ids an owner query names: bounds and `ids`, each of which must be in the owner's archive [XEP-0313 query-limit-id]. */
export function namedIds(q: OwnerQuery): string[] {
  return [
    ...new Set(
      [q.after, q.before, q.afterId, q.beforeId, ...(q.ids ?? [])].filter(
        (x): x is string => x !== undefined && x !== '',
      ),
    ),
  ];
}

/** An owner record: the stored record with its id and archive time. */
export function ownerRecord<T>(record: ArchiveRecord<T>): OwnerRecord<T> {
  const pos = record.pos as number;
  return { ...record, archiveId: String(pos), archivedAt: posTime(pos) };
}
