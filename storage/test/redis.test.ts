import { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../../conformance/redis-server.ts';
import { RedisStorage } from '../redis/index.ts';
import { storageContract } from './contract.ts';

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
        const client = new Redis(server.url);
        let cursor = '0';
        do {
          const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
          cursor = next;
          if (keys.length > 0) await client.del(...keys);
        } while (cursor !== '0');
        await client.quit();
      },
    };
  });
});
