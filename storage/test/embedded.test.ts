import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { DEFAULT_WRITE_BUFFER, EmbeddedStorage } from '../embedded.ts';
import { BACKGROUND_NICE } from '../embedded/background.ts';
import { storageContract } from './contract.ts';

const run = promisify(execFile);

storageContract('embedded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-embedded-'));
  return {
    storage: new EmbeddedStorage({ dir }),
    reopen: async () => {
      const storage = new EmbeddedStorage({ dir });
      await storage.open();
      return storage;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('embedded storage: write buffer', () => {
  // What the option changes on disk: LevelDB writes a sorted table file
  // (*.ldb) only once its in-memory buffer is full.
  const tables = async (dir: string) =>
    (await readdir(dir)).filter((f) => f.endsWith('.ldb')).length;

  async function fill(writeBufferSize: number | undefined): Promise<number> {
    const dir = await mkdtemp(join(tmpdir(), 'parley-wbuf-'));
    const storage = new EmbeddedStorage({ dir, writeBufferSize });
    try {
      await storage.open();
      const archive = storage.archive<{ text: string }>('chat');
      const text = 'x'.repeat(1000);
      // ~8 MB of records, more than LevelDB's own 4 MiB buffer.
      for (let i = 0; i < 8000; i += 200) {
        await Promise.all(
          Array.from({ length: 200 }, (_, k) =>
            archive.append({
              conversation: `c${k % 10}`,
              timestamp: i + k,
              owners: ['a'],
              with: 'a',
              id: `${i + k}`,
              value: { text },
            }),
          ),
        );
      }
      // LevelDB writes the full buffer out in the background.
      for (let t = 0; t < 50 && (await tables(dir)) === 0; t++)
        await new Promise((r) => setTimeout(r, 20));
      return await tables(dir);
    } finally {
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('keeps 8 MB of appends in memory with the default 32 MiB buffer', async () => {
    assert.equal(DEFAULT_WRITE_BUFFER, 32 * 1024 * 1024);
    assert.equal(await fill(undefined), 0);
  });

  it('writes sorted files once a smaller configured buffer is full', async () => {
    assert.ok((await fill(1024 * 1024)) > 0);
  });
});

describe('embedded storage: LevelDB compaction thread', () => {
  it('runs at nice 19 on Linux, does the flushing, and every other thread keeps its priority', async function () {
    if (process.platform !== 'linux') this.skip();
    const dir = await mkdtemp(join(tmpdir(), 'parley-threads-'));
    try {
      const child = fileURLToPath(new URL('./fixtures/threads-child.ts', import.meta.url));
      const { stdout } = await run(process.execPath, ['--import', 'tsx', child, dir], {
        timeout: 60_000,
      });
      const { pid, nice, cpu } = JSON.parse(stdout) as {
        pid: number;
        nice: Record<string, number>;
        cpu: Record<string, number>;
      };
      const lowered = Object.keys(nice).filter((tid) => nice[tid] === BACKGROUND_NICE);
      assert.equal(lowered.length, 1, JSON.stringify(nice));
      // the lowered thread is the one that worked while 16 MB went through a 1 MiB write buffer
      assert.ok(cpu[lowered[0]] > 0, JSON.stringify(cpu));
      const others = Object.keys(cpu).filter((tid) => tid !== lowered[0] && Number(tid) !== pid);
      assert.ok(
        others.every((tid) => cpu[tid] <= cpu[lowered[0]]),
        `not the busiest helper thread: ${JSON.stringify(cpu)}`,
      );
      assert.notEqual(Number(lowered[0]), pid);
      assert.equal(nice[String(pid)], 0);
      assert.ok(Object.keys(nice).length > 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('embedded storage: archive seq cache', () => {
  it('hands out the right next seq after more conversations than the cache holds (10,000), busy or not', async function () {
    this.timeout(60_000);
    const dir = await mkdtemp(join(tmpdir(), 'parley-seqcache-'));
    const storage = new EmbeddedStorage({ dir });
    try {
      await storage.open();
      const archive = storage.archive<{ n: number }>('chat');
      const add = (conversation: string, n: number) =>
        archive.append({
          conversation,
          timestamp: n,
          owners: ['a'],
          with: 'a',
          id: `${n}`,
          value: { n },
        });
      // Two conversations with history, one kept busy while 10,050 others push the cache past its size.
      for (let n = 1; n <= 3; n++) await Promise.all([add('quiet', n), add('busy', n)]);
      for (let i = 0; i < 10_050; i += 1_000) {
        await Promise.all([
          add('busy', 100 + i),
          ...Array.from({ length: Math.min(1_000, 10_050 - i) }, (_, k) => add(`c${i + k}`, i + k)),
        ]);
      }
      // Whether each one was evicted or kept, the next seq follows the last one on disk.
      assert.equal((await add('quiet', 4)).seq, 4);
      assert.equal((await add('busy', 5)).seq, 15);
      assert.equal((await add('c0', 0)).seq, 2);
      assert.equal((await add('c10049', 0)).seq, 2);
      assert.deepEqual(
        (await archive.query('busy')).records.map((r) => r.seq),
        Array.from({ length: 15 }, (_, k) => k + 1),
      );
    } finally {
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('embedded storage: key-value read cache', () => {
  type Rec = { n: number; items?: string[] };
  let dir: string;
  let storage: EmbeddedStorage | undefined;
  /** LevelDB lookups made (the real classic-level, counted). */
  let lookups = 0;
  const proto = ClassicLevel.prototype as unknown as {
    _get: (...a: unknown[]) => unknown;
    _iterator: (...a: unknown[]) => unknown;
  };
  const realGet = proto._get;
  const realIterator = proto._iterator;
  /** LevelDB iterators opened. */
  let iterators = 0;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parley-kvcache-'));
    lookups = 0;
    iterators = 0;
    proto._get = function (this: unknown, ...a: unknown[]) {
      lookups++;
      return realGet.apply(this, a);
    };
    proto._iterator = function (this: unknown, ...a: unknown[]) {
      iterators++;
      return realIterator.apply(this, a);
    };
  });
  afterEach(async () => {
    proto._get = realGet;
    proto._iterator = realIterator;
    await storage?.close();
    storage = undefined;
    await rm(dir, { recursive: true, force: true });
  });
  const open = async (readCacheEntries?: number) => {
    storage = new EmbeddedStorage({ dir, readCacheEntries });
    await storage.open();
    return storage.kv<Rec>('t');
  };

  it('serves a record read or written before from memory, and what was read or written last', async () => {
    const kv = await open();
    assert.equal(await kv.get('a'), undefined);
    assert.equal(await kv.get('a'), undefined);
    assert.equal(lookups, 1, 'a missing key is looked up once');
    await kv.put('a', { n: 1 });
    assert.deepEqual(await kv.get('a'), { n: 1 });
    await kv.put('a', { n: 2 });
    assert.deepEqual(await kv.get('a'), { n: 2 });
    await kv.delete('a');
    assert.equal(await kv.get('a'), undefined);
    assert.equal(lookups, 1, 'written records are served from memory');
  });

  it('hands every caller its own copy', async () => {
    const kv = await open();
    await kv.put('a', { n: 1, items: ['x'] });
    const got = (await kv.get('a'))!;
    got.items!.push('changed by the caller');
    got.n = 99;
    assert.deepEqual(await kv.get('a'), { n: 1, items: ['x'] });
  });

  it('keeps at most readCacheEntries records, and none with 0', async () => {
    let kv = await open(2);
    for (const k of ['a', 'b', 'c']) await kv.put(k, { n: 1 });
    lookups = 0;
    await kv.get('c');
    await kv.get('b');
    assert.equal(lookups, 0);
    await kv.get('a'); // the oldest, dropped when c came
    assert.equal(lookups, 1);
    await storage!.close();
    kv = await open(0);
    lookups = 0;
    await kv.get('a');
    await kv.get('a');
    assert.equal(lookups, 2);
  });

  it('reads overlapping writes never leave an old value behind', async () => {
    const kv = await open();
    await kv.put('k', { n: 0 });
    let final = 0;
    // Reads and writes of one key, started together in many orders: after each
    // round, a read gives the last write, as on disk.
    for (let round = 1; round <= 200; round++) {
      const ops: Promise<unknown>[] = [];
      const order = [...Array(6).keys()].sort(() => Math.random() - 0.5);
      let last = -1;
      for (const i of order) {
        if (i % 2 === 0) ops.push(kv.get('k'));
        else {
          last = round * 10 + i;
          ops.push(kv.put('k', { n: last }));
        }
        if (Math.random() < 0.3) await new Promise((r) => setImmediate(r));
      }
      await Promise.all(ops);
      assert.deepEqual(await kv.get('k'), { n: last }, `round ${round}`);
      final = last;
    }
    await storage!.close();
    const again = await open();
    assert.deepEqual(await again.get('k'), { n: final }, 'on disk as in memory');
  });

  it('forgets what it kept when the database is closed and opened again', async () => {
    const kv = await open();
    await kv.put('a', { n: 1 });
    await storage!.close();
    await storage!.open();
    lookups = 0;
    assert.deepEqual(await kv.get('a'), { n: 1 });
    assert.equal(lookups, 1);
  });

  it('a queue with nothing in it is listed from memory, with no LevelDB lookup or iterator', async () => {
    await open();
    const q = storage!.queue<string>('offline');
    assert.deepEqual(await q.list('alice'), []);
    lookups = 0;
    iterators = 0;
    assert.deepEqual(await q.list('alice'), []);
    assert.equal(await q.count('alice'), 0);
    assert.deepEqual([lookups, iterators], [0, 0]);
    const id = await q.push('alice', 'hello');
    assert.deepEqual(await q.list('alice'), [{ id, value: 'hello' }]);
    await q.remove('alice', [id]);
    iterators = 0;
    assert.deepEqual(await q.list('alice'), []);
    assert.equal(iterators, 0);
  });

  it('a queue listed while items are pushed and removed never hides what is on disk', async () => {
    await open();
    const q = storage!.queue<number>('offline');
    for (let round = 0; round < 100; round++) {
      const ops: Promise<unknown>[] = [];
      for (let i = 0; i < 4; i++) {
        ops.push(i % 2 === 0 ? q.push('bob', round * 10 + i) : q.list('bob'));
        if (Math.random() < 0.5) await new Promise((r) => setImmediate(r));
      }
      await Promise.all(ops);
      const items = await q.list('bob');
      assert.deepEqual(
        items.map((x) => x.value),
        [round * 10, round * 10 + 2],
        `round ${round}`,
      );
      assert.equal(await q.count('bob'), 2);
      const removing = q.remove(
        'bob',
        items.map((x) => x.id),
      );
      const during = q.list('bob');
      await removing;
      assert.ok((await during).length === 0 || (await during).length === 2);
      assert.deepEqual(await q.list('bob'), [], `round ${round}, after remove`);
    }
  });
});
