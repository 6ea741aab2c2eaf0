/**
 * The archive part of the storage contract (storage/test/contract.ts): seq
 * assignment, paging queries, owners, retention and account removal.
 */

import assert from 'node:assert/strict';
import type { ArchiveQuery, ArchiveRecord, Storage } from '../types.ts';

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
export function archiveContract(current: () => Storage): void {
  let storage: Storage;
  beforeEach(function () {
    storage = current();
  });

  it('append assigns seq 1, 2, 3… per conversation, independently', async function () {
    const archive = storage.archive<Msg>('mam');
    assert.equal(await archive.lastSeq('alice|bob'), 0);
    const first = await archive.append(chat('alice|bob', 1));
    assert.deepEqual(first, { ...chat('alice|bob', 1), seq: 1 });
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
    assert.deepEqual(settledOrder, Array.from({ length: 20 }, (_, i) => `m${5 + i}`));
    assert.equal(await archive.lastSeq('alice|bob'), 24);
    // A prune in the middle of appends: seqs never go back, none is handed out twice.
    const around = await Promise.all([
      archive.append(chat('alice|bob', 25)),
      archive.prune(T0 + 10_500),
      archive.append(chat('alice|bob', 26)),
    ]);
    assert.deepEqual([(around[0] as ArchiveRecord<Msg>).seq, around[1], (around[2] as ArchiveRecord<Msg>).seq], [25, 10, 26]);
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
    for (let n = 1; n <= 5; n++) await archive.append(chat('alice|bob', n));
    await archive.append(chat('carol|dave', 1, { owners: ['carol', 'dave'], with: 'dave' }));
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
}
