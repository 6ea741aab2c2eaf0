/**
 * The MongoDB backend, for clusters: every node shares one database, so the
 * archive's seq and the queue ids come from atomic counters in MongoDB
 * (`findOneAndUpdate` + `$inc`), never from a node's memory.
 *
 * Collections (store names are percent-encoded):
 *
 *   kv.<name>       { _id: key, value }
 *   archive.<name>  { conversation, seq, timestamp, owners, with, id, value, pos?, archivedFor?, ix? }
 *                   ix: [{ o: owner, w: peer }] per owner whose archive lists the record
 *                   indexes: (conversation, seq) unique, (owners, conversation), (timestamp),
 *                   (ix.o, pos), (ix.o, ix.w, pos), (pos)
 *   counters        { _id: 'archive-pos:<name>', seq }: the archive position, one per store
 *   queue.<name>    { owner, id, value }, index (owner, id) unique
 *   counters        { _id: 'archive:<name>:<conversation>' | 'queue:<name>:<owner>', seq }
 *
 * A failure between taking a seq and inserting the record leaves a gap in
 * that conversation's seqs: they stay strictly increasing, which is the
 * promise, and a gap is what a client resuming by seq handles anyway.
 */

import { MongoClient } from 'mongodb';
import type { Collection, Db, Document } from 'mongodb';
import { GridFsBlobStore } from './blobs-gridfs.ts';
import type {
  ArchivePage,
  ArchiveQuery,
  ArchiveRecord,
  ArchiveStore,
  KeyValueOp,
  KeyValueStore,
  OwnerBounds,
  OwnerPage,
  OwnerQuery,
  QueueItem,
  QueueStore,
  Storage,
} from './types.ts';
import { archivers, checkId, compareKeys, filterBounds, jsonClone, namedIds, ownerRecord, pad, pageBounds, pageLimit, parseArchiveId, peerOf, posTime, seqRange } from './util.ts';

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

/** The next archive position of a store: max(last + 1, timestamp × 1000), atomic across nodes (storage/util.ts nextPos). */
async function nextPos(counters: Collection<Counter>, id: string, timestamp: number): Promise<number> {
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

  /** Uploaded files in GridFS, bucket `name` (storage/blobs-gridfs.ts); usable once open. */
  blobs(name = 'upload'): GridFsBlobStore {
    return this.#store(`blobs:${name}`, () => new GridFsBlobStore(() => {
      if (this.#db === undefined) throw new Error('MongoStorage is not open');
      return this.#db;
    }, name));
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
        // [docs/architecture.md "User archives"] queries by conversation + seq never scan other conversations.
        { key: { conversation: 1, seq: 1 }, unique: true },
        { key: { owners: 1, conversation: 1 } },
        { key: { timestamp: 1 } },
        // [XEP-0313] an owner's archive is read from its own index entries only.
        { key: { 'ix.o': 1, pos: 1 } },
        { key: { 'ix.o': 1, 'ix.w': 1, pos: 1 } },
        { key: { pos: 1 } },
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
    const indexed = archivers(input);
    const body = jsonClone(input);
    await this.#indexes();
    const counters = this.open('counters') as unknown as Collection<Counter>;
    const record: ArchiveRecord<T> = {
      ...body,
      seq: await nextSeq(counters, this.#counterId(body.conversation)),
    };
    const doc: Document = { ...record };
    if (indexed.length > 0) {
      // The position: one more than the last, at least timestamp × 1000, atomic across nodes.
      record.pos = await nextPos(counters, `archive-pos:${encodeURIComponent(this.name)}`, body.timestamp);
      doc.pos = record.pos;
      doc.ix = indexed.map((o) => ({ o, w: peerOf(body, o) }));
    }
    // insertOne adds _id to the object it is given: give it a copy.
    await this.#coll().insertOne(doc as ArchiveRecord<T>);
    return record;
  }

  async queryOwner(owner: string, q: OwnerQuery = {}): Promise<OwnerPage<T>> {
    checkId('owner', owner);
    await this.#indexes();
    const coll = this.#coll() as unknown as Collection<Document>;
    const missing: string[] = [];
    for (const id of namedIds(q)) {
      const pos = parseArchiveId(id);
      if (pos === undefined || (await coll.findOne({ 'ix.o': owner, pos }, { projection: { _id: 1 } })) === null) missing.push(id);
    }
    if (missing.length > 0) return { records: [], complete: true, missing };
    const filter = filterBounds(q);
    const page = pageBounds(q);
    const limit = pageLimit(q);
    const base: Document = q.with === undefined ? { 'ix.o': owner } : { ix: { $elemMatch: { o: owner, w: q.with } } };
    const ids = q.ids?.map(parseArchiveId).filter((p): p is number => p !== undefined);
    const posFilter = (lo: number, hi: number): Document => (ids === undefined ? { $gte: lo, $lte: hi } : { $gte: lo, $lte: hi, $in: ids });
    const docs =
      page.lo > page.hi || limit === 0
        ? []
        : await coll
            .find({ ...base, pos: posFilter(page.lo, page.hi) }, { projection: { _id: 0, ix: 0 } })
            .sort({ pos: q.reverse ? -1 : 1 })
            .limit(limit + 1)
            .toArray();
    const out: OwnerPage<T> = {
      records: docs.slice(0, limit).map((d) => ownerRecord(d as unknown as ArchiveRecord<T>)),
      complete: docs.length <= limit && !(limit === 0 && (await coll.countDocuments({ ...base, pos: posFilter(page.lo, page.hi) }, { limit: 1 })) > 0),
    };
    // Counted on the (ix.o[, ix.w], pos) index: the cost follows the size of the result set.
    if (q.count) out.count = filter.lo > filter.hi ? 0 : await coll.countDocuments({ ...base, pos: posFilter(filter.lo, filter.hi) });
    return out;
  }

  async ownerBounds(owner: string): Promise<OwnerBounds> {
    await this.#indexes();
    const coll = this.#coll() as unknown as Collection<Document>;
    const at = (d: Document | null) => (d === null ? undefined : { archiveId: String(d.pos), archivedAt: posTime(d.pos as number) });
    const first = at(await coll.findOne({ 'ix.o': owner }, { sort: { pos: 1 }, projection: { pos: 1 } }));
    const last = at(await coll.findOne({ 'ix.o': owner }, { sort: { pos: -1 }, projection: { pos: 1 } }));
    const out: OwnerBounds = {};
    if (first) out.first = first;
    if (last) out.last = last;
    return out;
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
    // By archive time (pos / 1000), on the pos index.
    return (await this.#coll().deleteMany({ pos: { $lt: Math.floor(olderThan) * 1000 } })).deletedCount;
  }

  async trimOwners(max: number): Promise<number> {
    await this.#indexes();
    const keep = Math.max(0, Math.floor(max));
    const coll = this.#coll() as unknown as Collection<Document>;
    // Owners over the limit: one aggregation over the (ix.o, pos) index, run by the retention timer, not per message.
    const over = await coll
      .aggregate<{ _id: string; n: number }>([{ $unwind: '$ix' }, { $group: { _id: '$ix.o', n: { $sum: 1 } } }, { $match: { n: { $gt: keep } } }])
      .toArray();
    let removed = 0;
    for (const { _id: owner, n } of over) {
      const oldest = await coll.find({ 'ix.o': owner }, { projection: { pos: 1 } }).sort({ pos: 1 }).limit(n - keep).toArray();
      const positions = oldest.map((d) => d.pos as number);
      if (positions.length === 0) continue;
      const r = await coll.updateMany({ pos: { $in: positions } }, { $pull: { ix: { o: owner } } } as Document);
      // archivedFor follows ix; records no owner archives any more leave the store.
      await coll.updateMany({ pos: { $in: positions } }, [{ $set: { archivedFor: { $map: { input: '$ix', as: 'e', in: '$$e.o' } } } }]);
      await coll.deleteMany({ pos: { $in: positions }, ix: { $size: 0 } });
      removed += r.modifiedCount;
    }
    return removed;
  }

  async forgetOwner(owner: string): Promise<number> {
    await this.#indexes();
    const coll = this.#coll() as unknown as Collection<Document>;
    const r = await coll.updateMany({ 'ix.o': owner }, { $pull: { ix: { o: owner } } } as Document);
    // archivedFor follows ix; records no owner archives any more leave the store.
    await coll.updateMany({ archivedFor: owner }, [{ $set: { archivedFor: { $map: { input: '$ix', as: 'e', in: '$$e.o' } } } }]);
    await coll.deleteMany({ owners: owner, ix: { $size: 0 } });
    return r.modifiedCount;
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
