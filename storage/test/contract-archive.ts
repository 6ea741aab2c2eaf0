/**
 * The archive part of the storage contract (storage/test/contract.ts): seq
 * assignment, paging queries, owners, retention and account removal.
 */

import assert from 'node:assert/strict';
import type { ArchiveQuery, ArchiveRecord, OwnerQuery, Storage } from '../types.ts';

/** The value type the contract archives. */
export interface Msg {
  body: string;
}

/** Base timestamp of the records the contract appends; record n is n seconds later. */
export const T0 = 1_700_000_000_000;

/** Record n of a 1:1 chat between alice and bob (sent by bob). */
export function chat(conversation: string, n: number, extra: Partial<ArchiveRecord<Msg>> = {}) {
  return {
    conversation,
    timestamp: T0 + n * 1000,
    owners: ['alice', 'bob'],
    with: 'bob',
    id: `m${n}`,
    value: { body: `hello ${n}` },
    ...extra,
  };
}

/** Registers the archive tests; `current` gives the open store of the running test. */
export function archiveContract(
  current: () => Storage,
  reopen?: (ctx: Mocha.Context) => Promise<Storage>,
): void {
  let storage: Storage;
  beforeEach(function () {
    storage = current();
  });

  it('append assigns seq 1, 2, 3… per conversation, independently', async function () {
    const archive = storage.archive<Msg>('mam');
    assert.equal(await archive.lastSeq('alice|bob'), 0);
    const first = await archive.append(chat('alice|bob', 1));
    // pos: the archive position, at least the timestamp in ms × 1000.
    assert.deepEqual(first, { ...chat('alice|bob', 1), seq: 1, pos: (T0 + 1000) * 1000 });
    assert.equal((await archive.append(chat('alice|bob', 2))).seq, 2);
    assert.equal((await archive.append(chat('alice|carol', 1))).seq, 1);
    assert.equal((await archive.append(chat('alice|bob', 3))).seq, 3);
    assert.equal(await archive.lastSeq('alice|bob'), 3);
    assert.equal(await archive.lastSeq('alice|carol'), 1);
    assert.equal((await storage.archive<Msg>('other').append(chat('alice|bob', 1))).seq, 1);
  });

  it('200 concurrent appends get seqs 1..200 without gaps or duplicates', async function () {
    const archive = storage.archive<Msg>('mam');
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => archive.append(chat('room@muc', i))),
    );
    const seqs = results.map((r) => r.seq).sort((a, b) => a - b);
    assert.deepEqual(
      seqs,
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    const page = await archive.query('room@muc', { limit: 1000 });
    assert.deepEqual(
      page.records.map((r) => r.seq),
      seqs,
    );
    // Each stored record is the one its append returned.
    const bySeq = new Map(results.map((r) => [r.seq, r.id]));
    for (const r of page.records) assert.equal(r.id, bySeq.get(r.seq));
    assert.equal(await archive.lastSeq('room@muc'), 200);
  });

  it('appends to a conversation whose last seq is known keep call order, alone or in a burst, around a prune', async function () {
    const archive = storage.archive<Msg>('mam');
    await archive.append(chat('alice|bob', 1));
    // Alone, one after the other (nothing queued: the uncontended path).
    for (let n = 2; n <= 4; n++) assert.equal((await archive.append(chat('alice|bob', n))).seq, n);
    // A burst: seqs in call order, and the appends complete in call order
    // too (the router delivers each message once its append resolves, so a
    // later message must not overtake an earlier one) [RFC6120 10.1].
    const settledOrder: string[] = [];
    const burst = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        archive.append(chat('alice|bob', 5 + i)).then((r) => {
          settledOrder.push(r.id);
          return r;
        }),
      ),
    );
    assert.deepEqual(
      burst.map((r) => [r.seq, r.id]),
      Array.from({ length: 20 }, (_, i) => [5 + i, `m${5 + i}`]),
    );
    assert.deepEqual(
      settledOrder,
      Array.from({ length: 20 }, (_, i) => `m${5 + i}`),
    );
    assert.equal(await archive.lastSeq('alice|bob'), 24);
    // A prune in the middle of appends: seqs never go back, none is handed out twice.
    const around = await Promise.all([
      archive.append(chat('alice|bob', 25)),
      archive.prune(T0 + 10_500),
      archive.append(chat('alice|bob', 26)),
    ]);
    assert.deepEqual(
      [(around[0] as ArchiveRecord<Msg>).seq, around[1], (around[2] as ArchiveRecord<Msg>).seq],
      [25, 10, 26],
    );
    assert.equal((await archive.append(chat('alice|bob', 27))).seq, 27);
    const page = await archive.query('alice|bob', { limit: 100 });
    assert.deepEqual(
      page.records.map((r) => r.seq),
      Array.from({ length: 17 }, (_, i) => 11 + i),
    );
  });

  describe('query', function () {
    const conv = 'alice|bob';
    beforeEach(async function () {
      const archive = storage.archive<Msg>('mam');
      // Neighbouring ids that a careless key layout would mix in.
      await archive.append(chat('alice|bo', 1));
      await archive.append(chat('alice|bob2', 1));
      for (let n = 1; n <= 10; n++) await archive.append(chat(conv, n));
      await archive.append(chat('alice|bob\u0001', 1));
    });

    async function run(query: ArchiveQuery | undefined) {
      const page = await storage.archive<Msg>('mam').query(conv, query);
      for (const r of page.records) assert.equal(r.conversation, conv);
      return { seqs: page.records.map((r) => r.seq), complete: page.complete };
    }

    it('returns the conversation oldest first, complete, and nothing of others', async function () {
      assert.deepEqual(await run(undefined), {
        seqs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        complete: true,
      });
      assert.deepEqual(await storage.archive('mam').query('nobody'), {
        records: [],
        complete: true,
      });
    });

    it('afterSeq and beforeSeq are exclusive bounds', async function () {
      assert.deepEqual(await run({ afterSeq: 7 }), { seqs: [8, 9, 10], complete: true });
      assert.deepEqual(await run({ beforeSeq: 3 }), { seqs: [1, 2], complete: true });
      assert.deepEqual(await run({ afterSeq: 3, beforeSeq: 6 }), {
        seqs: [4, 5],
        complete: true,
      });
      assert.deepEqual(await run({ afterSeq: 5, beforeSeq: 6 }), { seqs: [], complete: true });
      assert.deepEqual(await run({ afterSeq: 10 }), { seqs: [], complete: true });
      assert.deepEqual(await run({ beforeSeq: 1 }), { seqs: [], complete: true });
    });

    it('start and end are inclusive timestamp bounds', async function () {
      assert.deepEqual(await run({ start: T0 + 8000 }), { seqs: [8, 9, 10], complete: true });
      assert.deepEqual(await run({ end: T0 + 2000 }), { seqs: [1, 2], complete: true });
      assert.deepEqual(await run({ start: T0 + 4000, end: T0 + 6000 }), {
        seqs: [4, 5, 6],
        complete: true,
      });
      assert.deepEqual(await run({ start: T0 + 4500, end: T0 + 4600 }), {
        seqs: [],
        complete: true,
      });
    });

    it('limit pages forward with complete=false until the last page', async function () {
      assert.deepEqual(await run({ limit: 4 }), { seqs: [1, 2, 3, 4], complete: false });
      assert.deepEqual(await run({ limit: 4, afterSeq: 4 }), {
        seqs: [5, 6, 7, 8],
        complete: false,
      });
      assert.deepEqual(await run({ limit: 4, afterSeq: 8 }), { seqs: [9, 10], complete: true });
      // A page that ends exactly on the last record is complete.
      assert.deepEqual(await run({ limit: 2, afterSeq: 8 }), { seqs: [9, 10], complete: true });
      assert.deepEqual(await run({ limit: 0 }), { seqs: [], complete: false });
      assert.deepEqual(await run({ limit: 10 }), {
        seqs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        complete: true,
      });
    });

    it('limit counts only records that pass the time filter', async function () {
      assert.deepEqual(await run({ start: T0 + 3000, limit: 3 }), {
        seqs: [3, 4, 5],
        complete: false,
      });
      assert.deepEqual(await run({ end: T0 + 3000, limit: 3 }), {
        seqs: [1, 2, 3],
        complete: true,
      });
    });

    it('reverse gives newest first and limit keeps the newest', async function () {
      assert.deepEqual(await run({ reverse: true, limit: 3 }), {
        seqs: [10, 9, 8],
        complete: false,
      });
      // Paging backwards, as XEP-0059 <before/> does.
      assert.deepEqual(await run({ reverse: true, limit: 3, beforeSeq: 8 }), {
        seqs: [7, 6, 5],
        complete: false,
      });
      assert.deepEqual(await run({ reverse: true, limit: 3, beforeSeq: 3 }), {
        seqs: [2, 1],
        complete: true,
      });
      assert.deepEqual(await run({ reverse: true, afterSeq: 6, end: T0 + 9000 }), {
        seqs: [9, 8, 7],
        complete: true,
      });
    });

    it('limit defaults to 100', async function () {
      const archive = storage.archive<Msg>('mam');
      for (let n = 11; n <= 105; n++) await archive.append(chat(conv, n));
      const page = await run(undefined);
      assert.equal(page.seqs.length, 100);
      assert.equal(page.seqs[99], 100);
      assert.equal(page.complete, false);
    });
  });

  it('conversations lists those an owner takes part in', async function () {
    const archive = storage.archive<Msg>('mam');
    await archive.append(chat('alice|bob', 1));
    await archive.append(chat('alice|bob', 2));
    await archive.append(chat('alice|carol', 1, { owners: ['alice', 'carol'], with: 'carol' }));
    await archive.append(chat('room@muc', 1, { owners: ['room@muc'], with: 'alice' }));
    assert.deepEqual(await archive.conversations('alice'), ['alice|bob', 'alice|carol']);
    assert.deepEqual(await archive.conversations('bob'), ['alice|bob']);
    assert.deepEqual(await archive.conversations('room@muc'), ['room@muc']);
    assert.deepEqual(await archive.conversations('al'), []);
    assert.deepEqual(await storage.archive<Msg>('other').conversations('alice'), []);
  });

  it('prune deletes records older than the timestamp and keeps seqs going', async function () {
    const archive = storage.archive<Msg>('mam');
    // Appended in time order: prune goes by archive time (ids), which is the timestamp then.
    await archive.append(chat('carol|dave', 1, { owners: ['carol', 'dave'], with: 'dave' }));
    for (let n = 1; n <= 5; n++) await archive.append(chat('alice|bob', n));
    await archive.append(chat('erin|frank', 9, { owners: ['erin', 'frank'], with: 'frank' }));
    assert.equal(await archive.prune(T0 + 3000), 3);
    const page = await archive.query('alice|bob');
    assert.deepEqual(
      page.records.map((r) => r.seq),
      [3, 4, 5],
    );
    assert.deepEqual((await archive.query('carol|dave')).records, []);
    assert.deepEqual(await archive.conversations('carol'), []);
    assert.deepEqual(await archive.conversations('erin'), ['erin|frank']);
    assert.equal(await archive.prune(T0), 0);
    // Seqs are never reused, even for a conversation pruned empty.
    assert.equal(await archive.lastSeq('carol|dave'), 1);
    assert.equal((await archive.append(chat('carol|dave', 20))).seq, 2);
    assert.equal((await archive.append(chat('alice|bob', 20))).seq, 6);
  });

  it('removeOwner deletes every record the owner takes part in', async function () {
    const archive = storage.archive<Msg>('mam');
    await archive.append(chat('alice|bob', 1));
    await archive.append(chat('alice|bob', 2));
    await archive.append(chat('bob|carol', 1, { owners: ['bob', 'carol'], with: 'carol' }));
    await archive.append(chat('room@muc', 1, { owners: ['room@muc'], with: 'alice' }));
    await archive.removeOwner('alice');
    assert.deepEqual((await archive.query('alice|bob')).records, []);
    assert.deepEqual(await archive.conversations('alice'), []);
    // bob's other conversation and the room stay; bob no longer has alice|bob.
    assert.deepEqual(await archive.conversations('bob'), ['bob|carol']);
    assert.equal((await archive.query('bob|carol')).records.length, 1);
    assert.equal((await archive.query('room@muc')).records.length, 1);
    assert.equal((await archive.append(chat('alice|bob', 3))).seq, 3);
    await archive.removeOwner('nobody');
  });

  describe('owner archives [XEP-0313 user archive]', function () {
    /** alice's archive: 1..6 with bob, 7..9 with carol, interleaved with bob|carol records alice must never see. */
    beforeEach(async function () {
      const archive = storage.archive<Msg>('mam');
      for (let n = 1; n <= 9; n++) {
        if (n <= 6) await archive.append(chat('alice|bob', n, { with: n % 2 ? 'bob' : 'alice' }));
        else
          await archive.append(
            chat('alice|carol', n, { owners: ['alice', 'carol'], with: 'carol' }),
          );
        await archive.append(
          chat('bob|carol', n, { owners: ['bob', 'carol'], with: 'carol', id: `x${n}` }),
        );
      }
    });

    async function owner(who: string, q: OwnerQuery = {}) {
      const page = await storage.archive<Msg>('mam').queryOwner(who, { count: true, ...q });
      for (const r of page.records) assert.ok(r.owners.includes(who), "only the owner's records");
      return {
        ns: page.records.map((r) => Number(r.id.slice(1))),
        complete: page.complete,
        count: page.count,
        missing: page.missing,
        records: page.records,
      };
    }
    /** alice's archive id of her record n (1..9). */
    async function idOf(n: number): Promise<string> {
      const page = await storage.archive<Msg>('mam').queryOwner('alice', {});
      return page.records[n - 1].archiveId;
    }

    it("lists the owner's records across conversations in archive order, with ids that order them", async function () {
      const a = await owner('alice');
      assert.deepEqual([a.ns, a.complete, a.count], [[1, 2, 3, 4, 5, 6, 7, 8, 9], true, 9]);
      const ids = a.records.map((r) => BigInt(r.archiveId));
      for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], 'ids increase');
      for (const r of a.records) assert.equal(r.archiveId, String(r.pos));
      // The archive time is the id's: never before the record's own timestamp.
      for (const r of a.records)
        assert.ok(
          r.archivedAt >= r.timestamp && r.archivedAt === Math.floor(Number(r.archiveId) / 1000),
        );
      const b = await owner('bob');
      assert.deepEqual([b.ns.length, b.count], [15, 15]);
      assert.deepEqual(await owner('nobody'), {
        ns: [],
        complete: true,
        count: 0,
        missing: undefined,
        records: [],
      });
    });

    it("with filters by the peer in the owner's archive, both directions", async function () {
      assert.deepEqual((await owner('alice', { with: 'bob' })).ns, [1, 2, 3, 4, 5, 6]);
      assert.deepEqual((await owner('alice', { with: 'carol' })).ns, [7, 8, 9]);
      assert.equal((await owner('alice', { with: 'carol' })).count, 3);
      assert.deepEqual((await owner('carol', { with: 'alice' })).ns, [7, 8, 9]);
      assert.deepEqual((await owner('alice', { with: 'dave' })).ns, []);
    });

    it('start and end are inclusive bounds on the archive time', async function () {
      const a = await owner('alice', { start: T0 + 3000, end: T0 + 5000 });
      assert.deepEqual([a.ns, a.count], [[3, 4, 5], 3]);
      assert.deepEqual((await owner('alice', { start: T0 + 8000 })).ns, [8, 9]);
      assert.deepEqual((await owner('alice', { end: T0 + 1999 })).ns, [1]);
    });

    it('afterId/beforeId filter the result set (count follows); after/before only page (count does not)', async function () {
      const [i2, i5, i8] = [await idOf(2), await idOf(5), await idOf(8)];
      assert.deepEqual(
        await owner('alice', { afterId: i2, beforeId: i8 }).then((p) => [p.ns, p.count]),
        [[3, 4, 5, 6, 7], 5],
      );
      assert.deepEqual(
        await owner('alice', { after: i5, limit: 2 }).then((p) => [p.ns, p.count, p.complete]),
        [[6, 7], 9, false],
      );
      assert.deepEqual(
        await owner('alice', { after: i5, limit: 4 }).then((p) => [p.ns, p.complete]),
        [[6, 7, 8, 9], true],
      );
      // Backwards from an id, newest first, as XEP-0059 <before/> pages.
      assert.deepEqual(
        await owner('alice', { before: i5, reverse: true, limit: 3 }).then((p) => [
          p.ns,
          p.count,
          p.complete,
        ]),
        [[4, 3, 2], 9, false],
      );
      assert.deepEqual(
        await owner('alice', { before: i5, reverse: true, limit: 4 }).then((p) => [
          p.ns,
          p.complete,
        ]),
        [[4, 3, 2, 1], true],
      );
      // The last page: reverse without a cursor.
      assert.deepEqual(
        await owner('alice', { reverse: true, limit: 2 }).then((p) => [p.ns, p.complete]),
        [[9, 8], false],
      );
      // Filters and paging together.
      assert.deepEqual(
        await owner('alice', { with: 'bob', after: i2, beforeId: i5 }).then((p) => [p.ns, p.count]),
        [[3, 4], 4],
      );
    });

    it('ids picks records by id', async function () {
      const [i1, i4, i9] = [await idOf(1), await idOf(4), await idOf(9)];
      const a = await owner('alice', { ids: [i9, i1, i4, i1] });
      assert.deepEqual([a.ns, a.count, a.complete], [[1, 4, 9], 3, true]);
      assert.deepEqual(
        (await owner('alice', { ids: [i9, i1, i4], reverse: true, limit: 2 })).ns,
        [9, 4],
      );
      assert.deepEqual((await owner('alice', { ids: [i1, i9], with: 'carol' })).ns, [9]);
    });

    it("names ids that are not in the owner's archive as missing", async function () {
      const bobOnly = (
        await storage.archive<Msg>('mam').queryOwner('bob', { with: 'carol', limit: 1 })
      ).records[0].archiveId;
      assert.deepEqual((await owner('alice', { after: bobOnly })).missing, [bobOnly]);
      assert.deepEqual((await owner('alice', { beforeId: '12345' })).missing, ['12345']);
      assert.deepEqual((await owner('alice', { afterId: 'x' })).missing, ['x']);
      assert.deepEqual((await owner('alice', { ids: [await idOf(1), bobOnly, 'junk'] })).missing, [
        bobOnly,
        'junk',
      ]);
      assert.equal((await owner('alice', { after: await idOf(3) })).missing, undefined);
    });

    it('ownerBounds gives the oldest and newest entry', async function () {
      const archive = storage.archive<Msg>('mam');
      const b = await archive.ownerBounds('alice');
      assert.equal(b.first?.archiveId, await idOf(1));
      assert.equal(b.last?.archiveId, await idOf(9));
      assert.equal(b.first?.archivedAt, T0 + 1000);
      assert.deepEqual(await archive.ownerBounds('nobody'), {});
    });

    it("archivedFor lists a record only in those owners' archives; none: no id", async function () {
      const archive = storage.archive<Msg>('mam');
      const r = await archive.append(chat('alice|bob', 10, { archivedFor: ['bob'] }));
      assert.ok(r.pos !== undefined);
      assert.equal((await owner('alice')).count, 9);
      assert.deepEqual((await owner('bob', { ids: [String(r.pos)] })).ns, [10]);
      const none = await archive.append(chat('alice|bob', 11, { archivedFor: [] }));
      assert.equal(none.pos, undefined);
      assert.equal((await owner('bob')).count, 16);
      assert.equal((await archive.query('alice|bob', { afterSeq: 6 })).records.length, 2);
      await assert.rejects(
        archive.append(chat('alice|bob', 12, { archivedFor: ['mallory'] })),
        TypeError,
      );
    });

    it('trimOwners keeps the newest entries per owner; a record goes once nobody archives it', async function () {
      const archive = storage.archive<Msg>('mam');
      // alice has 9 entries, bob 15 (6 with alice, 9 with carol), carol 12.
      assert.equal(await archive.trimOwners(10), 5 + 2);
      assert.equal((await owner('carol')).count, 10);
      assert.equal((await owner('bob')).count, 10);
      // bob's oldest went from his archive only: alice still has them.
      assert.deepEqual((await owner('alice')).ns, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.equal(await archive.trimOwners(4), 5 + 6 + 6);
      assert.deepEqual((await owner('alice')).ns, [6, 7, 8, 9]);
      assert.deepEqual((await owner('bob')).count, 4);
      // The per-peer counts follow too.
      assert.deepEqual(await owner('alice', { with: 'bob' }).then((p) => [p.ns, p.count]), [
        [6],
        1,
      ]);
      assert.deepEqual(
        await owner('bob', { with: 'carol' }).then((p) => [p.ns.length, p.count]),
        [4, 4],
      );
      // alice|bob 1..5 were only in alice's and bob's archives: gone from the store.
      assert.deepEqual(
        (await archive.query('alice|bob')).records.map((r) => r.seq),
        [6],
      );
      // Counts stay exact for later appends.
      await archive.append(chat('alice|bob', 20));
      assert.equal((await owner('alice')).count, 5);
    });

    it("prune by archive time removes the records from every owner's archive", async function () {
      const archive = storage.archive<Msg>('mam');
      assert.equal(await archive.prune(T0 + 4000), 6); // 1..3 of alice's, and bob|carol 1..3
      const a = await owner('alice');
      assert.deepEqual([a.ns, a.count], [[4, 5, 6, 7, 8, 9], 6]);
      assert.deepEqual(await owner('alice', { with: 'bob' }).then((p) => [p.ns, p.count]), [
        [4, 5, 6],
        3,
      ]);
      assert.equal((await owner('bob')).count, 9);
      assert.equal((await owner('carol')).count, 9);
      assert.equal(await archive.prune(T0 + 4000), 0);
    });

    it("removeOwner empties the owner's archive and takes the shared records out of the others'", async function () {
      const archive = storage.archive<Msg>('mam');
      await archive.removeOwner('alice');
      assert.deepEqual(await owner('alice'), {
        ns: [],
        complete: true,
        count: 0,
        missing: undefined,
        records: [],
      });
      assert.equal((await owner('bob')).count, 9);
      assert.deepEqual(await owner('carol', { with: 'alice' }).then((p) => [p.ns, p.count]), [
        [],
        0,
      ]);
      assert.deepEqual(await owner('alice', { with: 'bob' }).then((p) => [p.ns, p.count]), [[], 0]);
      assert.equal((await owner('carol')).count, 9);
      assert.deepEqual(await archive.ownerBounds('alice'), {});
    });

    it("forgetOwner (account removal) empties only the owner's archive: the others keep the shared records", async function () {
      const archive = storage.archive<Msg>('mam');
      assert.equal(await archive.forgetOwner('alice'), 9);
      assert.deepEqual(await owner('alice'), {
        ns: [],
        complete: true,
        count: 0,
        missing: undefined,
        records: [],
      });
      assert.deepEqual(await owner('alice', { with: 'bob' }).then((p) => [p.ns, p.count]), [[], 0]);
      assert.deepEqual(await archive.ownerBounds('alice'), {});
      // bob and carol keep every record they had with alice
      assert.equal((await owner('bob')).count, 15);
      assert.deepEqual(await owner('carol', { with: 'alice' }).then((p) => [p.ns, p.count]), [
        [7, 8, 9],
        3,
      ]);
      // a new alice starts empty and counts from zero
      await archive.append(chat('alice|bob', 30));
      assert.deepEqual(await owner('alice').then((p) => [p.ns, p.count]), [[30], 1]);
      assert.equal(await archive.forgetOwner('nobody'), 0);
    });

    it("setValue replaces one record's value in place: same seq, id and counts in every archive [XEP-0424 tombstone]", async function () {
      const archive = storage.archive<Msg>('mam');
      const id3 = await idOf(3);
      assert.equal(await archive.setValue('alice|bob', 3, { body: 'retracted' }), true);
      const a = await owner('alice');
      assert.deepEqual([a.ns, a.count], [[1, 2, 3, 4, 5, 6, 7, 8, 9], 9]);
      const three = a.records[2];
      assert.deepEqual([three.archiveId, three.seq, three.value], [id3, 3, { body: 'retracted' }]);
      const b = await owner('bob', { ids: [id3] });
      assert.deepEqual(
        b.records.map((r) => r.value),
        [{ body: 'retracted' }],
      );
      assert.deepEqual(
        (await archive.query('alice|bob', { afterSeq: 2, limit: 1 })).records.map((r) => [
          r.seq,
          r.pos,
          r.value,
        ]),
        [[3, Number(id3), { body: 'retracted' }]],
      );
      // The other conversations are untouched; a seq that was never appended is no record.
      assert.deepEqual(
        (await archive.query('bob|carol', { afterSeq: 2, limit: 1 })).records[0].value,
        { body: 'hello 3' },
      );
      assert.equal(await archive.setValue('alice|bob', 99, { body: 'x' }), false);
      assert.equal(await archive.setValue('nobody|else', 1, { body: 'x' }), false);
      // The next append of the conversation goes on after the rewritten record.
      assert.equal((await archive.append(chat('alice|bob', 10))).seq, 7);
    });

    it("forgetOwner with a time (per-user retention) drops only that owner's older entries; the others keep theirs", async function () {
      const archive = storage.archive<Msg>('mam');
      assert.equal(await archive.forgetOwner('alice', T0 + 4000), 3); // alice's 1..3
      const a = await owner('alice');
      assert.deepEqual([a.ns, a.count], [[4, 5, 6, 7, 8, 9], 6]);
      assert.deepEqual(await owner('alice', { with: 'bob' }).then((p) => [p.ns, p.count]), [
        [4, 5, 6],
        3,
      ]);
      // bob still has the records alice let go
      assert.equal((await owner('bob')).count, 15);
      assert.equal((await owner('carol')).count, 12);
      assert.equal(await archive.forgetOwner('alice', T0 + 4000), 0);
      // the later entries and the counts stay right for later appends
      await archive.append(chat('alice|bob', 30));
      assert.equal((await owner('alice')).count, 7);
    });

    it('ids and counts survive a reopen, and ids never go back', async function () {
      if (!reopen) this.skip();
      const before = await owner('alice');
      const again = await reopen!(this);
      const archive = again.archive<Msg>('mam');
      const after = await archive.queryOwner('alice', { count: true });
      assert.deepEqual(
        after.records.map((r) => r.archiveId),
        before.records.map((r) => r.archiveId),
      );
      assert.equal(after.count, 9);
      // An older timestamp still gets a larger id than any before it.
      const r = await archive.append(chat('alice|bob', 0));
      assert.ok(BigInt(String(r.pos)) > BigInt(before.records[8].archiveId));
      assert.equal((await archive.queryOwner('alice', { count: true })).count, 10);
    });
  });
}
