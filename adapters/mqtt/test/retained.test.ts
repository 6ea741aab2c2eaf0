import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { Level } from 'level';
import { levelRetainedStore, levelSessionEraser } from '../../../bin/mqtt-persistence.ts';
import { MemoryRetainedStore, RetainedIndex } from '../retained.ts';

const silent = {
  info() {},
  debug() {},
  warn() {},
  error() {},
  child() {
    return silent;
  },
} as never;
const limits = { retainedMaxPerUser: 1000, retainedMaxTotal: 1000, retainedMaxPayload: 1000 };
const put = (idx: RetainedIndex, topic: string, owner = 'u', payload = 'x') =>
  idx.storeRetained({ topic, payload: Buffer.from(payload), qos: 0, clientId: `${owner}/c` });

describe('mqtt: retained index', () => {
  it('matches filters as [MQTT-4.7] does: # with its parent level, + for one level, no wildcard start on $ topics', async () => {
    const idx = new RetainedIndex(new MemoryRetainedStore(), limits, silent);
    for (const t of [
      'sport',
      'sport/tennis',
      'sport/tennis/player1',
      'sport/golf',
      'a//b',
      '$SYS/x',
      '/lead',
    ])
      await put(idx, t);
    assert.deepEqual(idx.match(['sport/#']), [
      'sport',
      'sport/golf',
      'sport/tennis',
      'sport/tennis/player1',
    ]); // [MQTT-4.7.1-2]
    assert.deepEqual(idx.match(['sport/+']), ['sport/golf', 'sport/tennis']); // [MQTT-4.7.1-3]
    assert.deepEqual(idx.match(['+']), ['sport']);
    assert.deepEqual(idx.match(['a/+/b']), ['a//b']);
    assert.deepEqual(idx.match(['+/lead']), ['/lead']);
    assert.deepEqual(idx.match(['#']).includes('$SYS/x'), false); // [MQTT-4.7.2-1]
    assert.deepEqual(idx.match(['+/x']), []); // [MQTT-4.7.2-1]
    assert.deepEqual(idx.match(['$SYS/#']), ['$SYS/x']);
    assert.deepEqual(idx.match(['sport/tennis', 'sport/+']), ['sport/tennis', 'sport/golf']); // each once
    await idx.storeRetained({ topic: 'sport/tennis', payload: Buffer.alloc(0), qos: 0 }); // [MQTT-3.3.1-10] empty payload removes
    assert.deepEqual(idx.match(['sport/#']), ['sport', 'sport/golf', 'sport/tennis/player1']);
    assert.equal(await idx.removeOwner('u'), 7 - 1);
    assert.equal(idx.size, 0);
    assert.deepEqual(idx.match(['#', '$SYS/#']), []);
  });

  describe('LevelDB store', () => {
    let dir: string;
    beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'parley-ret-'))));
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('moves messages aedes-persistence-level stored under its own keys, then serves them by topic', async () => {
      const db = new Level<string, Buffer>(dir, { valueEncoding: 'buffer' });
      await db.open();
      const p = aedesPersistenceLevel(db) as unknown as { storeRetained(p: object): Promise<void> };
      await p.storeRetained({
        cmd: 'publish',
        topic: 'old/one',
        payload: Buffer.from('1'),
        qos: 1,
        retain: true,
        clientId: 'kim/dev',
      });
      await p.storeRetained({
        cmd: 'publish',
        topic: '$SYS/old',
        payload: Buffer.from('2'),
        qos: 0,
        retain: true,
      });
      const store = await levelRetainedStore(p, db, silent);
      const idx = new RetainedIndex(store, limits, silent);
      await idx.load();
      assert.deepEqual(idx.match(['#', '$SYS/#']), ['old/one', '$SYS/old']);
      assert.deepEqual(await store.get('old/one'), {
        topic: 'old/one',
        payload: Buffer.from('1'),
        qos: 1,
        owner: 'kim',
      });
      let oldKeys = 0;
      for await (const _k of db.keys({ gte: 'retained:', lt: 'retained;' })) oldKeys++;
      assert.equal(oldKeys, 0);
      await db.close();
    });

    it('erases every persistent session of one account and nothing of another', async () => {
      const db = new Level<string, Buffer>(dir, { valueEncoding: 'buffer' });
      await db.open();
      const p = aedesPersistenceLevel(db) as unknown as {
        setup(b: unknown): Promise<void>;
        addSubscriptions(c: { id: string }, s: object[]): Promise<void>;
        subscriptionsByClient(c: { id: string }): Promise<object[]>;
        putWill(c: { id: string }, w: object): Promise<void>;
      };
      await p.setup({ id: 'b' });
      const eraser = levelSessionEraser(p, db);
      await p.addSubscriptions({ id: 'kim/a' }, [{ topic: 'x', qos: 1 }]);
      await p.addSubscriptions({ id: 'kim/b:c' }, [{ topic: 'y', qos: 1 }]);
      await p.putWill(
        { id: 'kim/a' },
        { topic: 'w', payload: Buffer.from('x'), qos: 0, retain: false },
      );
      await p.addSubscriptions({ id: 'kimberly/a' }, [{ topic: 'z', qos: 1 }]);
      assert.deepEqual((await eraser.users()).sort(), ['kim', 'kimberly']);
      assert.deepEqual((await eraser.erase('kim')).sort(), ['kim/a', 'kim/b:c']);
      assert.deepEqual(await p.subscriptionsByClient({ id: 'kim/a' }), []);
      assert.equal((await p.subscriptionsByClient({ id: 'kimberly/a' })).length, 1);
      assert.deepEqual(await eraser.users(), ['kimberly']);
      await db.close();
    });
  });
});
