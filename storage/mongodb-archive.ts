/**
 * Archives in MongoDB (storage/mongodb-schema.ts has the collections and
 * indexes): one document per record, carrying its owner-index entries
 * (`ix`) so that a record and its entries are written, and deleted, as one
 * document. Every query here is listed in QUERIES of mongodb-schema.ts with
 * the index that answers it.
 */

import type { Collection, Document } from 'mongodb';
import type {
  ArchivePage,
  ArchiveQuery,
  ArchiveRecord,
  ArchiveStore,
  OwnerBounds,
  OwnerPage,
  OwnerQuery,
} from './types.ts';
import {
  archivers,
  checkId,
  compareKeys,
  filterBounds,
  jsonClone,
  namedIds,
  ownerRecord,
  pageBounds,
  pageLimit,
  parseArchiveId,
  peerOf,
  posTime,
  seqRange,
} from './util.ts';
import { INDEXES, TTL_INDEX } from './mongodb-schema.ts';
import { collectionName, nextPos, nextSeq, once, type Counter, type Open } from './mongodb.ts';

/** Fields of an archive document that are not the record's. */
const INTERNAL = { _id: 0, ix: 0, at: 0 } as const;

/** The archive time of a record as a Date (for the TTL index): pos / 1000, the timestamp without pos. */
function archiveTime(record: { pos?: number; timestamp: number }): Date {
  return new Date(record.pos !== undefined ? posTime(record.pos) : record.timestamp);
}

export class MongoArchive<T> implements ArchiveStore<T> {
  readonly #indexes: () => Promise<void>;

  constructor(
    private readonly open: Open,
    private readonly name: string,
    /** delete records this many days after their archive time (a TTL index); 0: keep */
    ttlDays = 0,
  ) {
    this.#indexes = once(async () => {
      const coll = this.#coll();
      await coll.createIndexes(INDEXES.archive.map((i) => ({ ...i })));
      await this.#ttl(coll as unknown as Collection<Document>, ttlDays);
    });
  }

  /** The TTL index as configured: created, changed (collMod) or dropped. */
  async #ttl(coll: Collection<Document>, days: number): Promise<void> {
    const seconds = Math.floor(days * 86400);
    const existing = (await coll.listIndexes().toArray()).find((i) => i.name === TTL_INDEX);
    if (seconds <= 0) {
      if (existing) await coll.dropIndex(TTL_INDEX);
      return;
    }
    if (!existing)
      await coll.createIndex({ at: 1 }, { name: TTL_INDEX, expireAfterSeconds: seconds });
    else if (existing.expireAfterSeconds !== seconds)
      await coll.db.command({
        collMod: coll.collectionName,
        index: { name: TTL_INDEX, expireAfterSeconds: seconds },
      });
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
      record.pos = await nextPos(
        counters,
        `archive-pos:${encodeURIComponent(this.name)}`,
        body.timestamp,
      );
      doc.pos = record.pos;
      doc.ix = indexed.map((o) => ({ o, w: peerOf(body, o) }));
    }
    doc.at = archiveTime(record);
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
      if (
        pos === undefined ||
        (await coll.findOne({ 'ix.o': owner, pos }, { projection: { _id: 1 } })) === null
      )
        missing.push(id);
    }
    if (missing.length > 0) return { records: [], complete: true, missing };
    const filter = filterBounds(q);
    const page = pageBounds(q);
    const limit = pageLimit(q);
    const base: Document =
      q.with === undefined ? { 'ix.o': owner } : { ix: { $elemMatch: { o: owner, w: q.with } } };
    const ids = q.ids?.map(parseArchiveId).filter((p): p is number => p !== undefined);
    const posFilter = (lo: number, hi: number): Document =>
      ids === undefined ? { $gte: lo, $lte: hi } : { $gte: lo, $lte: hi, $in: ids };
    const docs =
      page.lo > page.hi || limit === 0
        ? []
        : await coll
            .find({ ...base, pos: posFilter(page.lo, page.hi) }, { projection: INTERNAL })
            .sort({ pos: q.reverse ? -1 : 1 })
            .limit(limit + 1)
            .toArray();
    const out: OwnerPage<T> = {
      records: docs.slice(0, limit).map((d) => ownerRecord(d as unknown as ArchiveRecord<T>)),
      complete:
        docs.length <= limit &&
        !(
          limit === 0 &&
          (await coll.countDocuments({ ...base, pos: posFilter(page.lo, page.hi) }, { limit: 1 })) >
            0
        ),
    };
    // Counted on the (ix.o[, ix.w], pos) index: the cost follows the size of the result set.
    if (q.count)
      out.count =
        filter.lo > filter.hi
          ? 0
          : await coll.countDocuments({ ...base, pos: posFilter(filter.lo, filter.hi) });
    return out;
  }

  async ownerBounds(owner: string): Promise<OwnerBounds> {
    await this.#indexes();
    const coll = this.#coll() as unknown as Collection<Document>;
    const at = (d: Document | null) =>
      d === null ? undefined : { archiveId: String(d.pos), archivedAt: posTime(d.pos as number) };
    const first = at(
      await coll.findOne({ 'ix.o': owner }, { sort: { pos: 1 }, projection: { pos: 1 } }),
    );
    const last = at(
      await coll.findOne({ 'ix.o': owner }, { sort: { pos: -1 }, projection: { pos: 1 } }),
    );
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
      .find(filter, { projection: INTERNAL })
      .sort({ seq: q.reverse ? -1 : 1 })
      // One record past the page tells whether the page is complete.
      .limit(limit + 1)
      .toArray()) as ArchiveRecord<T>[];
    return { records: records.slice(0, limit), complete: records.length <= limit };
  }

  /** Overwrites the value of one record in place (XEP-0424 tombstones); false when there is no such record. */
  async setValue(conversation: string, seq: number, value: T): Promise<boolean> {
    checkId('conversation', conversation);
    await this.#indexes();
    // One document on the (conversation, seq) unique index; pos and ix stay.
    const res = await (this.#coll() as unknown as Collection<Document>).updateOne(
      { conversation, seq },
      { $set: { value: jsonClone(value) } },
    );
    return res.matchedCount > 0;
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
    return (await this.#coll().deleteMany({ pos: { $lt: Math.floor(olderThan) * 1000 } }))
      .deletedCount;
  }

  async trimOwners(max: number): Promise<number> {
    await this.#indexes();
    const keep = Math.max(0, Math.floor(max));
    const coll = this.#coll() as unknown as Collection<Document>;
    let removed = 0;
    // Owners from the (ix.o, pos) index (a distinct scan), each counted on it; run by the retention timer, not per message.
    for (const owner of (await coll.distinct('ix.o')) as string[]) {
      const n = await coll.countDocuments({ 'ix.o': owner });
      if (n <= keep) continue;
      const oldest = await coll
        .find({ 'ix.o': owner }, { projection: { pos: 1 } })
        .sort({ pos: 1 })
        .limit(n - keep)
        .toArray();
      removed += await this.#dropEntries(
        coll,
        owner,
        oldest.map((d) => d.pos as number),
      );
    }
    return removed;
  }

  /** Takes records out of one owner's archive (by position); a record no owner archives any more leaves the store. */
  async #dropEntries(
    coll: Collection<Document>,
    owner: string,
    positions: number[],
  ): Promise<number> {
    if (positions.length === 0) return 0;
    const r = await coll.updateMany({ pos: { $in: positions } }, {
      $pull: { ix: { o: owner } },
    } as Document);
    // archivedFor follows ix; records no owner archives any more leave the store.
    await coll.updateMany({ pos: { $in: positions } }, [
      { $set: { archivedFor: { $map: { input: '$ix', as: 'e', in: '$$e.o' } } } },
    ]);
    await coll.deleteMany({ pos: { $in: positions }, ix: { $size: 0 } });
    return r.modifiedCount;
  }

  async forgetOwner(owner: string, before?: number): Promise<number> {
    await this.#indexes();
    const coll = this.#coll() as unknown as Collection<Document>;
    let removed = 0;
    // With `before` (ms): only the entries archived before it (positions are ms × 1000), per-user retention.
    const when = before === undefined ? {} : { pos: { $lt: Math.floor(before) * 1000 } };
    // In batches of positions from the (ix.o, pos) index; the updates go by the pos index.
    for (;;) {
      const batch = await coll
        .find({ 'ix.o': owner, ...when }, { projection: { pos: 1 } })
        .sort({ pos: 1 })
        .limit(1000)
        .toArray();
      if (batch.length === 0) break;
      const n = await this.#dropEntries(
        coll,
        owner,
        batch.map((d) => d.pos as number),
      );
      removed += n;
      if (n === 0) break;
    }
    return removed;
  }

  async removeOwner(owner: string): Promise<void> {
    await this.#indexes();
    await this.#coll().deleteMany({ owners: owner });
  }
}
