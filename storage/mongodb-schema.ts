/**
 * The MongoDB backend's schema: the indexes of each kind of collection, the
 * queries the backend runs (each answered from one of those indexes: checked
 * statically by storage/test/mongodb-schema.test.ts, and against a server
 * with explain() when MONGODB_URL is set), and the schema version with its
 * migrations, run in order at open.
 *
 * Collections (store names percent-encoded):
 *
 *   kv.<name>       { _id: key, value }
 *   archive.<name>  { conversation, seq, timestamp, owners, with, id, value, pos?, archivedFor?, ix?, at }
 *                   ix: [{ o: owner, w: peer }] per owner whose archive lists the record
 *                   at: the archive time as a Date (pos / 1000; the timestamp without pos), for the TTL index
 *   queue.<name>    { owner, id, value, size }
 *   counters        { _id: 'archive:<name>:<conversation>' | 'archive-pos:<name>' | 'queue:<name>:<owner>', seq }
 *   meta            { _id: 'schema', version }
 */

import type { Db, Document } from 'mongodb';

/** The collection kinds. */
export type Kind = 'kv' | 'archive' | 'queue' | 'counters' | 'meta';

export interface IndexSpec {
  key: Record<string, 1 | -1>;
  unique?: boolean;
  name?: string;
}

/** Every secondary index, per kind of collection (`_id` is always indexed). */
export const INDEXES: Record<Kind, IndexSpec[]> = {
  kv: [],
  archive: [
    // [docs/architecture.md "User archives"] queries by conversation + seq never scan other conversations.
    { key: { conversation: 1, seq: 1 }, unique: true },
    { key: { owners: 1, conversation: 1 } },
    // [XEP-0313] an owner's archive is read from its own index entries only.
    { key: { 'ix.o': 1, pos: 1 } },
    { key: { 'ix.o': 1, 'ix.w': 1, pos: 1 } },
    { key: { pos: 1 } },
  ],
  queue: [{ key: { owner: 1, id: 1 }, unique: true }],
  counters: [],
  meta: [],
};

/** The TTL index of archive records (storage option archiveMaxAgeDays). */
export const TTL_INDEX = 'at_ttl';

/**
 * A query the backend runs: the fields its filter names (equalities and
 * ranges), then the fields it sorts on. `where` names the method.
 */
export interface QuerySpec {
  where: string;
  kind: Kind;
  filter: string[];
  sort?: string[];
}

/** Every query of storage/mongodb.ts and storage/mongodb-archive.ts. */
export const QUERIES: QuerySpec[] = [
  { where: 'kv.get/put/delete/batch', kind: 'kv', filter: ['_id'] },
  { where: 'kv.keys/entries (anchored prefix regex)', kind: 'kv', filter: ['_id'], sort: ['_id'] },
  {
    where: 'archive.query, setValue',
    kind: 'archive',
    filter: ['conversation', 'seq'],
    sort: ['seq'],
  },
  {
    where: 'archive.queryOwner (ids named, page, count)',
    kind: 'archive',
    filter: ['ix.o', 'pos'],
    sort: ['pos'],
  },
  {
    where: 'archive.queryOwner with',
    kind: 'archive',
    filter: ['ix.o', 'ix.w', 'pos'],
    sort: ['pos'],
  },
  {
    where: 'archive.ownerBounds, forgetOwner, trimOwners (the oldest)',
    kind: 'archive',
    filter: ['ix.o'],
    sort: ['pos'],
  },
  { where: 'archive.trimOwners (owners: distinct ix.o)', kind: 'archive', filter: ['ix.o'] },
  {
    where: 'archive.conversations (distinct conversation), removeOwner, forgetOwner (records left)',
    kind: 'archive',
    filter: ['owners'],
  },
  {
    where: 'archive.prune, trimOwners and forgetOwner updates (by positions)',
    kind: 'archive',
    filter: ['pos'],
  },
  { where: 'archive.lastSeq, append (counters)', kind: 'counters', filter: ['_id'] },
  { where: 'queue.list/count/bytes/clear', kind: 'queue', filter: ['owner'], sort: ['id'] },
  { where: 'queue.remove', kind: 'queue', filter: ['owner', 'id'] },
  { where: 'schema version', kind: 'meta', filter: ['_id'] },
];

/**
 * True when the index answers the query: its first keys are the filter's
 * fields (in any order: equalities and one range), followed by the sort
 * fields that are not in the filter, in order.
 */
export function indexServes(index: IndexSpec, q: QuerySpec): boolean {
  const keys = Object.keys(index.key);
  const filter = new Set(q.filter);
  const head = keys.slice(0, filter.size);
  if (head.length !== filter.size || !head.every((k) => filter.has(k))) return false;
  const rest = (q.sort ?? []).filter((s) => !filter.has(s));
  return rest.every((s, i) => keys[filter.size + i] === s);
}

/** The index that answers a query (`_id` for a query on `_id` alone), or undefined. */
export function indexFor(q: QuerySpec): IndexSpec | undefined {
  const candidates = [{ key: { _id: 1 } } as IndexSpec, ...INDEXES[q.kind]];
  return candidates.find((ix) => indexServes(ix, q));
}

/** The schema this code writes. */
export const SCHEMA_VERSION = 3;

export interface Migration {
  version: number;
  what: string;
  /** idempotent: two nodes starting at once may both run it */
  up(db: Db): Promise<void>;
}

/** Collections of one kind in the database. */
async function collectionsOf(db: Db, kind: Kind): Promise<string[]> {
  const all = await db.listCollections({}, { nameOnly: true }).toArray();
  return all.map((c) => c.name).filter((n) => n.startsWith(`${kind}.`));
}

/** The JSON length of a value (what QueueStore.bytes sums). */
function jsonLength(value: unknown): number {
  return JSON.stringify(value ?? null).length;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    what: 'the indexes of every archive and queue collection',
    async up(db) {
      for (const kind of ['archive', 'queue'] as const) {
        for (const name of await collectionsOf(db, kind))
          await db.collection(name).createIndexes(INDEXES[kind].map((i) => ({ ...i })));
      }
    },
  },
  {
    version: 2,
    what: 'queue items from before sizes were kept get their size; the unused archive index on timestamp goes',
    async up(db) {
      for (const name of await collectionsOf(db, 'queue')) {
        const coll = db.collection(name);
        for (;;) {
          const docs = await coll
            .find({ size: { $exists: false } }, { projection: { _id: 1, value: 1 } })
            .limit(1000)
            .toArray();
          if (docs.length === 0) break;
          await coll.bulkWrite(
            docs.map((d) => ({
              updateOne: {
                filter: { _id: d._id },
                update: { $set: { size: jsonLength(d.value) } },
              },
            })),
          );
        }
      }
      for (const name of await collectionsOf(db, 'archive')) {
        await db
          .collection(name)
          .dropIndex('timestamp_1')
          .catch((err: { codeName?: string }) => {
            if (err?.codeName !== 'IndexNotFound') throw err;
          });
      }
    },
  },
  {
    version: 3,
    what: 'archive records get `at`, their archive time as a Date, for the TTL index',
    async up(db) {
      for (const name of await collectionsOf(db, 'archive')) {
        const at: Document = {
          $toDate: { $ifNull: [{ $floor: { $divide: ['$pos', 1000] } }, '$timestamp'] },
        };
        await db.collection(name).updateMany({ at: { $exists: false } }, [{ $set: { at } }]);
      }
    },
  },
];

/**
 * Brings the database to SCHEMA_VERSION: runs the migrations it has not
 * had, in order, recording each. Refuses a database written by a newer
 * Parley (its schema is not known here).
 */
export async function migrate(db: Db): Promise<{ from: number; to: number }> {
  const meta = db.collection<{ _id: string; version: number }>('meta');
  const from = (await meta.findOne({ _id: 'schema' }))?.version ?? 0;
  if (from > SCHEMA_VERSION)
    throw new Error(
      `the MongoDB database has schema version ${from}, newer than this Parley's ${SCHEMA_VERSION}: run the newer Parley`,
    );
  for (const m of MIGRATIONS) {
    if (m.version <= from) continue;
    await m.up(db);
    await meta.updateOne({ _id: 'schema' }, { $max: { version: m.version } }, { upsert: true });
  }
  return { from, to: SCHEMA_VERSION };
}
