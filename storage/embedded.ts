/**
 * The embedded backend: one LevelDB database (classic-level) in one directory,
 * nothing to install. It is the default of a single node.
 *
 * Durability: a write resolves only after LevelDB has appended it to its
 * write-ahead log with write(2), i.e. it is in the operating system's page
 * cache. That survives kill -9 of the process (storage/test/crash.test.ts
 * checks it); it does not survive a power loss or kernel crash unless
 * `sync: true` is set, which fsyncs every write and is much slower.
 *
 * Key layout (sublevels are prefixes of one key space, so a batch can span
 * them atomically; `<name>` is the store name, NUL separates id parts so one
 * conversation's or owner's key range never contains another's):
 *
 *   !kv!<name>!<key>                          value (JSON)
 *   !ar!<name>!r!<conversation>\0<seq:16>     ArchiveRecord (JSON)
 *   !ar!<name>!s!<conversation>               last seq (never decreases)
 *   !ar!<name>!o!<owner>\0<conversation>      '' (owner index)
 *   !q!<name>!i!<owner>\0<id:16>              value (JSON)
 *   !q!<name>!m!<owner>                       { last, count }
 */

import { mkdir } from 'node:fs/promises';
import { ClassicLevel } from 'classic-level';
import type {
  ArchivePage,
  ArchiveQuery,
  ArchiveRecord,
  ArchiveStore,
  KeyValueStore,
  QueueItem,
  QueueStore,
  Storage,
} from './types.ts';
import { KeyedLock, checkId, inTimeRange, jsonClone, pad, pageLimit, seqRange } from './util.ts';

/** Options of {@link EmbeddedStorage}. */
export interface EmbeddedStorageOptions {
  /** Directory of the database; created if missing and owned by the store alone. */
  dir: string;
  /** fsync every write: survive power loss too, at a large cost in write latency. Default false. */
  sync?: boolean;
}

type Db = ClassicLevel<string, string>;
type Sub = ReturnType<typeof sublevel>;
type Op =
  | { type: 'put'; sublevel: Sub; key: string; value: string }
  | { type: 'del'; sublevel: Sub; key: string };
/** Commits operations atomically (honouring the `sync` option). */
type Write = (ops: Op[]) => Promise<void>;

function sublevel(db: Db, path: string[]) {
  return db.sublevel<string, string>(path, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
}

const SEP = '\u0000';
/** Upper bound of a NUL-separated id range: the byte after the separator. */
const SEP_END = '\u0001';
/** Deletes are flushed in batches of this size so maintenance never holds a huge batch in memory. */
const BATCH = 1000;
/** At most this many conversations keep their last seq cached in memory. */
const SEQ_CACHE = 10_000;

/**
 * Sublevel names must be printable ASCII without the `!` separator, while
 * store names are free-form: percent-encode them.
 */
function subName(name: string): string {
  return encodeURIComponent(name).replace(
    /[!'()*~]/g,
    (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase(),
  );
}

/** The byte range of every key starting with `prefix` (no UTF-8 string contains 0xFF). */
function prefixRange(prefix: string): { gte: Buffer; lt: Buffer } {
  const start = Buffer.from(prefix, 'utf8');
  return { gte: start, lt: Buffer.concat([start, Buffer.from([0xff])]) };
}

/** Storage on LevelDB under one local directory. */
export class EmbeddedStorage implements Storage {
  readonly name = 'embedded';
  readonly #dir: string;
  readonly #db: Db;
  readonly #write: Write;
  readonly #stores = new Map<string, unknown>();

  constructor(options: EmbeddedStorageOptions) {
    this.#dir = options.dir;
    const sync = options.sync ?? false;
    // All writes go through batch: it is atomic across sublevels and, unlike
    // the sublevel put/del typings, takes classic-level's `sync` option.
    this.#write = (ops) => this.#db.batch(ops, { sync });
    // Values are JSON we encode ourselves: level's json encoding refuses null.
    this.#db = new ClassicLevel<string, string>(options.dir, {
      keyEncoding: 'utf8',
      valueEncoding: 'utf8',
    });
  }

  async open(): Promise<void> {
    if (this.#db.status === 'open') return;
    await mkdir(this.#dir, { recursive: true });
    try {
      await this.#db.open();
    } catch (err) {
      const e = err as { code?: string; cause?: { code?: string } };
      // LevelDB holds an exclusive lock on <dir>/LOCK while open.
      if (e.code === 'LEVEL_LOCKED' || e.cause?.code === 'LEVEL_LOCKED') {
        throw new Error(
          `storage directory ${this.#dir} is in use by another process (LevelDB lock held); ` +
            'stop the other parley node or choose another data directory',
          { cause: err },
        );
      }
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.#db.status === 'closed') return;
    await this.#db.close();
  }

  async ping(): Promise<boolean> {
    return this.#db.status === 'open';
  }

  kv<T>(name: string): KeyValueStore<T> {
    return this.#store(
      `kv:${name}`,
      () => new LevelKeyValue<T>(sublevel(this.#db, ['kv', subName(name)]), this.#write),
    );
  }

  archive<T>(name: string): ArchiveStore<T> {
    return this.#store(
      `ar:${name}`,
      () => new LevelArchive<T>(this.#db, ['ar', subName(name)], this.#write),
    );
  }

  queue<T>(name: string): QueueStore<T> {
    return this.#store(
      `q:${name}`,
      () => new LevelQueue<T>(this.#db, ['q', subName(name)], this.#write),
    );
  }

  /** One instance per store, so its locks and caches are shared by every caller. */
  #store<S>(key: string, make: () => S): S {
    let store = this.#stores.get(key) as S | undefined;
    if (store === undefined) {
      store = make();
      this.#stores.set(key, store);
    }
    return store;
  }
}

class LevelKeyValue<T> implements KeyValueStore<T> {
  constructor(
    private readonly sub: Sub,
    private readonly write: Write,
  ) {}

  async get(key: string): Promise<T | undefined> {
    const text = await this.sub.get(key);
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  async put(key: string, value: T): Promise<void> {
    await this.write([
      { type: 'put', sublevel: this.sub, key, value: JSON.stringify(jsonClone(value)) },
    ]);
  }

  async delete(key: string): Promise<void> {
    await this.write([{ type: 'del', sublevel: this.sub, key }]);
  }

  async keys(prefix = ''): Promise<string[]> {
    const out: string[] = [];
    const range = prefix === '' ? {} : prefixRange(prefix);
    for await (const key of this.sub.keys<Buffer>({ ...range, keyEncoding: 'buffer' }))
      out.push(key.toString('utf8'));
    return out;
  }
}

class LevelArchive<T> implements ArchiveStore<T> {
  readonly #records: Sub;
  readonly #seqs: Sub;
  readonly #owners: Sub;
  readonly #write: Write;
  readonly #lock = new KeyedLock();
  /** Last seq per conversation; disk stays the truth, this only saves a read per append. */
  readonly #lastSeq = new Map<string, number>();

  constructor(db: Db, path: string[], write: Write) {
    this.#records = sublevel(db, [...path, 'r']);
    this.#seqs = sublevel(db, [...path, 's']);
    this.#owners = sublevel(db, [...path, 'o']);
    this.#write = write;
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
    return this.#readLastSeq(conversation);
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
        if (!remaining.has(owner))
          ops.push({ type: 'del', sublevel: this.#owners, key: owner + SEP + conversation });
      }
      if (ops.length > 0) await this.#write(ops);
      return removed;
    });
  }

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
    if (this.#lastSeq.size > SEQ_CACHE)
      this.#lastSeq.delete(this.#lastSeq.keys().next().value as string);
  }
}

interface QueueMeta {
  /** highest id ever given; ids are never reused, even after clear */
  last: number;
  /** items currently queued */
  count: number;
}

class LevelQueue<T> implements QueueStore<T> {
  readonly #items: Sub;
  readonly #meta: Sub;
  readonly #write: Write;
  readonly #lock = new KeyedLock();

  constructor(db: Db, path: string[], write: Write) {
    this.#items = sublevel(db, [...path, 'i']);
    this.#meta = sublevel(db, [...path, 'm']);
    this.#write = write;
  }

  async push(owner: string, value: T): Promise<string> {
    checkId('owner', owner);
    const text = JSON.stringify(jsonClone(value));
    return this.#lock.run(owner, async () => {
      const meta = await this.#readMeta(owner);
      const id = pad(meta.last + 1);
      await this.#write([
        { type: 'put', sublevel: this.#items, key: owner + SEP + id, value: text },
        {
          type: 'put',
          sublevel: this.#meta,
          key: owner,
          value: JSON.stringify({ last: meta.last + 1, count: meta.count + 1 }),
        },
      ]);
      return id;
    });
  }

  async list(owner: string, limit?: number): Promise<QueueItem<T>[]> {
    checkId('owner', owner);
    const out: QueueItem<T>[] = [];
    const range = {
      gte: owner + SEP,
      lt: owner + SEP_END,
      ...(limit === undefined ? {} : { limit: Math.max(0, limit) }),
    };
    for await (const [key, text] of this.#items.iterator(range)) {
      out.push({ id: key.slice(owner.length + 1), value: JSON.parse(text) as T });
    }
    return out;
  }

  async remove(owner: string, ids: string[]): Promise<void> {
    checkId('owner', owner);
    await this.#lock.run(owner, async () => {
      const keys = [...new Set(ids)].map((id) => owner + SEP + id);
      // Only ids that exist may lower the count.
      const found = await this.#items.hasMany(keys);
      const present = keys.filter((_, i) => found[i]);
      if (present.length === 0) return;
      const meta = await this.#readMeta(owner);
      const ops: Op[] = present.map((key): Op => ({ type: 'del', sublevel: this.#items, key }));
      ops.push({
        type: 'put',
        sublevel: this.#meta,
        key: owner,
        value: JSON.stringify({ ...meta, count: meta.count - present.length }),
      });
      await this.#write(ops);
    });
  }

  async count(owner: string): Promise<number> {
    checkId('owner', owner);
    return (await this.#readMeta(owner)).count;
  }

  async clear(owner: string): Promise<void> {
    checkId('owner', owner);
    await this.#lock.run(owner, async () => {
      const meta = await this.#readMeta(owner);
      let deleted = 0;
      let ops: Op[] = [];
      // Each batch lowers the count with its deletes, so a crash mid-clear
      // leaves the count matching the items left. `last` is kept so ids stay
      // increasing and a stale id list never hits a newer item.
      const flush = async (count: number): Promise<void> => {
        ops.push({
          type: 'put',
          sublevel: this.#meta,
          key: owner,
          value: JSON.stringify({ last: meta.last, count }),
        });
        await this.#write(ops);
        ops = [];
      };
      for await (const key of this.#items.keys({ gte: owner + SEP, lt: owner + SEP_END })) {
        ops.push({ type: 'del', sublevel: this.#items, key });
        deleted++;
        if (ops.length >= BATCH) await flush(Math.max(0, meta.count - deleted));
      }
      await flush(0);
    });
  }

  async #readMeta(owner: string): Promise<QueueMeta> {
    const text = await this.#meta.get(owner);
    return text === undefined ? { last: 0, count: 0 } : (JSON.parse(text) as QueueMeta);
  }
}
