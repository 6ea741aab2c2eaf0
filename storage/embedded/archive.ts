/**
 * The embedded archive: records keyed by conversation and zero-padded seq, so
 * a conversation is one contiguous key range, and an owner index.
 *
 * An append is one LevelDB put (the record) in the common case: a
 * conversation's last seq is its last record's, read once and then cached, and
 * an owner index entry is written only when this process has not written or
 * seen it yet (bounded cache). Appends are pipelined: the cache holds the last
 * seq handed out, so the next append of a busy conversation takes its seq at
 * once instead of waiting for the previous record to reach the disk; the
 * store's writes settle in call order (level.ts `Write`), so a conversation's
 * appends still complete in seq order. Anything that reads the last seq from
 * disk first waits for the store's writes in flight (they settle in order).
 *
 * The per-conversation seq key is a high-water mark written only when records
 * are deleted, so seqs are never reused after a prune; the last seq is the
 * larger of it and the last record's seq.
 */

import type { ArchivePage, ArchiveQuery, ArchiveRecord, ArchiveStore } from '../types.ts';
import { KeyedLock, checkId, inTimeRange, pad, pageLimit, seqRange, withSeq } from '../util.ts';
import { BATCH, SEP, SEP_END } from './level.ts';
import type { MakeSub, Op, Sub, Write } from './level.ts';

/** At most this many conversations keep their last seq cached in memory. */
const SEQ_CACHE = 10_000;

/** At most this many owner index entries are remembered as present on disk. */
const INDEX_CACHE = 20_000;

/** A conversation's cached last seq; `used` marks an append since the eviction scan last passed it. */
interface SeqEntry {
  seq: number;
  used: boolean;
}

/** {@link ArchiveStore} on LevelDB; one instance per store name and database. */
export class LevelArchive<T> implements ArchiveStore<T> {
  readonly #records: Sub;
  readonly #seqs: Sub;
  readonly #owners: Sub;
  readonly #write: Write;
  readonly #lock = new KeyedLock();
  /**
   * Last seq per conversation; disk stays the truth, this only saves a read
   * per append. An entry is updated in place, never deleted and re-added per
   * append: a long-lived Map rehashes into a new table in the old generation,
   * and each such dead table kept the young objects it pointed to alive
   * through young-generation collections (see {@link #lastWrite}).
   */
  readonly #lastSeq = new Map<string, SeqEntry>();
  /** Owner index keys (owner + SEP + conversation) known to be on disk; insertion-ordered for eviction. */
  readonly #indexed = new Set<string>();
  /**
   * The latest write asked for, until it settles. The store's writes settle
   * in call order (level.ts `Write`), so it settling means every earlier one,
   * of every conversation, has too. One field rather than a Map entry set and
   * deleted per append: V8 rehashes a long-lived Map into a new table in the
   * old generation, and until the next full collection each dead table kept
   * the young objects it had pointed to (here the writes' promises, and
   * through them each message's record) alive through young-generation
   * collections, which copy and promote them. Measured in the chat at 2,000
   * msgs/s: with this and the pipeline fix (broker/pipeline.ts) a fifth less
   * promoted per young collection (bench/PROFILE-NOTES.md, eleventh round).
   */
  #lastWrite: Promise<void> | undefined;

  constructor(sub: MakeSub, write: Write) {
    this.#records = sub('r');
    this.#seqs = sub('s');
    this.#owners = sub('o');
    this.#write = write;
  }

  /**
   * Forgets cached seqs. Called on (re)open: while this instance was closed,
   * another process may have opened the directory and appended.
   */
  reset(): void {
    this.#lastSeq.clear();
    this.#indexed.clear();
  }

  async append(input: Omit<ArchiveRecord<T>, 'seq'>): Promise<ArchiveRecord<T>> {
    const { conversation } = input;
    checkId('conversation', conversation);
    input.owners.forEach((owner) => checkId('owner', owner));
    // One serialisation: the stored text is the input's JSON with the seq
    // spliced in, so the input is neither cloned nor stringified twice.
    const text = JSON.stringify(input);
    if (text === undefined || text[0] !== '{') throw new TypeError('archive records must be JSON objects');
    // Seqs are handed out per conversation in call order. With the last seq
    // cached and nothing of this conversation waiting on the lock (a disk
    // read of its last seq, a deletion), the next seq is known at once: the
    // common case, once per message, with no lock and no wait for the
    // previous record's write.
    const cached = this.#lastSeq.get(conversation);
    if (cached !== undefined && this.#lock.idle(conversation)) return this.#put(input, text, cached.seq + 1);
    // Otherwise under the lock, once the conversation's writes in flight have
    // settled (the disk is then the truth); the lock is held only until the
    // seq is taken and the write asked for, not until it is done.
    const started = await this.#lock.run(conversation, async () => {
      // Cached by an earlier holder (the cache is the last seq handed out):
      // no disk read, so no wait for the writes in flight either. Waiting
      // here would make a busy conversation's appends queue on the lock
      // behind each other's writes for as long as one is always waiting.
      const last = this.#lastSeq.get(conversation);
      if (last !== undefined) return { done: this.#put(input, text, last.seq + 1) };
      await this.#settled();
      return { done: this.#put(input, text, (await this.#readLastSeq(conversation)) + 1) };
    });
    return started.done;
  }

  /**
   * Takes `seq` for the record and asks for its write (and any missing owner
   * index entry) as one atomic batch. The seq is cached before the write
   * settles; a failed write drops it from the cache again unless a later
   * append took a larger one, so the next append reads the disk.
   */
  #put(input: Omit<ArchiveRecord<T>, 'seq'>, text: string, seq: number): Promise<ArchiveRecord<T>> {
    const { conversation } = input;
    // Appended last, so it wins over any stray `seq` in the input when parsed.
    const value = text.length === 2 ? `{"seq":${seq}}` : `${text.slice(0, -1)},"seq":${seq}}`;
    const ops: Op[] = [{ type: 'put', sublevel: this.#records, key: conversation + SEP + pad(seq), value }];
    let newIndex: string[] | undefined;
    for (const owner of input.owners) {
      const key = owner + SEP + conversation;
      if (this.#indexed.has(key)) continue;
      ops.push({ type: 'put', sublevel: this.#owners, key, value: '' });
      (newIndex ??= []).push(key);
    }
    this.#cacheSeq(conversation, seq);
    const written = this.#write(ops);
    this.#lastWrite = written;
    // No named closure here: tsx's keepNames wraps each one in a defineProperty per message.
    return written.then(
      () => {
        this.#settle(written);
        if (newIndex) for (const key of newIndex) this.#remember(key);
        // The input with its seq, not a parse of the stored text: a second JSON
        // pass per message was a few per cent of a chat's CPU time. [types.ts: may share objects with the input]
        return withSeq(input, seq);
      },
      (err: unknown) => {
        this.#settle(written);
        if (this.#lastSeq.get(conversation)?.seq === seq) this.#lastSeq.delete(conversation);
        throw err;
      },
    );
  }

  /** Forgets `written` as the latest write in flight, if it still is. */
  #settle(written: Promise<void>): void {
    if (this.#lastWrite === written) this.#lastWrite = undefined;
  }

  /**
   * Resolves once every write of this store asked for so far has settled
   * (they settle in call order), so a conversation's are on disk. Only disk
   * reads of a last seq and deletions wait here, not appends.
   */
  async #settled(): Promise<void> {
    await this.#lastWrite?.catch(() => undefined);
  }

  async query(conversation: string, q: ArchiveQuery = {}): Promise<ArchivePage<T>> {
    checkId('conversation', conversation);
    const { lo, hi } = seqRange(q);
    const limit = pageLimit(q);
    if (lo > hi) return { records: [], complete: true };
    const records: ArchiveRecord<T>[] = [];
    // The range is bounded by this conversation's keys, so nothing else is read.
    const values = this.#records.values({
      gte: conversation + SEP + pad(lo),
      lte: conversation + SEP + pad(hi),
      reverse: q.reverse ?? false,
    });
    try {
      for await (const text of values) {
        const record = JSON.parse(text) as ArchiveRecord<T>;
        if (!inTimeRange(q, record.timestamp)) continue;
        // One record past the page tells whether the page is complete.
        if (records.length === limit) return { records, complete: false };
        records.push(record);
      }
    } finally {
      await values.close();
    }
    return { records, complete: true };
  }

  async lastSeq(conversation: string): Promise<number> {
    checkId('conversation', conversation);
    // The last seq on disk: the cache may hold a seq whose write is still in
    // flight, so wait for those first. Read without caching: outside the lock
    // a disk read can be older than an append finishing meanwhile, and
    // caching it would hand out a seq twice.
    await this.#settled();
    return this.#lastSeq.get(conversation)?.seq ?? this.#diskLastSeq(conversation);
  }

  async conversations(owner: string): Promise<string[]> {
    checkId('owner', owner);
    const out: string[] = [];
    for await (const key of this.#owners.keys({ gte: owner + SEP, lt: owner + SEP_END })) {
      out.push(key.slice(owner.length + 1));
    }
    return out;
  }

  async prune(olderThan: number): Promise<number> {
    let removed = 0;
    // Walk the conversations that have records, one key each (seek past the
    // rest of its range), each handled under its own lock. The iterator reads
    // a snapshot, so the deletes do not disturb it.
    const keys = this.#records.keys();
    try {
      for (let key = await keys.next(); key !== undefined; key = await keys.next()) {
        const conversation = key.slice(0, key.indexOf(SEP));
        removed += await this.#deleteWhere(conversation, (r) => r.timestamp < olderThan);
        keys.seek(conversation + SEP_END);
      }
    } finally {
      await keys.close();
    }
    return removed;
  }

  async removeOwner(owner: string): Promise<void> {
    checkId('owner', owner);
    for (const conversation of await this.conversations(owner)) {
      await this.#deleteWhere(conversation, (r) => r.owners.includes(owner));
      // Drop the index entry even if it was stale and matched no record.
      const key = owner + SEP + conversation;
      this.#indexed.delete(key);
      await this.#write([{ type: 'del', sublevel: this.#owners, key }]);
    }
  }

  /**
   * Deletes a conversation's records matching `match` and the owner index
   * entries of owners left with no record in it. The first batch also writes
   * the conversation's seq key (the high-water mark), so seqs are never reused
   * even when every record is gone. Runs under the conversation's lock so that
   * an append cannot re-add an index entry this is about to drop.
   */
  #deleteWhere(conversation: string, match: (r: ArchiveRecord<T>) => boolean): Promise<number> {
    return this.#lock.run(conversation, async () => {
      await this.#settled();
      const last = await this.#readLastSeq(conversation);
      let removed = 0;
      let ops: Op[] = [];
      const touched = new Set<string>();
      const remaining = new Set<string>();
      const range = { gte: conversation + SEP, lt: conversation + SEP_END };
      for await (const [key, text] of this.#records.iterator(range)) {
        const record = JSON.parse(text) as ArchiveRecord<T>;
        if (!match(record)) {
          record.owners.forEach((o) => remaining.add(o));
          continue;
        }
        record.owners.forEach((o) => touched.add(o));
        if (removed === 0) ops.push({ type: 'put', sublevel: this.#seqs, key: conversation, value: String(last) });
        ops.push({ type: 'del', sublevel: this.#records, key });
        removed++;
        if (ops.length >= BATCH) {
          await this.#write(ops);
          ops = [];
        }
      }
      for (const owner of touched) {
        if (!remaining.has(owner)) {
          const key = owner + SEP + conversation;
          this.#indexed.delete(key);
          ops.push({ type: 'del', sublevel: this.#owners, key });
        }
      }
      if (ops.length > 0) await this.#write(ops);
      return removed;
    });
  }

  /** The last seq, cached; call only under the conversation's lock. */
  async #readLastSeq(conversation: string): Promise<number> {
    const cached = this.#lastSeq.get(conversation);
    if (cached !== undefined) return cached.seq;
    const seq = await this.#diskLastSeq(conversation);
    this.#cacheSeq(conversation, seq);
    return seq;
  }

  /** The larger of the high-water mark and the last record's seq; 0 for a new conversation. */
  async #diskLastSeq(conversation: string): Promise<number> {
    const mark = Number((await this.#seqs.get(conversation)) ?? 0);
    const [lastKey] = await this.#records.keys({ gte: conversation + SEP, lt: conversation + SEP_END, reverse: true, limit: 1 }).all();
    const fromRecords = lastKey === undefined ? 0 : Number(lastKey.slice(conversation.length + 1));
    return Math.max(mark, fromRecords);
  }

  #remember(indexKey: string): void {
    this.#indexed.add(indexKey);
    if (this.#indexed.size > INDEX_CACHE) this.#indexed.delete(this.#indexed.values().next().value as string);
  }

  #cacheSeq(conversation: string, seq: number): void {
    const entry = this.#lastSeq.get(conversation);
    if (entry !== undefined) {
      // In place: the entry and its key were allocated once, and only small integers and a flag change.
      entry.seq = seq;
      entry.used = true;
      return;
    }
    this.#lastSeq.set(conversation, { seq, used: false });
    // Evicting is always safe: the record carrying the seq is on disk or in
    // flight, and a seq read from disk waits for the writes in flight. Second
    // chance (clock): an entry used since it was last passed over moves to
    // the back once instead of going, which keeps busy conversations.
    while (this.#lastSeq.size > SEQ_CACHE) {
      const [key, oldest] = this.#lastSeq.entries().next().value as [string, SeqEntry];
      this.#lastSeq.delete(key);
      if (!oldest.used) break;
      oldest.used = false;
      this.#lastSeq.set(key, oldest);
    }
  }
}
