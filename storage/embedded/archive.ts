/**
 * The embedded archive: records keyed by conversation and zero-padded seq, so
 * a conversation is one contiguous key range, plus a per-conversation seq key
 * and an owner index, all written in the record's batch.
 */

import type { ArchivePage, ArchiveQuery, ArchiveRecord, ArchiveStore } from '../types.ts';
import { KeyedLock, checkId, inTimeRange, jsonClone, pad, pageLimit, seqRange } from '../util.ts';
import { BATCH, SEP, SEP_END } from './level.ts';
import type { MakeSub, Op, Sub, Write } from './level.ts';

/** At most this many conversations keep their last seq cached in memory. */
const SEQ_CACHE = 10_000;

/** {@link ArchiveStore} on LevelDB; one instance per store name and database. */
export class LevelArchive<T> implements ArchiveStore<T> {
  readonly #records: Sub;
  readonly #seqs: Sub;
  readonly #owners: Sub;
  readonly #write: Write;
  readonly #lock = new KeyedLock();
  /** Last seq per conversation; disk stays the truth, this only saves a read per append. */
  readonly #lastSeq = new Map<string, number>();

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
  }

  async append(input: Omit<ArchiveRecord<T>, 'seq'>): Promise<ArchiveRecord<T>> {
    const { conversation } = input;
    checkId('conversation', conversation);
    input.owners.forEach((owner) => checkId('owner', owner));
    const body = jsonClone(input);
    // Serialised per conversation: read the last seq, write record + new seq in
    // one atomic batch, so concurrent appends get distinct increasing seqs and
    // a crash never leaves a record without its counter or the reverse.
    return this.#lock.run(conversation, async () => {
      const seq = (await this.#readLastSeq(conversation)) + 1;
      const record: ArchiveRecord<T> = { ...body, seq };
      const ops: Op[] = [
        {
          type: 'put',
          sublevel: this.#records,
          key: conversation + SEP + pad(seq),
          value: JSON.stringify(record),
        },
        { type: 'put', sublevel: this.#seqs, key: conversation, value: String(seq) },
        ...record.owners.map((o): Op => ({
          type: 'put',
          sublevel: this.#owners,
          key: o + SEP + conversation,
          value: '',
        })),
      ];
      await this.#write(ops);
      this.#cacheSeq(conversation, seq);
      return record;
    });
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
    // Read without caching: outside the lock a disk read can be older than an
    // append finishing meanwhile, and caching it would hand out a seq twice.
    const cached = this.#lastSeq.get(conversation);
    return cached ?? Number((await this.#seqs.get(conversation)) ?? 0);
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
    // Every conversation that ever had a record has a seq key: walk them one
    // at a time so each is handled under its own lock.
    for await (const conversation of this.#seqs.keys()) {
      removed += await this.#deleteWhere(conversation, (r) => r.timestamp < olderThan);
    }
    return removed;
  }

  async removeOwner(owner: string): Promise<void> {
    checkId('owner', owner);
    for (const conversation of await this.conversations(owner)) {
      await this.#deleteWhere(conversation, (r) => r.owners.includes(owner));
      // Drop the index entry even if it was stale and matched no record.
      await this.#write([{ type: 'del', sublevel: this.#owners, key: owner + SEP + conversation }]);
    }
  }

  /**
   * Deletes a conversation's records matching `match` and the owner index
   * entries of owners left with no record in it. The seq key stays, so seqs
   * are never reused. Runs under the conversation's lock so that an append
   * cannot re-add an index entry this is about to drop.
   */
  #deleteWhere(conversation: string, match: (r: ArchiveRecord<T>) => boolean): Promise<number> {
    return this.#lock.run(conversation, async () => {
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
        ops.push({ type: 'del', sublevel: this.#records, key });
        removed++;
        if (ops.length >= BATCH) {
          await this.#write(ops);
          ops = [];
        }
      }
      for (const owner of touched) {
        if (!remaining.has(owner)) {
          ops.push({ type: 'del', sublevel: this.#owners, key: owner + SEP + conversation });
        }
      }
      if (ops.length > 0) await this.#write(ops);
      return removed;
    });
  }

  /** The last seq, cached; call only under the conversation's lock. */
  async #readLastSeq(conversation: string): Promise<number> {
    const cached = this.#lastSeq.get(conversation);
    if (cached !== undefined) return cached;
    const text = await this.#seqs.get(conversation);
    const seq = text === undefined ? 0 : Number(text);
    this.#cacheSeq(conversation, seq);
    return seq;
  }

  #cacheSeq(conversation: string, seq: number): void {
    // Evicting is always safe: the seq key on disk is written before the cache.
    this.#lastSeq.delete(conversation);
    this.#lastSeq.set(conversation, seq);
    if (this.#lastSeq.size > SEQ_CACHE) {
      this.#lastSeq.delete(this.#lastSeq.keys().next().value as string);
    }
  }
}
