/**
 * The one contract every storage backend passes (docs/architecture.md "Principles": one contract for every backend). Each
 * backend's test file only says how to make, reopen and clean up a store.
 */

import assert from 'node:assert/strict';
import type { Storage } from '../types.ts';
import { archiveContract, chat, T0 } from './contract-archive.ts';
import type { Msg } from './contract-archive.ts';

/** What a backend's test file hands the contract for each test. */
export interface StorageFixture {
  /** A fresh, empty, not yet opened store. */
  storage: Storage;
  /** A new opened instance on the same data, after `storage` was closed. */
  reopen?: () => Promise<Storage>;
  /** Removes the data (the suite has closed every instance before). */
  cleanup: () => Promise<void>;
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

      it('store objects keep working after close and open of the same instance', async function () {
        const kv = storage.kv<number>('settings');
        const archive = storage.archive<Msg>('mam');
        const queue = storage.queue<number>('offline');
        await kv.put('k', 1);
        await archive.append(chat('alice|bob', 1));
        await queue.push('alice', 1);
        await storage.close();
        await storage.open();
        assert.equal(await kv.get('k'), 1);
        assert.equal((await archive.append(chat('alice|bob', 2))).seq, 2);
        assert.equal((await archive.query('alice|bob')).records.length, 2);
        await queue.push('alice', 2);
        assert.equal(await queue.count('alice'), 2);
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

      it('entries returns keys and values of one prefix in ascending key order', async function () {
        const kv = storage.kv<{ n: number }>('roster');
        for (const [k, n] of [
          ['u1/i/b', 2],
          ['u1/i/a', 1],
          ['u1/v', 0],
          ['u10/i/a', 9],
          ['u1/i/é', 3],
        ] as const)
          await kv.put(k, { n });
        assert.deepEqual(await kv.entries('u1/i/'), [
          ['u1/i/a', { n: 1 }],
          ['u1/i/b', { n: 2 }],
          ['u1/i/é', { n: 3 }],
        ]);
        assert.deepEqual(await kv.entries('u2/'), []);
        // Keys that are Object.prototype names are ordinary keys.
        await kv.put('__proto__', { n: 5 });
        await kv.put('constructor', { n: 6 });
        assert.deepEqual(await kv.get('__proto__'), { n: 5 });
        assert.deepEqual(await kv.entries('c'), [['constructor', { n: 6 }]]);
      });

      it('batch applies puts and deletes together, and reads see them at once', async function () {
        const kv = storage.kv<number>('roster');
        await kv.put('gone', 1);
        await kv.batch([
          { type: 'put', key: 'a', value: 1 },
          { type: 'put', key: 'b', value: 2 },
          { type: 'del', key: 'gone' },
          { type: 'put', key: 'a', value: 3 },
        ]);
        assert.equal(await kv.get('a'), 3);
        assert.equal(await kv.get('b'), 2);
        assert.equal(await kv.get('gone'), undefined);
        assert.deepEqual(await kv.keys(), ['a', 'b']);
        await kv.batch([]);
        await assert.rejects(
          kv.batch([{ type: 'put', key: 'c', value: undefined as unknown as number }]),
        );
        assert.equal(await kv.get('c'), undefined);
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
      archiveContract(
        () => storage,
        (ctx) => reopen(ctx),
      );
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
        assert.deepEqual(await queue.list('alice', 0), []);
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

      it('bytes sums the JSON size of what is queued, through push, remove and clear', async function () {
        const queue = storage.queue<{ body: string }>('offline');
        assert.equal(await queue.bytes('alice'), 0);
        const a = await queue.push('alice', { body: 'x'.repeat(100) });
        await queue.push('alice', { body: 'y'.repeat(50) });
        const size = (n: number) => JSON.stringify({ body: 'x'.repeat(n) }).length;
        assert.equal(await queue.bytes('alice'), size(100) + size(50));
        await queue.remove('alice', [a, a, 'no-such-id']);
        assert.equal(await queue.bytes('alice'), size(50));
        assert.equal(await queue.bytes('bob'), 0);
        await queue.clear('alice');
        assert.equal(await queue.bytes('alice'), 0);
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

      it('archive seqs survive a restart after prune and removeOwner, and the owner index is rebuilt', async function () {
        const archive = storage.archive<Msg>('mam');
        // In time order: prune goes by archive time.
        for (let n = 1; n <= 3; n++) {
          await archive.append(chat('alice|bob', n));
          if (n < 3)
            await archive.append(
              chat('carol|dave', n, { owners: ['carol', 'dave'], with: 'dave' }),
            );
        }
        // carol|dave pruned empty, alice|bob keeps 3.
        assert.equal(await archive.prune(T0 + 2500), 4);
        // An owner removed and then talking again must be indexed again.
        await archive.removeOwner('dave');
        await archive.append(chat('carol|dave', 3, { owners: ['carol', 'dave'], with: 'dave' }));
        assert.deepEqual(await archive.conversations('dave'), ['carol|dave']);

        const again = await reopen(this);
        const archive2 = again.archive<Msg>('mam');
        assert.equal(await archive2.lastSeq('alice|bob'), 3);
        assert.equal(await archive2.lastSeq('carol|dave'), 3);
        assert.equal((await archive2.append(chat('alice|bob', 4))).seq, 4);
        assert.equal(
          (
            await archive2.append(
              chat('carol|dave', 4, { owners: ['carol', 'dave'], with: 'dave' }),
            )
          ).seq,
          4,
        );
        assert.equal(await archive2.prune(T0 + 10_000), 4);
        const again2 = await reopen(this);
        const archive3 = again2.archive<Msg>('mam');
        assert.equal(await archive3.lastSeq('carol|dave'), 4);
        assert.equal(
          (
            await archive3.append(
              chat('carol|dave', 20, { owners: ['carol', 'dave'], with: 'dave' }),
            )
          ).seq,
          5,
        );
        assert.deepEqual(await archive3.conversations('carol'), ['carol|dave']);
      });
    });
  });
}
