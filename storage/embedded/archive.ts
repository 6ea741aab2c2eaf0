// Over 600 lines, one store on purpose: records, the per-owner indexes and counts must be written in the
// same LevelDB batch, under one lock, so they are one class. Next split: retention (prune/trim) into its own file.
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
 *
 * Each owner's archive (XEP-0313 user archive) is an index written in the
 * same batch as the record: `u` (owner, pos) and the per-peer view, both
 * pointing at the record's key, so an owner query reads that owner's keys
 * only. The per-peer view of a one-to-one record both parties archive is one
 * entry for the two, `v` (pair, pos) with the pair's owners in order, since
 * each one's peer is the other; any other record's is `w` (owner, peer, pos)
 * per archiving owner (a record only one party archives, a note to self, a
 * room's). A `with` query merges the two ranges by pos. Versions up to
 * 7b800a2 wrote `w` for every entry, which the merge reads as it is. The archive position (pos) is one counter per store, kept in memory
 * and written to `h` with every append (docs/architecture.md, "Archive ids").
 *
 * Entry counts (an owner's, and per peer) are kept in memory and saved in `n`
 * as checkpoints, `<count>@<pos>`: the count is that number plus the index
 * entries after that pos, which a load counts (at most {@link CHECKPOINT} or
 * so). A checkpoint is written every {@link CHECKPOINT} appends of a key, by
 * deletions, and by the first append after a load that found none, not with every append: writing
 * four counts per message was a third of an append's CPU time
 * (bench/PROFILE-NOTES.md, fifteenth round). A plain `<count>` (no `@`) was
 * written by earlier versions with every append, so it is exact as found: the
 * next append writes a checkpoint in its place.
 */

import type {
  ArchivePage,
  ArchiveQuery,
  ArchiveRecord,
  ArchiveStore,
  OwnerBounds,
  OwnerPage,
  OwnerQuery,
  OwnerRecord,
} from '../types.ts';
import {
  KeyedLock,
  archivers,
  checkId,
  filterBounds,
  inTimeRange,
  namedIds,
  nextPos,
  ownerRecord,
  pad,
  pageBounds,
  pageLimit,
  parseArchiveId,
  peerOf,
  posTime,
  seqRange,
  withSeq,
} from '../util.ts';
import { BATCH, SEP, SEP_END } from './level.ts';
import type { MakeSub, Op, Sub, Write } from './level.ts';

/** At most this many conversations keep their last seq cached in memory. */
const SEQ_CACHE = 10_000;

/** At most this many owner index entries are remembered as present on disk. */
const INDEX_CACHE = 20_000;

/** At most this many owners keep their entry count cached in memory. */
const COUNT_CACHE = 20_000;

/** A count's checkpoint is saved after this many appends to it: a load counts at most about this many index keys. */
const CHECKPOINT = 500;

/** The lock key of maintenance (prune, trim, owner removal): no conversation id contains NUL. */
const MAINT = '\u0000maintenance';

/** The key of the archive position high-water mark in `h`. */
const POS_KEY = 'pos';

/** An owner index entry: the owner, its pos and the record's key parts. */
interface Entry {
  owner: string;
  pos: number;
  conversation: string;
  seq: number;
}

/** A count in memory: exact, with the appends counted since its last checkpoint was asked for. */
interface Count {
  n: number;
  unsaved: number;
  /** its key holds a checkpoint (not nothing, nor an earlier version's plain count): else the next append writes one */
  saved: boolean;
}

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
  /** owner SEP pad(pos) → conversation SEP pad(seq) */
  readonly #userIndex: Sub;
  /** owner SEP peer SEP pad(pos) → conversation SEP pad(seq) */
  readonly #peerIndex: Sub;
  /** first owner SEP second owner SEP pad(pos) → conversation SEP pad(seq): a one-to-one record both archive */
  readonly #pairIndex: Sub;
  /** owner → checkpoint of its entry count, `<count>@<pos>`; owner SEP peer → of those with that peer */
  readonly #counts: Sub;
  /** 'pos' → the last archive position handed out */
  readonly #high: Sub;
  /** Entry counts per owner and per (owner, peer); disk (checkpoint and index) stays the truth. */
  readonly #count = new Map<string, Count>();
  /** The last archive position handed out; undefined until read from disk. */
  #pos: number | undefined;
  #posLoading: Promise<void> | undefined;
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
    this.#userIndex = sub('u');
    this.#peerIndex = sub('w');
    this.#pairIndex = sub('v');
    this.#counts = sub('n');
    this.#high = sub('h');
    this.#write = write;
  }

  /**
   * Forgets cached seqs. Called on (re)open: while this instance was closed,
   * another process may have opened the directory and appended.
   */
  reset(): void {
    this.#lastSeq.clear();
    this.#indexed.clear();
    this.#count.clear();
    this.#pos = undefined;
    this.#posLoading = undefined;
  }

  /**
   * Not an async function: the common case returns the write's own promise,
   * with no second promise adopting it (a few microtask steps per message).
   * A bad input still rejects rather than throws.
   */
  append(input: Omit<ArchiveRecord<T>, 'seq'>): Promise<ArchiveRecord<T>> {
    const { conversation } = input;
    let indexed: string[];
    let counted: string[];
    let text: string | undefined;
    try {
      checkId('conversation', conversation);
      for (const owner of input.owners) checkId('owner', owner);
      indexed = archivers(input);
      if (indexed.length > 0) checkId('with', input.with);
      counted = countKeys(input, indexed);
      // One serialisation: the stored text is the input's JSON with the seq
      // spliced in, so the input is neither cloned nor stringified twice.
      text = JSON.stringify(input);
      if (text === undefined || text[0] !== '{')
        throw new TypeError('archive records must be JSON objects');
    } catch (err) {
      return Promise.reject(err);
    }
    // Seqs are handed out per conversation in call order. With the last seq
    // cached and nothing of this conversation waiting on the lock (a disk
    // read of its last seq, a deletion), the next seq is known at once: the
    // common case, once per message, with no lock and no wait for the
    // previous record's write.
    const cached = this.#lastSeq.get(conversation);
    if (cached !== undefined && this.#lock.idle(conversation) && this.#indexReady(counted))
      return this.#put(input, text, cached.seq + 1, indexed, counted);
    return this.#appendLocked(input, text, indexed, counted);
  }

  /**
   * An append under the conversation's lock, once the conversation's writes
   * in flight have settled (the disk is then the truth); the lock is held
   * only until the seq is taken and the write asked for, not until it is done.
   */
  async #appendLocked(
    input: Omit<ArchiveRecord<T>, 'seq'>,
    text: string,
    indexed: string[],
    counted: string[],
  ): Promise<ArchiveRecord<T>> {
    const { conversation } = input;
    const started = await this.#lock.run(conversation, async () => {
      // Cached by an earlier holder (the cache is the last seq handed out):
      // no disk read, so no wait for the writes in flight either. Waiting
      // here would make a busy conversation's appends queue on the lock
      // behind each other's writes for as long as one is always waiting.
      await this.#prepareIndex(counted);
      const last = this.#lastSeq.get(conversation);
      if (last !== undefined && this.#indexReady(counted))
        return { done: this.#put(input, text, last.seq + 1, indexed, counted) };
      await this.#settled();
      const seq = (await this.#readLastSeq(conversation)) + 1;
      // The index state may have been evicted meanwhile: load it again, then take everything synchronously.
      while (!this.#indexReady(counted)) await this.#prepareIndex(counted);
      return { done: this.#put(input, text, seq, indexed, counted) };
    });
    return started.done;
  }

  /**
   * Takes `seq` for the record and asks for its write (and any missing owner
   * index entry) as one atomic batch. The seq is cached before the write
   * settles; a failed write drops it from the cache again unless a later
   * append took a larger one, so the next append reads the disk.
   */
  #put(
    input: Omit<ArchiveRecord<T>, 'seq'>,
    text: string,
    seq: number,
    indexed: string[],
    counted: string[],
  ): Promise<ArchiveRecord<T>> {
    const { conversation } = input;
    const pos = indexed.length > 0 ? nextPos(this.#pos as number, input.timestamp) : undefined;
    // Appended last, so they win over any stray `seq` or `pos` in the input when parsed.
    const tail = pos === undefined ? `"seq":${seq}}` : `"seq":${seq},"pos":${pos}}`;
    const value = text.length === 2 ? `{${tail}` : `${text.slice(0, -1)},${tail}`;
    const recordKey = conversation + SEP + pad(seq);
    const ops: Op[] = [{ type: 'put', sublevel: this.#records, key: recordKey, value }];
    if (pos !== undefined) {
      this.#pos = pos;
      const p = pad(pos);
      const pair = sharedPair(input, indexed);
      for (const owner of indexed) {
        ops.push({
          type: 'put',
          sublevel: this.#userIndex,
          key: owner + SEP + p,
          value: recordKey,
        });
        if (pair === undefined)
          ops.push({
            type: 'put',
            sublevel: this.#peerIndex,
            key: owner + SEP + peerOf(input, owner) + SEP + p,
            value: recordKey,
          });
      }
      if (pair !== undefined)
        ops.push({ type: 'put', sublevel: this.#pairIndex, key: pair + p, value: recordKey });
      for (const key of counted) {
        const c = this.#count.get(key) as Count;
        c.n++;
        if (++c.unsaved < CHECKPOINT && c.saved) continue;
        // Includes this append's entry: it is in the same batch.
        c.unsaved = 0;
        c.saved = true;
        ops.push({
          type: 'put',
          sublevel: this.#counts,
          key,
          value: `${c.n}@${pos}`,
          rewritten: true,
        });
      }
      ops.push({
        type: 'put',
        sublevel: this.#high,
        key: POS_KEY,
        value: String(pos),
        rewritten: true,
      });
    }
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
        return withSeq(input, seq, pos);
      },
      (err: unknown) => {
        this.#settle(written);
        if (this.#lastSeq.get(conversation)?.seq === seq) this.#lastSeq.delete(conversation);
        // The counts are read again from disk (a position is never reused: a gap is harmless).
        for (const key of counted) this.#count.delete(key);
        throw err;
      },
    );
  }

  /** True when the position and the counts (keys of `n`) are in memory: an append can take its index entries at once. */
  #indexReady(owners: string[]): boolean {
    if (owners.length === 0) return true;
    if (this.#pos === undefined) return false;
    for (const o of owners) if (!this.#count.has(o)) return false;
    return true;
  }

  /** Reads the position high-water mark (once) and the missing counts from disk. */
  async #prepareIndex(owners: string[]): Promise<void> {
    if (owners.length === 0) return;
    await this.#preparePos();
    for (const o of owners) await this.#loadCount(o);
  }

  /** Reads the position high-water mark from disk, once. */
  async #preparePos(): Promise<void> {
    if (this.#pos !== undefined) return;
    this.#posLoading ??= (async () => {
      await this.#settled();
      const v = await this.#high.get(POS_KEY);
      this.#pos ??= Number(v ?? 0);
    })().finally(() => (this.#posLoading = undefined));
    await this.#posLoading;
  }

  /**
   * An owner's entry count, read from disk once the writes in flight have
   * settled when it is not cached. Only a read that finds no cached value
   * caches its own: a count cached meanwhile is newer.
   */
  async #loadCount(owner: string): Promise<number> {
    const cached = this.#count.get(owner);
    if (cached !== undefined) return cached.n;
    await this.#preparePos();
    await this.#settled();
    const text = await this.#counts.get(owner);
    const at = text === undefined ? -1 : text.indexOf('@');
    let n: number;
    let tail = 0;
    if (text !== undefined && at === -1) {
      // Written by an earlier version with every append: exact.
      n = Number(text);
    } else {
      const saved = text === undefined ? 0 : Number(text.slice(0, at));
      const since = text === undefined ? 0 : Number(text.slice(at + 1));
      tail = await this.#countAfter(owner, since);
      n = saved + tail;
    }
    const now = this.#count.get(owner);
    if (now !== undefined) return now.n;
    // No key, or a plain count: the next append writes a checkpoint in its own
    // batch (a plain count stays exact until then, and trimOwners finds every
    // owner with entries by its key). Nothing is written on a read.
    this.#count.set(owner, { n, unsaved: tail, saved: text !== undefined && at !== -1 });
    if (this.#count.size > COUNT_CACHE)
      this.#count.delete(this.#count.keys().next().value as string);
    return n;
  }

  /** The index entries of a count key (an owner, or owner SEP peer) with a pos after `pos`. */
  #countAfter(key: string, pos: number): Promise<number> {
    const sep = key.indexOf(SEP);
    if (sep === -1)
      return this.#countRange(this.#userIndex, key + SEP, pos + 1, Number.MAX_SAFE_INTEGER);
    return this.#countPeer(key.slice(0, sep), key.slice(sep + 1), pos + 1, Number.MAX_SAFE_INTEGER);
  }

  /** An owner's entries with a peer and a pos in [lo, hi]: its `w` keys and, with another owner, the pair's `v` keys. */
  async #countPeer(owner: string, peer: string, lo: number, hi: number): Promise<number> {
    const own = await this.#countRange(this.#peerIndex, owner + SEP + peer + SEP, lo, hi);
    return owner === peer
      ? own
      : own + (await this.#countRange(this.#pairIndex, pairPrefix(owner, peer), lo, hi));
  }

  /**
   * The record keys of an owner's entries with a peer and a pos in [lo, hi],
   * in pos order (descending with `reverse`), at most `limit`: the `w` and
   * `v` ranges, each read up to `limit` keys, merged.
   */
  async #peerKeys(
    owner: string,
    peer: string,
    lo: number,
    hi: number,
    reverse: boolean,
    limit: number,
  ): Promise<string[]> {
    const read = async (sub: Sub, prefix: string) => {
      const rows = await sub
        .iterator({ gte: prefix + pad(lo), lte: prefix + pad(hi), reverse, limit })
        .all();
      return rows.map(([key, value]) => ({ pos: Number(key.slice(prefix.length)), value }));
    };
    const own = await read(this.#peerIndex, owner + SEP + peer + SEP);
    if (owner === peer) return own.map((x) => x.value);
    const shared = await read(this.#pairIndex, pairPrefix(owner, peer));
    if (own.length === 0 || shared.length === 0)
      return (own.length === 0 ? shared : own).map((x) => x.value);
    const merged = [...own, ...shared].sort(
      reverse ? (a, b) => b.pos - a.pos : (a, b) => a.pos - b.pos,
    );
    return merged.slice(0, limit).map((x) => x.value);
  }

  /** A checkpoint of `key`'s count as it is in memory now (maintenance writes it with its deletions). */
  #checkpoint(key: string, n: number): Op {
    const c = this.#count.get(key);
    if (c !== undefined) {
      c.n = n;
      c.unsaved = 0;
      c.saved = true;
    } else {
      this.#count.set(key, { n, unsaved: 0, saved: true });
    }
    return { type: 'put', sublevel: this.#counts, key, value: `${n}@${this.#pos as number}` };
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

  async setValue(conversation: string, seq: number, value: T): Promise<boolean> {
    checkId('conversation', conversation);
    // Under the conversation's lock, after the writes in flight: the record read is the one on disk.
    return this.#lock.run(conversation, async () => {
      await this.#settled();
      const key = conversation + SEP + pad(seq);
      const text = await this.#records.get(key);
      if (text === undefined) return false;
      const record = JSON.parse(text) as ArchiveRecord<T>;
      record.value = value;
      // One put of the record alone: its index entries point at its key, which stays.
      const written = this.#write([
        { type: 'put', sublevel: this.#records, key, value: JSON.stringify(record) },
      ]);
      this.#lastWrite = written;
      await written.finally(() => this.#settle(written));
      return true;
    });
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

  async queryOwner(owner: string, q: OwnerQuery = {}): Promise<OwnerPage<T>> {
    checkId('owner', owner);
    if (q.with !== undefined) checkId('with', q.with);
    const missing: string[] = [];
    for (const id of namedIds(q)) {
      const pos = parseArchiveId(id);
      if (pos === undefined || (await this.#userIndex.get(owner + SEP + pad(pos))) === undefined)
        missing.push(id);
    }
    if (missing.length > 0) return { records: [], complete: true, missing };
    const limit = pageLimit(q);
    const page = pageBounds(q);
    const filter = filterBounds(q);
    let keys: string[];
    let complete: boolean;
    let count: number | undefined;
    if (q.ids !== undefined) {
      // Each named id is looked up in this owner's index (with its peer when filtered).
      const wanted = [
        ...new Set(q.ids.map(parseArchiveId).filter((p): p is number => p !== undefined)),
      ]
        .filter((p) => p >= filter.lo && p <= filter.hi)
        .sort((a, b) => (q.reverse ? b - a : a - b));
      const found = await (q.with === undefined
        ? this.#userIndex.getMany(wanted.map((p) => owner + SEP + pad(p)))
        : this.#peerMany(owner, q.with, wanted));
      const present = wanted
        .map((p, i) => ({ p, key: found[i] }))
        .filter((x) => x.key !== undefined);
      count = present.length;
      const inPage = present.filter((x) => x.p >= page.lo && x.p <= page.hi);
      keys = inPage.slice(0, limit).map((x) => x.key as string);
      complete = inPage.length <= limit;
    } else {
      const peer = q.with;
      keys = [];
      if (page.lo <= page.hi) {
        // One record past the page tells whether the page is complete.
        const prefix = owner + SEP;
        keys =
          peer === undefined
            ? await this.#userIndex
                .values({
                  gte: prefix + pad(page.lo),
                  lte: prefix + pad(page.hi),
                  reverse: q.reverse ?? false,
                  limit: limit + 1,
                })
                .all()
            : await this.#peerKeys(owner, peer, page.lo, page.hi, q.reverse ?? false, limit + 1);
      }
      complete = keys.length <= limit;
      keys = keys.slice(0, limit);
      if (q.count) {
        // The whole archive, or all with one peer: a stored count. Otherwise the keys in range are counted.
        const bounded =
          q.start !== undefined ||
          q.end !== undefined ||
          q.afterId !== undefined ||
          q.beforeId !== undefined;
        if (!bounded)
          count = await this.#loadCount(peer === undefined ? owner : owner + SEP + peer);
        else
          count =
            peer === undefined
              ? await this.#countRange(this.#userIndex, owner + SEP, filter.lo, filter.hi)
              : await this.#countPeer(owner, peer, filter.lo, filter.hi);
      }
    }
    const texts = keys.length === 0 ? [] : await this.#records.getMany(keys);
    const records: OwnerRecord<T>[] = [];
    for (const text of texts)
      if (text !== undefined) records.push(ownerRecord(JSON.parse(text) as ArchiveRecord<T>));
    const out: OwnerPage<T> = { records, complete };
    if (q.count) out.count = count;
    return out;
  }

  /** The record keys of an owner's entries with a peer at the given positions (undefined: none there). */
  async #peerMany(
    owner: string,
    peer: string,
    positions: number[],
  ): Promise<(string | undefined)[]> {
    const own = await this.#peerIndex.getMany(
      positions.map((p) => owner + SEP + peer + SEP + pad(p)),
    );
    if (owner === peer) return own;
    const prefix = pairPrefix(owner, peer);
    const shared = await this.#pairIndex.getMany(positions.map((p) => prefix + pad(p)));
    return own.map((key, i) => key ?? shared[i]);
  }

  /** Keys of `sub` under `prefix` with a pos in [lo, hi], counted without reading values: the cost of a filtered count. */
  async #countRange(sub: Sub, prefix: string, lo: number, hi: number): Promise<number> {
    if (lo > hi) return 0;
    let n = 0;
    const it = sub.keys({ gte: prefix + pad(lo), lte: prefix + pad(hi) });
    try {
      for (;;) {
        const chunk = await it.nextv(1000);
        if (chunk.length === 0) return n;
        n += chunk.length;
      }
    } finally {
      await it.close();
    }
  }

  async ownerBounds(owner: string): Promise<OwnerBounds> {
    checkId('owner', owner);
    const range = { gte: owner + SEP, lt: owner + SEP_END, limit: 1 };
    const [first] = await this.#userIndex.keys(range).all();
    const [last] = await this.#userIndex.keys({ ...range, reverse: true }).all();
    const at = (key: string | undefined) => {
      if (key === undefined) return undefined;
      const pos = Number(key.slice(owner.length + 1));
      return { archiveId: String(pos), archivedAt: posTime(pos) };
    };
    const out: OwnerBounds = {};
    if (first !== undefined) out.first = at(first);
    if (last !== undefined) out.last = at(last);
    return out;
  }

  async prune(olderThan: number): Promise<number> {
    const cutoff = Math.floor(olderThan) * 1000;
    return this.#lock.run(MAINT, async () => {
      let removed = 0;
      let batch: Entry[] = [];
      // Each owner's entries from its oldest, one seek per owner past the cutoff.
      // The iterator reads a snapshot; entries deleted meanwhile are skipped by #drop.
      const it = this.#userIndex.iterator();
      try {
        for (let next = await it.next(); next !== undefined; next = await it.next()) {
          const [key, value] = next;
          const sep = key.indexOf(SEP);
          const owner = key.slice(0, sep);
          const pos = Number(key.slice(sep + 1));
          if (pos >= cutoff) {
            it.seek(owner + SEP_END);
            continue;
          }
          batch.push(entry(owner, pos, value));
          if (batch.length >= BATCH) {
            removed += await this.#drop(batch, false);
            batch = [];
          }
        }
      } finally {
        await it.close();
      }
      if (batch.length > 0) removed += await this.#drop(batch, false);
      return removed;
    });
  }

  async trimOwners(max: number): Promise<number> {
    const keep = Math.max(0, Math.floor(max));
    return this.#lock.run(MAINT, async () => {
      let removed = 0;
      for await (const owner of this.#counts.keys()) {
        if (owner.includes(SEP)) continue; // a per-peer count
        const n = await this.#loadCount(owner);
        if (n <= keep) continue;
        // The oldest entries beyond `keep`, in batches.
        let excess = n - keep;
        while (excess > 0) {
          const rows = await this.#userIndex
            .iterator({ gte: owner + SEP, lt: owner + SEP_END, limit: Math.min(excess, BATCH) })
            .all();
          if (rows.length === 0) break;
          const dropped = await this.#drop(
            rows.map(([key, value]) => entry(owner, Number(key.slice(owner.length + 1)), value)),
            true,
          );
          removed += dropped;
          excess -= rows.length;
        }
      }
      return removed;
    });
  }

  async forgetOwner(owner: string, before?: number): Promise<number> {
    checkId('owner', owner);
    // Per-user retention: the entries archived before the time, from the owner's oldest (the index is by pos).
    const end =
      before === undefined
        ? owner + SEP_END
        : owner + SEP + pad(Math.max(0, Math.floor(before)) * 1000);
    return this.#lock.run(MAINT, async () => {
      let removed = 0;
      for (;;) {
        const rows = await this.#userIndex
          .iterator({ gte: owner + SEP, lt: end, limit: BATCH })
          .all();
        if (rows.length === 0) break;
        removed += await this.#drop(
          rows.map(([key, value]) => entry(owner, Number(key.slice(owner.length + 1)), value)),
          true,
        );
        // #drop removes the entries it dropped; one whose record was gone already is removed here, so the loop ends.
        await this.#write(
          rows.map(([key]) => ({ type: 'del', sublevel: this.#userIndex, key }) as Op),
        );
      }
      if (before !== undefined) return removed;
      const ops: Op[] = [];
      for await (const key of this.#peerIndex.keys({ gte: owner + SEP, lt: owner + SEP_END }))
        ops.push({ type: 'del', sublevel: this.#peerIndex, key });
      ops.push({ type: 'del', sublevel: this.#counts, key: owner });
      for await (const key of this.#counts.keys({ gte: owner + SEP, lt: owner + SEP_END }))
        ops.push({ type: 'del', sublevel: this.#counts, key });
      this.#count.delete(owner);
      for (const key of [...this.#count.keys()])
        if (key.startsWith(owner + SEP)) this.#count.delete(key);
      await this.#write(ops);
      return removed;
    });
  }

  async removeOwner(owner: string): Promise<void> {
    checkId('owner', owner);
    await this.#lock.run(MAINT, async () => {
      for (const conversation of await this.conversations(owner)) {
        await this.#deleteWhere(conversation, (r) => r.owners.includes(owner));
        // Drop the index entry even if it was stale and matched no record.
        const key = owner + SEP + conversation;
        this.#indexed.delete(key);
        await this.#write([{ type: 'del', sublevel: this.#owners, key }]);
      }
      // Entries whose record was already gone, and the count.
      const ops: Op[] = [];
      for await (const key of this.#userIndex.keys({ gte: owner + SEP, lt: owner + SEP_END }))
        ops.push({ type: 'del', sublevel: this.#userIndex, key });
      for await (const key of this.#peerIndex.keys({ gte: owner + SEP, lt: owner + SEP_END }))
        ops.push({ type: 'del', sublevel: this.#peerIndex, key });
      ops.push({ type: 'del', sublevel: this.#counts, key: owner });
      for await (const key of this.#counts.keys({ gte: owner + SEP, lt: owner + SEP_END }))
        ops.push({ type: 'del', sublevel: this.#counts, key });
      this.#count.delete(owner);
      for (const key of [...this.#count.keys()])
        if (key.startsWith(owner + SEP)) this.#count.delete(key);
      await this.#write(ops);
    });
  }

  /**
   * Removes owner index entries: with `onlyOwner`, each entry leaves its
   * owner's archive and its record stays while another owner archives it;
   * otherwise the records go, with every owner's entries. A record that is
   * gone already (an entry seen in an older snapshot) is skipped. Returns the
   * number of entries (onlyOwner) or records removed. Runs under MAINT.
   */
  async #drop(entries: Entry[], onlyOwner: boolean): Promise<number> {
    const texts = await this.#records.getMany(
      entries.map((e) => e.conversation + SEP + pad(e.seq)),
    );
    const records: { e: Entry; r: ArchiveRecord<T> }[] = [];
    const need = new Set<string>();
    texts.forEach((text, i) => {
      if (text === undefined) return;
      const r = JSON.parse(text) as ArchiveRecord<T>;
      if (r.pos !== entries[i].pos) return;
      records.push({ e: entries[i], r });
      for (const o of archivers(r)) need.add(o).add(o + SEP + peerOf(r, o));
    });
    // The counts are adjusted from memory, synchronously with the ops below.
    for (const o of need) await this.#loadCount(o);
    await this.#settled();
    const ops: Op[] = [];
    const marks = new Map<string, { seq: number; owners: Set<string> }>();
    const counts = new Map<string, number>();
    let removed = 0;
    const seen = new Set<number>();
    for (const { e, r } of records) {
      if (seen.has(e.pos)) continue;
      seen.add(e.pos);
      const all = archivers(r);
      if (onlyOwner && !all.includes(e.owner)) continue;
      const leaving = onlyOwner ? [e.owner] : all;
      const staying = all.filter((o) => !leaving.includes(o));
      const recordKey = e.conversation + SEP + pad(e.seq);
      for (const o of leaving) {
        ops.push({ type: 'del', sublevel: this.#userIndex, key: o + SEP + pad(e.pos) });
        ops.push({
          type: 'del',
          sublevel: this.#peerIndex,
          key: o + SEP + peerOf(r, o) + SEP + pad(e.pos),
        });
        for (const key of [o, o + SEP + peerOf(r, o)]) counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      const pair = sharedPair(r, all);
      if (pair !== undefined) {
        // The shared entry goes; an owner who keeps the record keeps its view with the peer as a `w` entry.
        ops.push({ type: 'del', sublevel: this.#pairIndex, key: pair + pad(e.pos) });
        for (const o of staying)
          ops.push({
            type: 'put',
            sublevel: this.#peerIndex,
            key: o + SEP + peerOf(r, o) + SEP + pad(e.pos),
            value: recordKey,
          });
      }
      if (staying.length > 0) {
        ops.push({
          type: 'put',
          sublevel: this.#records,
          key: recordKey,
          value: JSON.stringify({ ...r, archivedFor: staying }),
        });
      } else {
        ops.push({ type: 'del', sublevel: this.#records, key: recordKey });
        const mark = marks.get(e.conversation) ?? { seq: 0, owners: new Set<string>() };
        mark.seq = Math.max(mark.seq, e.seq);
        r.owners.forEach((o) => mark.owners.add(o));
        marks.set(e.conversation, mark);
      }
      removed++;
    }
    // Seqs are never reused: a conversation's high-water mark covers every deleted record.
    for (const [conversation, { seq }] of marks) {
      const old = Number((await this.#seqs.get(conversation)) ?? 0);
      if (seq > old)
        ops.push({ type: 'put', sublevel: this.#seqs, key: conversation, value: String(seq) });
    }
    for (const [o, k] of counts) {
      const n = Math.max(0, (this.#count.get(o)?.n ?? (await this.#loadCount(o))) - k);
      ops.push(this.#checkpoint(o, n));
    }
    if (ops.length > 0) await this.#write(ops);
    // A conversation left with no record leaves its owners' conversation lists.
    for (const [conversation, { owners }] of marks) await this.#forgetIfEmpty(conversation, owners);
    return removed;
  }

  /** Drops the owner → conversation entries of a conversation with no record left (under its lock, so no append re-adds one meanwhile). */
  #forgetIfEmpty(conversation: string, owners: Set<string>): Promise<void> {
    return this.#lock.run(conversation, async () => {
      await this.#settled();
      const [any] = await this.#records
        .keys({ gte: conversation + SEP, lt: conversation + SEP_END, limit: 1 })
        .all();
      if (any !== undefined) return;
      const ops: Op[] = [];
      for (const owner of owners) {
        const key = owner + SEP + conversation;
        this.#indexed.delete(key);
        ops.push({ type: 'del', sublevel: this.#owners, key });
      }
      if (ops.length > 0) await this.#write(ops);
    });
  }

  /**
   * Deletes a conversation's records matching `match`, their entries in their
   * owners' archives, and the owner → conversation entries of owners left
   * with no record in it. The first batch also writes the conversation's seq
   * key (the high-water mark), so seqs are never reused even when every record
   * is gone. Runs under the conversation's lock so that an append cannot
   * re-add an index entry this is about to drop.
   */
  #deleteWhere(conversation: string, match: (r: ArchiveRecord<T>) => boolean): Promise<number> {
    return this.#lock.run(conversation, async () => {
      await this.#settled();
      const last = await this.#readLastSeq(conversation);
      let removed = 0;
      let ops: Op[] = [];
      const touched = new Set<string>();
      const remaining = new Set<string>();
      const dropped = new Map<string, number>();
      const range = { gte: conversation + SEP, lt: conversation + SEP_END };
      for await (const [key, text] of this.#records.iterator(range)) {
        const record = JSON.parse(text) as ArchiveRecord<T>;
        if (!match(record)) {
          record.owners.forEach((o) => remaining.add(o));
          continue;
        }
        record.owners.forEach((o) => touched.add(o));
        if (removed === 0)
          ops.push({ type: 'put', sublevel: this.#seqs, key: conversation, value: String(last) });
        ops.push({ type: 'del', sublevel: this.#records, key });
        if (record.pos !== undefined) {
          // The record's entries in its owners' archives go with it.
          const all = archivers(record);
          for (const o of all) {
            ops.push({ type: 'del', sublevel: this.#userIndex, key: o + SEP + pad(record.pos) });
            ops.push({
              type: 'del',
              sublevel: this.#peerIndex,
              key: o + SEP + peerOf(record, o) + SEP + pad(record.pos),
            });
            for (const key of [o, o + SEP + peerOf(record, o)])
              dropped.set(key, (dropped.get(key) ?? 0) + 1);
          }
          const pair = sharedPair(record, all);
          if (pair !== undefined)
            ops.push({ type: 'del', sublevel: this.#pairIndex, key: pair + pad(record.pos) });
        }
        removed++;
        if (ops.length >= BATCH) {
          await this.#write(ops);
          ops = [];
        }
      }
      // Counts are adjusted from memory, synchronously with the write asked for below.
      for (const o of dropped.keys()) await this.#loadCount(o);
      for (const [o, k] of dropped) {
        const n = Math.max(0, (this.#count.get(o)?.n ?? 0) - k);
        ops.push(this.#checkpoint(o, n));
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
    const [lastKey] = await this.#records
      .keys({ gte: conversation + SEP, lt: conversation + SEP_END, reverse: true, limit: 1 })
      .all();
    const fromRecords = lastKey === undefined ? 0 : Number(lastKey.slice(conversation.length + 1));
    return Math.max(mark, fromRecords);
  }

  #remember(indexKey: string): void {
    this.#indexed.add(indexKey);
    if (this.#indexed.size > INDEX_CACHE)
      this.#indexed.delete(this.#indexed.values().next().value as string);
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

/** An owner index entry from its key parts and value (conversation SEP pad(seq)). */
function entry(owner: string, pos: number, value: string): Entry {
  const sep = value.lastIndexOf(SEP);
  return { owner, pos, conversation: value.slice(0, sep), seq: Number(value.slice(sep + 1)) };
}

/**
 * The `v` key prefix of a one-to-one record both of whose owners archive it
 * (`archiving`: its archivers), else undefined: the record then has a `w`
 * entry per archiving owner.
 */
function sharedPair(record: { owners: string[] }, archiving: string[]): string | undefined {
  const { owners } = record;
  if (owners.length !== 2 || archiving.length !== 2 || owners[0] === owners[1]) return undefined;
  return pairPrefix(owners[0], owners[1]);
}

/** The `v` key prefix of two distinct owners, the same whichever is named first. */
function pairPrefix(a: string, b: string): string {
  return a < b ? a + SEP + b + SEP : b + SEP + a + SEP;
}

/** The count keys an append raises: each archiving owner's total and its count with the record's peer. */
function countKeys(input: { owners: string[]; with: string }, indexed: string[]): string[] {
  const out: string[] = [];
  for (const owner of indexed) out.push(owner, owner + SEP + peerOf(input, owner));
  return out;
}
