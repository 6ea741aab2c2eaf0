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
 *   !ar!<name>!s!<conversation>               seq high-water mark, written when records are deleted
 *   !ar!<name>!o!<owner>\0<conversation>      '' (owner → conversations)
 *   !ar!<name>!u!<owner>\0<pos:16>            <conversation>\0<seq:16> (the owner's archive, XEP-0313)
 *   !ar!<name>!v!<a>\0<b>\0<pos:16>           <conversation>\0<seq:16> (by peer, `with`: a one-to-one record both
 *                                             owners a < b archive, one entry for the two)
 *   !ar!<name>!w!<owner>\0<peer>\0<pos:16>    <conversation>\0<seq:16> (by peer, any other record: one per
 *                                             archiving owner; versions up to 7b800a2 wrote only these)
 *   !ar!<name>!n!<owner>[\0<peer>]            <count>@<pos>: entries in the owner's archive [with that peer] are
 *                                             <count> plus the index entries after <pos> (a plain <count>,
 *                                             written by versions up to 7b800a2 with every append, is exact)
 *   !ar!<name>!h!pos                          the last archive position handed out
 *   !q!<name>!i!<owner>\0<id:16>              value (JSON)
 *   !q!<name>!m!<owner>                       { last, count }
 *
 * The archive and queues live in storage/embedded/ (archive.ts, queue.ts, on
 * the shared plumbing of level.ts); this file opens the database and hands
 * out one store object per name.
 */

import { mkdir } from 'node:fs/promises';
import { ClassicLevel } from 'classic-level';
import type { ArchiveStore, KeyValueOp, KeyValueStore, QueueStore, Storage } from './types.ts';
import { jsonClone } from './util.ts';
import { LevelArchive } from './embedded/archive.ts';
import { lowerNewThreads, threadIds } from './embedded/background.ts';
import { sublevel } from './embedded/level.ts';
import type { Db, MakeSub, Op, Sub, Write } from './embedded/level.ts';
import { LevelQueue } from './embedded/queue.ts';
import { ReadCache } from './embedded/read-cache.ts';

/** Options of {@link EmbeddedStorage}. */
export interface EmbeddedStorageOptions {
  /** Directory of the database; created if missing and owned by the store alone. */
  dir: string;
  /** fsync every write: survive power loss too, at a large cost in write latency. Default false. */
  sync?: boolean;
  /**
   * Bytes LevelDB buffers in memory (its memtable) before it writes them out
   * as a sorted file. Default {@link DEFAULT_WRITE_BUFFER} (LevelDB's own is
   * 4 MiB). Up to twice this is held while one buffer is being written out.
   */
  writeBufferSize?: number;
  /**
   * Records each key-value store, and per-user counts each queue, keeps in
   * memory, as stored, for reads ({@link DEFAULT_READ_CACHE_ENTRIES}; 0 =
   * none). Safe because this store is the only writer of its directory
   * (LevelDB's lock).
   */
  readCacheEntries?: number;
}

/**
 * 10,000 records per key-value store (accounts, rosters, ...) and per-user
 * counts per queue. A login reads its account and roster and lists its
 * offline queue; served from memory they cost no LevelDB work,
 * which on a one-core server takes the core from the event loop
 * (bench/PROFILE-NOTES.md, thirteenth round). A few hundred bytes each.
 */
export const DEFAULT_READ_CACHE_ENTRIES = 10_000;

/**
 * 32 MiB. The archive's keys are spread over every conversation, so each
 * buffer LevelDB writes out overlaps the whole archive on disk and its
 * compaction rewrites what is there; a larger buffer means fewer of them.
 * Measured on an archive growing to 2 million records (bench/PROFILE-NOTES.md,
 * seventh round): 10-17 µs of CPU per append instead of 16-30 µs with 4 MiB.
 */
export const DEFAULT_WRITE_BUFFER = 32 * 1024 * 1024;

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
  #pending: { ops: Op[]; resolve: () => void; reject: (err: unknown) => void }[] = [];
  /** A batch is being written or about to be: new writes wait for the next one. */
  #busy = false;
  /** Every sublevel handed out: abstract-level closes them with the database and does not reopen them. */
  readonly #subs: Sub[] = [];
  readonly #readCacheEntries: number;

  constructor(options: EmbeddedStorageOptions) {
    this.#dir = options.dir;
    this.#readCacheEntries = options.readCacheEntries ?? DEFAULT_READ_CACHE_ENTRIES;
    const sync = options.sync ?? false;
    // All writes go through batch: it is atomic across sublevels and, unlike
    // the sublevel put/del typings, takes classic-level's `sync` option.
    // Group commit: writes asked for while no batch is being written go to
    // LevelDB together on the next turn of the event loop; writes asked for
    // while one is being written wait and go together as the next batch. One
    // batch at a time keeps the promise of {@link Write}: writes complete in
    // the order they were asked for, which lets the archive hand out a
    // conversation's next seq before the previous record is on disk. Each
    // caller resolves only when its own batch is written, so durability per
    // caller is unchanged.
    this.#write = (ops) =>
      new Promise<void>((resolve, reject) => {
        this.#pending.push({ ops, resolve, reject });
        this.#schedule(sync);
      });
    // Values are JSON we encode ourselves: level's json encoding refuses null.
    this.#db = new ClassicLevel<string, string>(options.dir, {
      keyEncoding: 'utf8',
      valueEncoding: 'utf8',
      writeBufferSize: options.writeBufferSize ?? DEFAULT_WRITE_BUFFER,
    });
  }

  /** Starts the next batch on the next turn unless one is being written or already due. */
  #schedule(sync: boolean): void {
    if (this.#busy || this.#pending.length === 0) return;
    this.#busy = true;
    setImmediate(() => void this.#flush(sync));
  }

  /** Write the writes collected so far; if the group fails, each caller's ops are retried alone so one bad write fails only its caller. */
  async #flush(sync: boolean): Promise<void> {
    const group = this.#pending;
    this.#pending = [];
    try {
      if (group.length === 1) {
        const [g] = group;
        await this.#commit(group, sync).then(g.resolve, g.reject);
        return;
      }
      try {
        await this.#commit(group, sync);
        for (const g of group) g.resolve();
      } catch {
        for (const g of group) await this.#db.batch(g.ops, { sync }).then(g.resolve, g.reject);
      }
    } finally {
      this.#busy = false;
      this.#schedule(sync);
    }
  }

  /**
   * A group's ops into one native LevelDB batch while the database is open:
   * root-level keys (sublevel prefix + key, the same bytes) put one by one
   * into classic-level's chained batch (its implementation methods `_put`,
   * `_del`, `_write`), then written at once. The public `batch` clones and
   * re-encodes every op and keeps the clones alive until LevelDB answers,
   * which under load was the largest source of objects surviving
   * young-generation GC; and classic-level's array form (`_batch`) reads
   * each op object's properties through N-API, about twice the main-thread
   * time of a call per op with the key and value as arguments. Otherwise the
   * public path, with its not-open errors.
   */
  #commit(group: { ops: Op[] }[], sync: boolean): Promise<void> {
    if (this.#db.status !== 'open') return this.#db.batch(rootOps(group), { sync });
    const db = this.#db as unknown as NativeDb;
    const batch = db._chainedBatch();
    try {
      fillBatch(batch, group);
    } catch (err) {
      db.detachResource(batch);
      return Promise.reject(err);
    }
    return batch._write({ sync }).finally(() => db.detachResource(batch));
  }

  async open(): Promise<void> {
    if (this.#db.status === 'open') return;
    await mkdir(this.#dir, { recursive: true });
    const threads = threadIds();
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
    if (threads) {
      // Starts LevelDB's compaction thread now (it flushes the empty write
      // buffer; the range holds no key, so nothing on disk is compacted), so
      // that it can be told apart from the threads that were there before.
      await this.#db.compactRange('\u0000', '\u0000');
      lowerNewThreads(threads);
    }
    // abstract-level 3 leaves sublevels closed after the database is closed
    // and reopened; open them again so store objects outlive the cycle.
    await Promise.all(this.#subs.map((sub) => sub.open()));
    for (const store of this.#stores.values())
      if (
        store instanceof LevelArchive ||
        store instanceof LevelKeyValue ||
        store instanceof LevelQueue
      )
        store.reset();
  }

  async close(): Promise<void> {
    if (this.#db.status === 'closed') return;
    await this.#db.close();
  }

  async ping(): Promise<boolean> {
    return this.#db.status === 'open';
  }

  /**
   * Copy every record into a new LevelDB database at `dir` (which must not
   * exist or be empty) while the store keeps serving. One iterator over the
   * whole key space (every store is a prefix of it) reads LevelDB's implicit
   * snapshot, taken when the iterator is created, and every write of this
   * store is one atomic batch (group commit, {@link Write}): so the copy is
   * the store as it was at one instant, with no write paused and none half
   * in it. Keys and values are copied as bytes. Restoring is copying the
   * directory back while no node runs (bin/backup.ts).
   */
  async backup(dir: string): Promise<{ records: number }> {
    if (this.#db.status !== 'open') throw new Error('the store is not open');
    const target = new ClassicLevel<Buffer, Buffer>(dir, {
      keyEncoding: 'buffer',
      valueEncoding: 'buffer',
      errorIfExists: true,
    });
    await target.open();
    let records = 0;
    const it = this.#db.iterator<Buffer, Buffer>({
      keyEncoding: 'buffer',
      valueEncoding: 'buffer',
    });
    try {
      for (;;) {
        const entries = await it.nextv(1000);
        if (entries.length === 0) break;
        await target.batch(entries.map(([key, value]) => ({ type: 'put' as const, key, value })));
        records += entries.length;
      }
    } finally {
      await it.close();
      await target.close();
    }
    return { records };
  }

  kv<T>(name: string): KeyValueStore<T> {
    return this.#store(
      `kv:${name}`,
      () =>
        new LevelKeyValue<T>(
          this.#sub(['kv', subName(name)])(''),
          this.#write,
          this.#readCacheEntries,
        ),
    );
  }

  archive<T>(name: string): ArchiveStore<T> {
    return this.#store(
      `ar:${name}`,
      () => new LevelArchive<T>(this.#sub(['ar', subName(name)]), this.#write),
    );
  }

  queue<T>(name: string): QueueStore<T> {
    return this.#store(
      `q:${name}`,
      () => new LevelQueue<T>(this.#sub(['q', subName(name)]), this.#write, this.#readCacheEntries),
    );
  }

  /** A sublevel factory for one store's prefix; '' is the prefix itself. */
  #sub(path: string[]): MakeSub {
    return (name) => {
      const sub = sublevel(this.#db, name === '' ? path : [...path, name]);
      this.#subs.push(sub);
      return sub;
    };
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

/** Records are JSON text; recently read or written ones are kept in memory ({@link ReadCache}), and parsed on every read, so a caller may change what it got. */
class LevelKeyValue<T> implements KeyValueStore<T> {
  readonly #cache: ReadCache;

  constructor(
    private readonly sub: Sub,
    private readonly write: Write,
    cacheEntries: number,
  ) {
    this.#cache = new ReadCache(cacheEntries);
  }

  async get(key: string): Promise<T | undefined> {
    const text = await this.#cache.read(key, () => this.sub.get(key));
    return text === null ? undefined : (JSON.parse(text) as T);
  }

  async put(key: string, value: T): Promise<void> {
    const text = JSON.stringify(jsonClone(value));
    await this.#cache.write(key, text, () =>
      this.write([{ type: 'put', sublevel: this.sub, key, value: text }]),
    );
  }

  async delete(key: string): Promise<void> {
    await this.#cache.write(key, null, () =>
      this.write([{ type: 'del', sublevel: this.sub, key }]),
    );
  }

  /** Forget everything kept (the database was closed and opened again). */
  reset(): void {
    this.#cache.reset();
  }

  async keys(prefix = ''): Promise<string[]> {
    const out: string[] = [];
    const range = prefix === '' ? {} : prefixRange(prefix);
    for await (const key of this.sub.keys<Buffer>({ ...range, keyEncoding: 'buffer' }))
      out.push(key.toString('utf8'));
    return out;
  }

  /** A range read of LevelDB (not the read cache): every write this store made has settled in call order. */
  async entries(prefix: string): Promise<[string, T][]> {
    const out: [string, T][] = [];
    const range = prefix === '' ? {} : prefixRange(prefix);
    for await (const [key, text] of this.sub.iterator<Buffer, string>({
      ...range,
      keyEncoding: 'buffer',
    }))
      out.push([key.toString('utf8'), JSON.parse(text) as T]);
    return out;
  }

  /** One LevelDB batch: every op or none. */
  async batch(ops: KeyValueOp<T>[]): Promise<void> {
    const texts = ops.map((op): [string, string | null] => [
      op.key,
      op.type === 'put' ? JSON.stringify(jsonClone(op.value)) : null,
    ]);
    await this.#cache.writeMany(texts, () =>
      this.write(
        texts.map(([key, value]) =>
          value === null
            ? { type: 'del', sublevel: this.sub, key }
            : { type: 'put', sublevel: this.sub, key, value },
        ),
      ),
    );
  }
}

/** A batch op on the root database. */
type RootOp = { type: 'put'; key: string; value: string } | { type: 'del'; key: string };

/** classic-level's chained batch, by its implementation methods (no per-op checks or clones). */
interface NativeBatch {
  _put(key: string, value: string): void;
  _del(key: string): void;
  _write(options: { sync: boolean }): Promise<void>;
}

/** The parts of classic-level (abstract-level) that EmbeddedStorage#commit uses. */
interface NativeDb {
  _chainedBatch(): NativeBatch;
  detachResource(resource: NativeBatch): void;
}

/**
 * The ops of a group into `batch` with the sublevel prefix on each key,
 * leaving out each `rewritten` put that a later such put of the same key
 * overwrites (see {@link rootOps}).
 */
function fillBatch(batch: NativeBatch, group: { ops: Op[] }[]): void {
  // The last position of each rewritten key, counted over the group's ops.
  let last: Map<string, number> | undefined;
  let i = 0;
  for (const g of group) {
    for (const op of g.ops) {
      if (op.type === 'put' && op.rewritten)
        (last ??= new Map()).set(op.sublevel.prefix + op.key, i);
      i++;
    }
  }
  i = 0;
  for (const g of group) {
    for (const op of g.ops) {
      const key = op.sublevel.prefix + op.key;
      if (op.type === 'del') batch._del(key);
      else if (!op.rewritten || last?.get(key) === i) batch._put(key, op.value);
      i++;
    }
  }
}

/**
 * The ops of a group as root-level ops with the sublevel prefix already on
 * the key. The same bytes reach LevelDB (a utf8 sublevel key is its prefix
 * followed by the key), without abstract-level resolving the sublevel of
 * every op of the batch.
 *
 * A put marked `rewritten` that a later such put of the group overwrites
 * (same key) is left out: a batch is applied in order and atomically, so the
 * result is the same, and a group of busy conversations' appends rewrites
 * the same few keys (an owner's counts, the archive position) once per
 * message. Every dropped op is LevelDB work saved on the node's core: the
 * encoding here, the log record, the memtable entry and its compaction. Only
 * marked puts are looked up, so records and index entries cost no hashing.
 */
function rootOps(group: { ops: Op[] }[]): RootOp[] {
  const out: (RootOp | undefined)[] = [];
  let last: Map<string, number> | undefined;
  let dropped = 0;
  for (const g of group) {
    for (const op of g.ops) {
      const key = op.sublevel.prefix + op.key;
      if (op.type === 'del') {
        out.push({ type: 'del', key });
        continue;
      }
      if (op.rewritten) {
        last ??= new Map();
        const earlier = last.get(key);
        if (earlier !== undefined) {
          out[earlier] = undefined;
          dropped++;
        }
        last.set(key, out.length);
      }
      out.push({ type: 'put', key, value: op.value });
    }
  }
  return dropped === 0 ? (out as RootOp[]) : out.filter((op): op is RootOp => op !== undefined);
}
