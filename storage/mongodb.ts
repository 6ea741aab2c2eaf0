/**
 * The MongoDB backend, for clusters: every node shares one database, so the
 * archive's seq and the queue ids come from atomic counters in MongoDB
 * (`findOneAndUpdate` + `$inc`), never from a node's memory.
 *
 * Collections (store names are percent-encoded):
 *
 *   kv.<name>       { _id: key, value }
 *   archive.<name>  { conversation, seq, timestamp, owners, with, id, value }
 *                   indexes: (conversation, seq) unique, (owners, conversation), (timestamp)
 *   queue.<name>    { owner, id, value }, index (owner, id) unique
 *   counters        { _id: 'archive:<name>:<conversation>' | 'queue:<name>:<owner>', seq }
 *
 * A failure between taking a seq and inserting the record leaves a gap in
 * that conversation's seqs: they stay strictly increasing, which is the
 * promise, and a gap is what a client resuming by seq handles anyway.
 */

import { MongoClient } from 'mongodb';
import type { Collection, Db, Document } from 'mongodb';
import type {
  ArchivePage,
  ArchiveQuery,
  ArchiveRecord,
  ArchiveStore,
  KeyValueOp,
  KeyValueStore,
  QueueItem,
  QueueStore,
  Storage,
} from './types.ts';
import { checkId, compareKeys, jsonClone, pad, pageLimit, seqRange } from './util.ts';

/** Options of {@link MongoStorage}. */
export interface MongoStorageOptions {
  /** A MongoDB connection string, e.g. `mongodb://localhost:27017`. */
  url: string;
  /** Database name; defaults to the one in the URL, else `parley`. */
  dbName?: string;
}

interface Counter {
  _id: string;
  seq: number;
}

/** Hands out a collection of the open database; stores outlive a close/open cycle. */
type Open = (collection: string) => Collection<Document>;

/** Collection names may not contain `$` or NUL: percent-encode store names. */
function collectionName(kind: string, name: string): string {
  return `${kind}.${encodeURIComponent(name)}`;
}

/** The database named in the connection string's path, if any. */
function dbNameOf(url: string): string | undefined {
  const name = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]+)/.exec(url)?.[1];
  return name === undefined ? undefined : decodeURIComponent(name);
}

/** Creates a collection's indexes once, retrying on the next call after a failure. */
function once(task: () => Promise<unknown>): () => Promise<void> {
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
async function nextSeq(counters: Collection<Counter>, id: string): Promise<number> {
  const doc = await counters.findOneAndUpdate(
    { _id: id },
    { $inc: { seq: 1 } },
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
  #client: MongoClient | undefined;
  #db: Db | undefined;
  readonly #stores = new Map<string, unknown>();

  constructor(options: MongoStorageOptions) {
    this.#url = options.url;
    this.#dbName = options.dbName ?? dbNameOf(options.url) ?? 'parley';
  }

  async open(): Promise<void> {
    if (this.#client !== undefined) return;
    // ignoreUndefined: values are JSON, where an undefined field is absent, not null.
    const client = new MongoClient(this.#url, { ignoreUndefined: true });
    await client.connect();
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
    return this.#store(`ar:${name}`, () => new MongoArchive<T>(this.#open, name));
  }

  queue<T>(name: string): QueueStore<T> {
    return this.#store(`q:${name}`, () => new MongoQueue<T>(this.#open, name));
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
    const filter = prefix === '' ? {} : { _id: { $regex: '^' + prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') } };
    const docs = await this.#coll().find(filter).sort({ _id: 1 }).toArray();
    return docs.sort((a, b) => compareKeys(a._id, b._id)).map((d) => [d._id, d.value as T]);
  }

  /** In order, without a transaction (a standalone server has none): a crash may leave a prefix applied. */
  async batch(ops: KeyValueOp<T>[]): Promise<void> {
    if (ops.length === 0) return;
    const writes = ops.map((op) =>
      op.type === 'put'
        ? { replaceOne: { filter: { _id: op.key }, replacement: { value: jsonClone(op.value) }, upsert: true } }
        : { deleteOne: { filter: { _id: op.key } } },
    );
    await this.#coll().bulkWrite(writes, { ordered: true });
  }
}

class MongoArchive<T> implements ArchiveStore<T> {
  readonly #indexes: () => Promise<void>;

  constructor(
    private readonly open: Open,
    private readonly name: string,
  ) {
    this.#indexes = once(() =>
      this.#coll().createIndexes([
        // [DESIGN §5] queries by conversation + seq never scan other conversations.
        { key: { conversation: 1, seq: 1 }, unique: true },
        { key: { owners: 1, conversation: 1 } },
        { key: { timestamp: 1 } },
      ]),
    );
  }

  #coll(): Collection<ArchiveRecord<T>> {
    return this.open(collectionName('archive', this.name)) as unknown as Collection<
      ArchiveRecord<T>
    >;
  }

  #counterId(conversation: string): string {
    return `archive:${encodeURIComponent(this.name)}:${conversation}`;
  }

  async append(input: Omit<ArchiveRecord<T>, 'seq'>): Promise<ArchiveRecord<T>> {
    checkId('conversation', input.conversation);
    input.owners.forEach((owner) => checkId('owner', owner));
    const body = jsonClone(input);
    await this.#indexes();
    const counters = this.open('counters') as unknown as Collection<Counter>;
    const record: ArchiveRecord<T> = {
      ...body,
      seq: await nextSeq(counters, this.#counterId(body.conversation)),
    };
    // insertOne adds _id to the object it is given: give it a copy.
    await this.#coll().insertOne({ ...record });
    return record;
  }

  async query(conversation: string, q: ArchiveQuery = {}): Promise<ArchivePage<T>> {
    const { lo, hi } = seqRange(q);
    const limit = pageLimit(q);
    if (lo > hi) return { records: [], complete: true };
    const timestamp: Document = {};
    if (q.start !== undefined) timestamp.$gte = q.start;
    if (q.end !== undefined) timestamp.$lte = q.end;
    const filter: Document = { conversation, seq: { $gte: lo, $lte: hi } };
    if (Object.keys(timestamp).length > 0) filter.timestamp = timestamp;
    const records = (await this.#coll()
      .find(filter, { projection: { _id: 0 } })
      .sort({ seq: q.reverse ? -1 : 1 })
      // One record past the page tells whether the page is complete.
      .limit(limit + 1)
      .toArray()) as ArchiveRecord<T>[];
    return { records: records.slice(0, limit), complete: records.length <= limit };
  }

  async lastSeq(conversation: string): Promise<number> {
    const counters = this.open('counters') as unknown as Collection<Counter>;
    return (await counters.findOne({ _id: this.#counterId(conversation) }))?.seq ?? 0;
  }

  async conversations(owner: string): Promise<string[]> {
    await this.#indexes();
    const found = await this.#coll().distinct('conversation', { owners: owner });
    return (found as string[]).sort(compareKeys);
  }

  async prune(olderThan: number): Promise<number> {
    await this.#indexes();
    return (await this.#coll().deleteMany({ timestamp: { $lt: olderThan } })).deletedCount;
  }

  async removeOwner(owner: string): Promise<void> {
    await this.#indexes();
    await this.#coll().deleteMany({ owners: owner });
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
    this.#indexes = once(() => this.#coll().createIndex({ owner: 1, id: 1 }, { unique: true }));
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
      .aggregate<{ n: number }>([{ $match: { owner } }, { $group: { _id: null, n: { $sum: '$size' } } }])
      .toArray();
    return r?.n ?? 0;
  }

  async clear(owner: string): Promise<void> {
    await this.#coll().deleteMany({ owner });
  }
}
