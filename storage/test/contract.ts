/**
 * The one contract every storage backend passes (STYLE.md "Backends"). Each
 * backend's test file only says how to make, reopen and clean up a store.
 */

import assert from 'node:assert/strict';
import type { ArchiveQuery, ArchiveRecord, Storage } from '../types.ts';

/** What a backend's test file hands the contract for each test. */
export interface StorageFixture {
  /** A fresh, empty, not yet opened store. */
  storage: Storage;
  /** A new opened instance on the same data, after `storage` was closed. */
  reopen?: () => Promise<Storage>;
  /** Removes the data (the suite has closed every instance before). */
  cleanup: () => Promise<void>;
}

interface Msg {
  body: string;
}

const T0 = 1_700_000_000_000;

/** A record of a 1:1 chat between `a` and `b` (sent by b). */
function chat(conversation: string, n: number, extra: Partial<ArchiveRecord<Msg>> = {}) {
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

/** Registers the storage contract suite for one backend. */
export function storageContract(name: string, make: () => Promise<StorageFixture>): void {
  describe(`storage contract: ${name}`, function () {
    let fixture: StorageFixture;
    let storage: Storage;
    const opened: Storage[] = [];

    beforeEach(async function () {
      fixture = await make();
      storage = fixture.storage;
      await storage.open();
      opened.push(storage);
    });

    afterEach(async function () {
      for (const s of opened.splice(0)) await s.close();
      await fixture.cleanup();
    });

    /** Closes the store and returns a new instance on its data (skips if the backend cannot). */
    async function reopen(ctx: Mocha.Context): Promise<Storage> {
      if (fixture.reopen === undefined) ctx.skip();
      await storage.close();
      storage = await fixture.reopen!();
      opened.push(storage);
      return storage;
    }

    describe('lifecycle', function () {
      it('ping is true when open and false once closed', async function () {
        assert.equal(await storage.ping(), true);
        await storage.close();
        assert.equal(await storage.ping(), false);
      });

      it('close twice is harmless', async function () {
        await storage.close();
        await storage.close();
      });
    });

    describe('kv', function () {
      it('get of a missing key is undefined', async function () {
        assert.equal(await storage.kv('accounts').get('nobody'), undefined);
      });

      it('put then get round-trips JSON values, null included', async function () {
        const kv = storage.kv<unknown>('accounts');
        const value = {
          name: 'alice',
          n: 3,
          big: 2 ** 40,
          list: [1, 'two', null],
          nested: { ok: true },
        };
        await kv.put('alice', value);
        await kv.put('nil', null);
        await kv.put('text', 'plain');
        assert.deepEqual(await kv.get('alice'), value);
        assert.equal(await kv.get('nil'), null);
        assert.equal(await kv.get('text'), 'plain');
      });

      it('a stored value is a copy, not the caller object', async function () {
        const kv = storage.kv<{ n: number }>('accounts');
        const value = { n: 1 };
        await kv.put('a', value);
        value.n = 2;
        assert.deepEqual(await kv.get('a'), { n: 1 });
      });

      it('put overwrites and delete removes (deleting a missing key is fine)', async function () {
        const kv = storage.kv<number>('settings');
        await kv.put('x', 1);
        await kv.put('x', 2);
        assert.equal(await kv.get('x'), 2);
        await kv.delete('x');
        await kv.delete('never-there');
        assert.equal(await kv.get('x'), undefined);
        assert.deepEqual(await kv.keys(), []);
      });

      it('keys come in ascending order, filtered by prefix', async function () {
        const kv = storage.kv<number>('roster');
        for (const key of ['b', 'ab', 'a', 'abc', 'a/x', 'ac', 'é', 'Z', 'b/1'])
          await kv.put(key, 1);
        assert.deepEqual(await kv.keys(), ['Z', 'a', 'a/x', 'ab', 'abc', 'ac', 'b', 'b/1', 'é']);
        assert.deepEqual(await kv.keys('a'), ['a', 'a/x', 'ab', 'abc', 'ac']);
        assert.deepEqual(await kv.keys('ab'), ['ab', 'abc']);
        assert.deepEqual(await kv.keys('b/'), ['b/1']);
        assert.deepEqual(await kv.keys('c'), []);
      });

      it('stores of different names and kinds are separate', async function () {
        await storage.kv<number>('one').put('k', 1);
        await storage.kv<number>('two').put('k', 2);
        await storage.kv<number>('with space/and!bang').put('k', 3);
        await storage.queue<number>('one').push('k', 4);
        assert.equal(await storage.kv<number>('one').get('k'), 1);
        assert.equal(await storage.kv<number>('two').get('k'), 2);
        assert.equal(await storage.kv<number>('with space/and!bang').get('k'), 3);
        assert.deepEqual(await storage.kv('one').keys(), ['k']);
        assert.deepEqual(await storage.kv('three').keys(), []);
      });
    });

    describe('archive', function () {
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
    });

    describe('queue', function () {
      it('push returns increasing ids and list is oldest first', async function () {
        const queue = storage.queue<Msg>('offline');
        const ids: string[] = [];
        for (let n = 1; n <= 12; n++) ids.push(await queue.push('alice', { body: `m${n}` }));
        assert.deepEqual([...ids].sort(), ids, 'ids sort as strings in push order');
        assert.equal(new Set(ids).size, 12);
        const items = await queue.list('alice');
        assert.deepEqual(
          items.map((i) => i.id),
          ids,
        );
        assert.deepEqual(items[0], { id: ids[0], value: { body: 'm1' } });
        assert.deepEqual(
          (await queue.list('alice', 3)).map((i) => i.value.body),
          ['m1', 'm2', 'm3'],
        );
        assert.deepEqual(await queue.list('bob'), []);
        assert.equal(await queue.count('alice'), 12);
        assert.equal(await queue.count('bob'), 0);
      });

      it('owners and queue names are independent', async function () {
        const offline = storage.queue<number>('offline');
        await offline.push('alice', 1);
        await offline.push('alic', 2);
        await offline.push('alice2', 3);
        await storage.queue<number>('subscriptions').push('alice', 4);
        assert.deepEqual(
          (await offline.list('alice')).map((i) => i.value),
          [1],
        );
        assert.equal(await offline.count('alice'), 1);
        assert.equal(await storage.queue('subscriptions').count('alice'), 1);
      });

      it('remove deletes the given ids and ignores unknown ones', async function () {
        const queue = storage.queue<number>('offline');
        const ids = [];
        for (let n = 1; n <= 5; n++) ids.push(await queue.push('alice', n));
        await queue.remove('alice', [ids[0], ids[2], ids[2], 'no-such-id']);
        assert.deepEqual(
          (await queue.list('alice')).map((i) => i.value),
          [2, 4, 5],
        );
        assert.equal(await queue.count('alice'), 3);
        await queue.remove('alice', [ids[0]]);
        await queue.remove('bob', [ids[1]]);
        await queue.remove('alice', []);
        assert.equal(await queue.count('alice'), 3);
      });

      it('clear empties one owner and ids keep increasing afterwards', async function () {
        const queue = storage.queue<number>('offline');
        const before = [await queue.push('alice', 1), await queue.push('alice', 2)];
        await queue.push('bob', 3);
        await queue.clear('alice');
        assert.deepEqual(await queue.list('alice'), []);
        assert.equal(await queue.count('alice'), 0);
        assert.equal(await queue.count('bob'), 1);
        const after = await queue.push('alice', 4);
        assert.ok(after > before[1], `${after} > ${before[1]}`);
        assert.equal(await queue.count('alice'), 1);
        await queue.clear('nobody');
      });

      it('100 concurrent pushes keep every item with distinct ids', async function () {
        const queue = storage.queue<number>('offline');
        const ids = await Promise.all(
          Array.from({ length: 100 }, (_, n) => queue.push('alice', n)),
        );
        assert.equal(new Set(ids).size, 100);
        assert.equal(await queue.count('alice'), 100);
        const items = await queue.list('alice');
        assert.deepEqual(
          items.map((i) => i.id),
          [...ids].sort(),
        );
        assert.deepEqual(
          items.map((i) => i.value).sort((a, b) => a - b),
          Array.from({ length: 100 }, (_, n) => n),
        );
      });
    });

    describe('persistence', function () {
      it('keeps kv, archive and queues across close and reopen', async function () {
        const kv = storage.kv<{ n: number }>('accounts');
        await kv.put('alice', { n: 1 });
        await kv.put('bob', { n: 2 });
        await kv.delete('bob');
        const archive = storage.archive<Msg>('mam');
        for (let n = 1; n <= 3; n++) await archive.append(chat('alice|bob', n));
        const queue = storage.queue<number>('offline');
        const ids = [await queue.push('alice', 1), await queue.push('alice', 2)];
        await queue.remove('alice', [ids[0]]);

        const again = await reopen(this);
        assert.equal(await again.ping(), true);
        assert.deepEqual(await again.kv('accounts').get('alice'), { n: 1 });
        assert.deepEqual(await again.kv('accounts').keys(), ['alice']);
        const archive2 = again.archive<Msg>('mam');
        assert.equal(await archive2.lastSeq('alice|bob'), 3);
        assert.deepEqual(
          (await archive2.query('alice|bob')).records.map((r) => r.value.body),
          ['hello 1', 'hello 2', 'hello 3'],
        );
        assert.deepEqual(await archive2.conversations('bob'), ['alice|bob']);
        assert.equal((await archive2.append(chat('alice|bob', 4))).seq, 4);
        const queue2 = again.queue<number>('offline');
        assert.equal(await queue2.count('alice'), 1);
        assert.deepEqual(await queue2.list('alice'), [{ id: ids[1], value: 2 }]);
        assert.ok((await queue2.push('alice', 3)) > ids[1]);
      });
    });
  });
}
