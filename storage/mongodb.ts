/**
 * The MongoDB backend, for large deployments: every node shares one
 * database, so the archive's seq and the queue ids come from atomic counters
 * in MongoDB (`findOneAndUpdate` + `$inc`), never from a node's memory.
 * Collections, indexes, the query → index list and the schema migrations:
 * storage/mongodb-schema.ts; archives: storage/mongodb-archive.ts.
 *
 * Writes are acknowledged by a majority of the replica set by default
 * (`w: majority`, journaled), so an acknowledged message survives the loss
 * of the primary; a `w` in the connection string wins.
 *
 * A failure between taking a seq and inserting the record leaves a gap in
 * that conversation's seqs: they stay strictly increasing, which is the
 * promise, and a gap is what a client resuming by seq handles anyway.
 */

import { MongoClient } from 'mongodb';
import type { Collection, Db, Document } from 'mongodb';
import { GridFsBlobStore } from './blobs-gridfs.ts';
import type {
  ArchiveStore,
  KeyValueOp,
  KeyValueStore,
  QueueItem,
  QueueStore,
  Storage,
} from './types.ts';
import { checkId, compareKeys, jsonClone, pad } from './util.ts';
import { MongoArchive } from './mongodb-archive.ts';
import { INDEXES, migrate } from './mongodb-schema.ts';

/** Options of {@link MongoStorage}. */
export interface MongoStorageOptions {
  /** A MongoDB connection string, e.g. `mongodb://localhost:27017`. */
  url: string;
  /** Database name; defaults to the one in the URL, else `parley`. */
  dbName?: string;
  /** Delete archived records this many days after their archive time, by a TTL index in MongoDB; 0 (default) keeps them. */
  archiveMaxAgeDays?: number;
}

/** The write concern: majority unless the connection string names one. */
export function writeConcernOf(url: string): { writeConcern?: { w: 'majority'; journal: true } } {
  return /[?&]w=/.test(url) ? {} : { writeConcern: { w: 'majority', journal: true } };
}

export interface Counter {
  _id: string;
  seq: number;
}

/** Hands out a collection of the open database; stores outlive a close/open cycle. */
export type Open = (collection: string) => Collection<Document>;

/** Collection names may not contain `$` or NUL: percent-encode store names. */
export function collectionName(kind: string, name: string): string {
  return `${kind}.${encodeURIComponent(name)}`;
}

/** The connection string with any user and password replaced, for messages and logs. */
export function redactMongoUrl(url: string): string {
  return url.replace(/^(mongodb(?:\+srv)?:\/\/)[^@/]*@/, '$1***@');
}

/** Connect, or fail naming what could not be reached (the driver's message names only a host). */
export async function connectMongo(client: MongoClient, url: string, what: string): Promise<void> {
  try {
    await client.connect();
  } catch (err) {
    await client.close().catch(() => {});
    throw new Error(
      `${what}: cannot reach MongoDB at ${redactMongoUrl(url)}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** The database named in the connection string's path, if any. */
export function dbNameOf(url: string): string | undefined {
  const name = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]+)/.exec(url)?.[1];
  return name === undefined ? undefined : decodeURIComponent(name);
}

/** Creates a collection's indexes once, retrying on the next call after a failure. */
export function once(task: () => Promise<unknown>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () =>
    (done ??= task().then(
      () => undefined,
      (err: unknown) => {
        done = undefined;
        throw err;
      },
    ));
}

/** Atomically takes the next value of a counter; atomic across nodes. */
export async function nextSeq(counters: Collection<Counter>, id: string): Promise<number> {
  const doc = await counters.findOneAndUpdate(
    { _id: id },
    { $inc: { seq: 1 } },
    { upsert: true, returnDocument: 'after' },
  );
  if (doc === null) throw new Error(`counter ${id} was not returned by findOneAndUpdate`);
  return doc.seq;
}

/** The next archive position of a store: max(last + 1, timestamp × 1000), atomic across nodes (storage/util.ts nextPos). */
export async function nextPos(
  counters: Collection<Counter>,
  id: string,
  timestamp: number,
): Promise<number> {
  const t = Number.isFinite(timestamp) && timestamp > 0 ? Math.floor(timestamp) * 1000 : 0;
  const doc = await counters.findOneAndUpdate(
    { _id: id },
    [{ $set: { seq: { $max: [{ $add: [{ $ifNull: ['$seq', 0] }, 1] }, t] } } }],
    { upsert: true, returnDocument: 'after' },
  );
  if (doc === null) throw new Error(`counter ${id} was not returned by findOneAndUpdate`);
  return doc.seq;
}

/** Storage in a MongoDB database, shared by every node of a cluster. */
export class MongoStorage implements Storage {
  readonly name = 'mongodb';
  readonly #url: string;
  readonly #dbName: string;
  readonly #ttlDays: number;
  #client: MongoClient | undefined;
  #db: Db | undefined;
  readonly #stores = new Map<string, unknown>();

  constructor(options: MongoStorageOptions) {
    this.#url = options.url;
    this.#dbName = options.dbName ?? dbNameOf(options.url) ?? 'parley';
    this.#ttlDays = options.archiveMaxAgeDays ?? 0;
  }

  async open(): Promise<void> {
    if (this.#client !== undefined) return;
    // ignoreUndefined: values are JSON, where an undefined field is absent, not null.
    const client = new MongoClient(this.#url, {
      ignoreUndefined: true,
      ...writeConcernOf(this.#url),
    });
    await connectMongo(client, this.#url, 'storage');
    try {
      // The schema this code writes: migrations run once, in order (storage/mongodb-schema.ts).
      await migrate(client.db(this.#dbName));
    } catch (err) {
      await client.close();
      throw err;
    }
    this.#client = client;
    this.#db = client.db(this.#dbName);
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#db = undefined;
    await client?.close();
  }

  async ping(): Promise<boolean> {
    try {
      await this.#db?.command({ ping: 1 });
      return this.#db !== undefined;
    } catch {
      return false;
    }
  }

  kv<T>(name: string): KeyValueStore<T> {
    return this.#store(
      `kv:${name}`,
      () => new MongoKeyValue<T>(this.#open, collectionName('kv', name)),
    );
  }

  archive<T>(name: string): ArchiveStore<T> {
    return this.#store(`ar:${name}`, () => new MongoArchive<T>(this.#open, name, this.#ttlDays));
  }

  queue<T>(name: string): QueueStore<T> {
    return this.#store(`q:${name}`, () => new MongoQueue<T>(this.#open, name));
  }

  /** Uploaded files in GridFS, bucket `name` (storage/blobs-gridfs.ts); usable once open. */
  blobs(name = 'upload'): GridFsBlobStore {
    return this.#store(
      `blobs:${name}`,
      () =>
        new GridFsBlobStore(() => {
          if (this.#db === undefined) throw new Error('MongoStorage is not open');
          return this.#db;
        }, name),
    );
  }

  readonly #open: Open = (collection) => {
    if (this.#db === undefined) throw new Error('MongoStorage is not open');
    return this.#db.collection(collection);
  };

  #store<S>(key: string, make: () => S): S {
    let store = this.#stores.get(key) as S | undefined;
    if (store === undefined) {
      store = make();
      this.#stores.set(key, store);
    }
    return store;
  }
}

interface KvDoc {
  _id: string;
  value: unknown;
}

class MongoKeyValue<T> implements KeyValueStore<T> {
  constructor(
    private readonly open: Open,
    private readonly collection: string,
  ) {}

  #coll(): Collection<KvDoc> {
    return this.open(this.collection) as unknown as Collection<KvDoc>;
  }

  async get(key: string): Promise<T | undefined> {
    const doc = await this.#coll().findOne({ _id: key });
    return doc === null ? undefined : (doc.value as T);
  }

  async put(key: string, value: T): Promise<void> {
    await this.#coll().replaceOne({ _id: key }, { value: jsonClone(value) }, { upsert: true });
  }

  async delete(key: string): Promise<void> {
    await this.#coll().deleteOne({ _id: key });
  }

  async keys(prefix = ''): Promise<string[]> {
    // An anchored literal regex is answered from the _id index as a range.
    const filter =
      prefix === '' ? {} : { _id: { $regex: '^' + prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') } };
    const docs = await this.#coll()
      .find(filter, { projection: { _id: 1 } })
      .sort({ _id: 1 })
      .toArray();
    // MongoDB already sorts by UTF-8 bytes; sorting again only guards against a
    // non-simple default collation on the collection.
    return docs.map((d) => d._id).sort(compareKeys);
  }

  async entries(prefix: string): Promise<[string, T][]> {
    const filter =
      prefix === '' ? {} : { _id: { $regex: '^' + prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') } };
    const docs = await this.#coll().find(filter).sort({ _id: 1 }).toArray();
    return docs.sort((a, b) => compareKeys(a._id, b._id)).map((d) => [d._id, d.value as T]);
  }

  /** In order, without a transaction (a standalone server has none): a crash may leave a prefix applied. */
  async batch(ops: KeyValueOp<T>[]): Promise<void> {
    if (ops.length === 0) return;
    const writes = ops.map((op) =>
      op.type === 'put'
        ? {
            replaceOne: {
              filter: { _id: op.key },
              replacement: { value: jsonClone(op.value) },
              upsert: true,
            },
          }
        : { deleteOne: { filter: { _id: op.key } } },
    );
    await this.#coll().bulkWrite(writes, { ordered: true });
  }
}

interface QueueDoc {
  owner: string;
  id: string;
  value: unknown;
  /** JSON length of value (absent on documents from before it was kept) */
  size?: number;
}

class MongoQueue<T> implements QueueStore<T> {
  readonly #indexes: () => Promise<void>;

  constructor(
    private readonly open: Open,
    private readonly name: string,
  ) {
    this.#indexes = once(() => this.#coll().createIndexes(INDEXES.queue.map((i) => ({ ...i }))));
  }

  #coll(): Collection<QueueDoc> {
    return this.open(collectionName('queue', this.name)) as unknown as Collection<QueueDoc>;
  }

  async push(owner: string, value: T): Promise<string> {
    checkId('owner', owner);
    const clone = jsonClone(value);
    // size: the item's JSON length, summed for the per-owner byte bound
    const doc = { owner, id: '', value: clone, size: JSON.stringify(clone).length };
    await this.#indexes();
    const counters = this.open('counters') as unknown as Collection<Counter>;
    doc.id = pad(await nextSeq(counters, `queue:${encodeURIComponent(this.name)}:${owner}`));
    await this.#coll().insertOne(doc);
    return doc.id;
  }

  async list(owner: string, limit?: number): Promise<QueueItem<T>[]> {
    // MongoDB reads limit(0) as "no limit".
    if (limit !== undefined && limit <= 0) return [];
    let cursor = this.#coll()
      .find({ owner }, { projection: { _id: 0, id: 1, value: 1 } })
      .sort({ id: 1 });
    if (limit !== undefined) cursor = cursor.limit(limit);
    return (await cursor.toArray()).map((d) => ({ id: d.id, value: d.value as T }));
  }

  async remove(owner: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#coll().deleteMany({ owner, id: { $in: ids } });
  }

  async count(owner: string): Promise<number> {
    // Counted on the (owner, id) index, without reading documents.
    return this.#coll().countDocuments({ owner });
  }

  async bytes(owner: string): Promise<number> {
    const [r] = await this.#coll()
      .aggregate<{ n: number }>([
        { $match: { owner } },
        { $group: { _id: null, n: { $sum: '$size' } } },
      ])
      .toArray();
    return r?.n ?? 0;
  }

  async clear(owner: string): Promise<void> {
    await this.#coll().deleteMany({ owner });
  }
}
