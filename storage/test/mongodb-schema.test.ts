// The MongoDB backend's schema (storage/mongodb-schema.ts): every query it
// runs has an index, checked statically here on the list of queries and, with
// MONGODB_URL, by the server's own query planner (no COLLSCAN); the
// migrations and the write concern.
import assert from 'node:assert/strict';
import { MongoClient, type Document } from 'mongodb';
import { MongoStorage, writeConcernOf } from '../mongodb.ts';
import {
  INDEXES,
  MIGRATIONS,
  QUERIES,
  SCHEMA_VERSION,
  TTL_INDEX,
  indexFor,
  indexServes,
  type QuerySpec,
} from '../mongodb-schema.ts';
import { chat } from './contract-archive.ts';

describe('storage: mongodb schema (static)', function () {
  it('every query the backend runs is answered by an index', function () {
    for (const q of QUERIES)
      assert.ok(
        indexFor(q),
        `no index serves ${q.where} (${q.kind}: ${q.filter.join(', ')} sort ${q.sort?.join(', ') ?? '-'})`,
      );
  });

  it("the check refuses an index that does not lead with the query's fields or sorts in another order", function () {
    const byPos: QuerySpec = { where: 'test', kind: 'archive', filter: ['pos'] };
    assert.equal(indexServes({ key: { 'ix.o': 1, pos: 1 } }, byPos), false);
    assert.equal(indexServes({ key: { pos: 1 } }, byPos), true);
    const sorted: QuerySpec = { where: 'test', kind: 'queue', filter: ['owner'], sort: ['id'] };
    assert.equal(indexServes({ key: { owner: 1, size: 1, id: 1 } }, sorted), false);
    assert.equal(indexServes({ key: { owner: 1, id: 1 } }, sorted), true);
    assert.equal(indexFor({ where: 'test', kind: 'archive', filter: ['timestamp'] }), undefined);
  });

  it('migrations are numbered 1..SCHEMA_VERSION in order', function () {
    assert.deepEqual(
      MIGRATIONS.map((m) => m.version),
      Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1),
    );
  });

  it('writes are acknowledged by a majority unless the connection string names a write concern', function () {
    assert.deepEqual(writeConcernOf('mongodb://db1,db2,db3/parley?replicaSet=rs0'), {
      writeConcern: { w: 'majority', journal: true },
    });
    assert.deepEqual(writeConcernOf('mongodb://db1/parley?replicaSet=rs0&w=1'), {});
  });
});

const url = process.env.MONGODB_URL;

if (url) {
  describe('storage: mongodb schema (against MONGODB_URL)', function () {
    this.timeout(30_000);
    const dbName = `parley_test_${process.pid}_schema`;
    let client: MongoClient;
    let storage: MongoStorage;

    before(async function () {
      client = await MongoClient.connect(url);
      storage = new MongoStorage({ url, dbName, archiveMaxAgeDays: 30 });
      await storage.open();
      // Each kind of collection exists with its indexes.
      await storage.kv('accounts').put('alice', 1);
      await storage.archive('mam').append(chat('alice|bob', 1));
      await storage.queue('offline').push('alice', 1);
    });

    after(async function () {
      await storage?.close();
      await client?.db(dbName).dropDatabase();
      await client?.close();
    });

    /** A filter naming the query's fields with sample values (ranges on the numeric ones). */
    function sample(q: QuerySpec): Document {
      const f: Document = {};
      for (const field of q.filter) {
        if (field === 'pos' || field === 'seq') f[field] = { $gte: 0 };
        else if (field === '_id' && q.kind === 'kv') f._id = { $regex: '^al' };
        else if (field === 'id') f.id = { $in: ['0000000000000001'] };
        else f[field] = 'alice';
      }
      return f;
    }

    const collection: Record<string, string> = {
      kv: 'kv.accounts',
      archive: 'archive.mam',
      queue: 'queue.offline',
      counters: 'counters',
      meta: 'meta',
    };

    it('the query planner answers every listed query from an index (no COLLSCAN)', async function () {
      const db = client.db(dbName);
      for (const q of QUERIES) {
        let cursor = db.collection(collection[q.kind]).find(sample(q));
        if (q.sort) cursor = cursor.sort(Object.fromEntries(q.sort.map((s) => [s, 1])));
        const plan = JSON.stringify(
          (await cursor.explain('queryPlanner')).queryPlanner?.winningPlan,
        );
        assert.ok(!plan.includes('COLLSCAN'), `${q.where}: ${plan}`);
      }
    });

    it('indexes and the TTL index are in place, and the schema version is recorded', async function () {
      const db = client.db(dbName);
      const names = (await db.collection('archive.mam').listIndexes().toArray()).map((i) =>
        JSON.stringify(i.key),
      );
      for (const ix of INDEXES.archive)
        assert.ok(names.includes(JSON.stringify(ix.key)), `index ${JSON.stringify(ix.key)}`);
      const ttl = (await db.collection('archive.mam').listIndexes().toArray()).find(
        (i) => i.name === TTL_INDEX,
      );
      assert.equal(ttl?.expireAfterSeconds, 30 * 86400);
      assert.equal(
        (await db.collection<{ _id: string; version: number }>('meta').findOne({ _id: 'schema' }))
          ?.version,
        SCHEMA_VERSION,
      );
    });

    it('refuses a database of a newer schema', async function () {
      const other = `${dbName}_newer`;
      await client
        .db(other)
        .collection<{ _id: string; version: number }>('meta')
        .insertOne({ _id: 'schema', version: SCHEMA_VERSION + 1 });
      try {
        await assert.rejects(
          new MongoStorage({ url, dbName: other }).open(),
          /newer than this Parley/,
        );
      } finally {
        await client.db(other).dropDatabase();
      }
    });
  });
} else {
  describe('storage: mongodb schema (against MONGODB_URL)', function () {
    it('SKIPPED: set MONGODB_URL to check the query plans, indexes and migrations on a server', function () {
      this.skip();
    });
  });
}
