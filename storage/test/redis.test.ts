import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { freePort, redisKeys, startRedis, type TestRedis } from '../../conformance/redis-server.ts';
import { RedisStorage } from '../redis/index.ts';
import { storageContract } from './contract.ts';
import { chat, type Msg } from './contract-archive.ts';

describe('storage contract: redis (a real redis-server on a free loopback port)', function () {
  let server: TestRedis;
  let n = 0;

  before(async function () {
    this.timeout(30_000);
    server = await startRedis();
  });

  after(async function () {
    await server?.dispose();
  });

  storageContract('redis', async () => {
    // A key prefix per test, its keys deleted afterwards.
    const prefix = `t${process.pid}-${++n}:`;
    return {
      storage: new RedisStorage({ url: server.url, prefix }),
      reopen: async () => {
        const storage = new RedisStorage({ url: server.url, prefix });
        await storage.open();
        return storage;
      },
      cleanup: async () => {
        const keys = await redisKeys(server.url, `${prefix}*`);
        if (keys.length === 0) return;
        const client = new Redis(server.url);
        await client.del(...keys);
        await client.quit();
      },
    };
  });
});

describe('storage: redis shared by two nodes, and kill -9 of the server', function () {
  let server: TestRedis;
  const opened: RedisStorage[] = [];
  const prefix = `shared${process.pid}:`;

  before(async function () {
    this.timeout(30_000);
    // AOF with everysec, the default: Redis writes the AOF before it replies and
    // fsyncs once a second, so a crash of the process loses nothing (a crash of
    // the machine up to a second): docs/operations.md, "Storage backends".
    server = await startRedis({ appendfsync: 'everysec' });
  });

  afterEach(async function () {
    for (const s of opened.splice(0)) await s.close();
  });

  after(async function () {
    await server?.dispose();
  });

  async function node(): Promise<RedisStorage> {
    const s = new RedisStorage({ url: server.url, prefix });
    await s.open();
    opened.push(s);
    return s;
  }

  it('open says which server and why when it cannot connect (and not the password)', async function () {
    const port = await freePort();
    const s = new RedisStorage({ url: `redis://:secret-pw@127.0.0.1:${port}` });
    await assert.rejects(s.open(), (err: Error) => {
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`));
      assert.doesNotMatch(err.message, /secret-pw/);
      return true;
    });
    assert.equal(await s.ping(), false);
  });

  it('two nodes appending to one conversation at once get distinct seqs and archive ids, with no gap', async function () {
    const [a, b] = [await node(), await node()];
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        (i % 2 ? a : b)
          .archive<Msg>('mam')
          .append(chat('room@muc', i, { owners: ['room@muc'], with: `u${i}` })),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.seq).sort((x, y) => x - y),
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    assert.equal(new Set(results.map((r) => r.pos)).size, 100);
    const page = await a.archive<Msg>('mam').queryOwner('room@muc', { count: true, limit: 1 });
    assert.equal(page.count, 100);
    // Queue ids from both nodes never collide either.
    const ids = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        (i % 2 ? a : b).queue<number>('offline').push('alice', i),
      ),
    );
    assert.equal(new Set(ids).size, 50);
    assert.equal(await b.queue('offline').count('alice'), 50);
    // A write of one node is read by the other at once.
    await a.kv<{ n: number }>('accounts').put('alice', { n: 1 });
    assert.deepEqual(await b.kv('accounts').get('alice'), { n: 1 });
  });

  it('every acknowledged write survives kill -9 of redis-server (AOF, appendfsync everysec)', async function () {
    this.timeout(30_000);
    const s = await node();
    const kv = s.kv<number>('accounts');
    const queue = s.queue<number>('offline');
    const archive = s.archive<Msg>('mam');
    await Promise.all(Array.from({ length: 200 }, (_, i) => kv.put(`k${i}`, i)));
    const pushed = await Promise.all(Array.from({ length: 200 }, (_, i) => queue.push('bob', i)));
    const appended = await Promise.all(
      Array.from({ length: 200 }, (_, i) => archive.append(chat('alice|bob', i))),
    );
    await server.kill9();
    assert.equal(await s.ping(), false);
    await server.restart();
    // The same instance reconnects by itself (ioredis retries with backoff).
    const again = await node();
    assert.equal((await again.kv('accounts').keys('k')).length, 200);
    assert.deepEqual(
      (await again.queue<number>('offline').list('bob')).map((i) => i.id),
      pushed,
    );
    assert.equal(await again.archive('mam').lastSeq('alice|bob'), 200);
    const last = Math.max(...appended.map((r) => r.pos!));
    const next = await again.archive<Msg>('mam').append(chat('alice|bob', 0));
    assert.equal(next.seq, 201);
    assert.ok(next.pos! > last, 'archive ids never go back after a server restart');
    await waitFor(() => s.ping());
    assert.equal(await s.kv('accounts').get('k7'), 7);
  });

  // Last: turning AOF off and on starts a rewrite, which a kill -9 must not meet.
  it('serverWarnings names AOF off and an eviction policy, and nothing on a safe server', async function () {
    const s = await node();
    assert.deepEqual(await s.serverWarnings(), []);
    const admin = new Redis(server.url);
    try {
      await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
      await admin.config('SET', 'appendonly', 'no');
      const warnings = await s.serverWarnings();
      assert.equal(warnings.length, 2, warnings.join('\n'));
      assert.match(warnings[0], /appendonly is off/);
      assert.match(warnings[1], /maxmemory-policy is allkeys-lru/);
    } finally {
      // appendonly stays off: turning it on again starts a rewrite; the server is disposed next.
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      await admin.quit();
    }
  });
});

async function waitFor(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
