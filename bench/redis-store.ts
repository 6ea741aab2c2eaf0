// The Redis store (storage/redis/) on its own, no node: archive appends of
// chat messages as the router makes them (ArchiveService.appendChat), then
// an offline queue cycle (push, list, remove), against a redis-server on
// loopback with AOF and the chosen appendfsync. Reports ops/s at a given
// concurrency, the latency of one append alone, Redis commands per append
// (INFO commandstats) and Redis memory per archived message (INFO memory).
//
//   node --import tsx bench/redis-store.ts [--messages 20000] [--concurrency 64] [--fsync everysec|always]
import { Redis } from 'ioredis';
import { Address } from '../broker/address.ts';
import { ArchiveService } from '../broker/archive.ts';
import type { Envelope, EnvelopeRecord } from '../broker/envelope.ts';
import { startRedis } from '../conformance/redis-server.ts';
import { RedisStorage } from '../storage/redis/index.ts';
import { now, num, parseFlags, percentiles, pool, run, str } from './lib/common.ts';

const DOMAIN = 'localhost';

async function commandCalls(admin: Redis): Promise<number> {
  const text = await admin.info('commandstats');
  let calls = 0;
  for (const m of text.matchAll(/calls=(\d+)/g)) calls += Number(m[1]);
  return calls;
}

async function usedMemory(admin: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1] ?? 0);
}

run(async () => {
  const flags = parseFlags();
  const messages = num(flags, 'messages', 20_000);
  const concurrency = num(flags, 'concurrency', 64);
  const fsync = str(flags, 'fsync', 'everysec') as 'everysec' | 'always';
  const server = await startRedis({ appendfsync: fsync });
  const admin = new Redis(server.url);
  try {
    const storage = new RedisStorage({ url: server.url });
    await storage.open();
    const archive = new ArchiveService(storage.archive<EnvelopeRecord>('chat'));
    const users = Array.from({ length: 100 }, (_, i) => Address.of(`u${i}`, DOMAIN));
    const env = (k: number): Envelope => ({
      kind: 'message',
      type: 'chat',
      from: users[k % 100].withResource('r'),
      to: users[(k * 7 + 1) % 100],
      id: `b${k}`,
      body: `message ${k} with a body of ordinary length`,
      extensions: [],
      timestamp: Date.now(),
    });
    const mem0 = await usedMemory(admin);
    const calls0 = await commandCalls(admin);
    let t = now();
    await pool(messages, concurrency, (k) => archive.appendChat(env(k)));
    const appendSeconds = (now() - t) / 1000;
    const calls1 = await commandCalls(admin);
    const mem1 = await usedMemory(admin);
    // One append alone, 500 times: the latency a single sender sees.
    const alone: number[] = [];
    for (let k = 0; k < 500; k++) {
      const t0 = now();
      await archive.appendChat(env(messages + k));
      alone.push(now() - t0);
    }
    // The offline queue: push, list, remove, per user.
    const queue = storage.queue<EnvelopeRecord>('offline');
    const rec = {
      kind: 'message',
      type: 'chat',
      from: 'u1@localhost/r',
      to: 'u2@localhost',
      id: 'x',
      body: 'offline message of ordinary length',
      extensions: [],
    } as unknown as EnvelopeRecord;
    t = now();
    await pool(messages, concurrency, (k) => queue.push(`u${k % 100}`, rec));
    const pushSeconds = (now() - t) / 1000;
    t = now();
    await pool(100, concurrency, async (u) => {
      const items = await queue.list(`u${u}`);
      await queue.remove(
        `u${u}`,
        items.map((i) => i.id),
      );
    });
    const drainSeconds = (now() - t) / 1000;
    await storage.close();
    return {
      workload: 'redis-store',
      fsync,
      messages,
      concurrency,
      appendsPerSecond: Math.round(messages / appendSeconds),
      appendAlone: percentiles(alone),
      redisCommandsPerAppend: Math.round(((calls1 - calls0) / messages) * 10) / 10,
      redisBytesPerMessage: Math.round((mem1 - mem0) / messages),
      queuePushesPerSecond: Math.round(messages / pushSeconds),
      queueDrainedPerSecond: Math.round(messages / drainSeconds),
    };
  } finally {
    await admin.quit();
    await server.dispose();
  }
});
