/**
 * A key-value store in Redis (storage/redis/index.ts has the layout): the
 * values in one hash, the keys again in a sorted set whose members all score
 * 0, so ZRANGEBYLEX gives them in byte order (the UTF-8 order LevelDB and
 * MongoDB use) and a prefix is one range. Every write touches both in one
 * MULTI, so they never disagree.
 */

import type { ChainableCommander } from 'ioredis';
import type { KeyValueOp, KeyValueStore } from '../types.ts';
import { jsonClone } from '../util.ts';
import type { Conn } from './index.ts';
import { KV_ENTRIES } from './scripts.ts';

/** The ZRANGEBYLEX bounds of every key starting with prefix (0xff never occurs in UTF-8). */
export function lexRange(prefix: string): [string | Buffer, string | Buffer] {
  if (prefix === '') return ['-', '+'];
  return [
    Buffer.from(`[${prefix}`, 'utf8'),
    Buffer.concat([Buffer.from(`(${prefix}`, 'utf8'), Buffer.from([0xff])]),
  ];
}

/** Runs a MULTI and throws the first error of its commands. */
export async function execOrThrow(multi: ChainableCommander): Promise<void> {
  const results = await multi.exec();
  if (results === null) throw new Error('redis transaction aborted');
  for (const [err] of results) if (err) throw err;
}

export class RedisKeyValue<T> implements KeyValueStore<T> {
  constructor(
    private readonly conn: Conn,
    /** the hash of values */
    private readonly values: string,
    /** the sorted set of keys */
    private readonly index: string,
  ) {}

  async get(key: string): Promise<T | undefined> {
    const text = await this.conn().hget(this.values, key);
    return text === null ? undefined : (JSON.parse(text) as T);
  }

  async put(key: string, value: T): Promise<void> {
    const text = JSON.stringify(jsonClone(value));
    await execOrThrow(this.conn().multi().hset(this.values, key, text).zadd(this.index, 0, key));
  }

  async delete(key: string): Promise<void> {
    await execOrThrow(this.conn().multi().hdel(this.values, key).zrem(this.index, key));
  }

  async keys(prefix = ''): Promise<string[]> {
    const [lo, hi] = lexRange(prefix);
    return this.conn().zrangebylex(this.index, lo, hi);
  }

  async entries(prefix: string): Promise<[string, T][]> {
    const [lo, hi] = lexRange(prefix);
    const flat = (await KV_ENTRIES.run(
      this.conn(),
      [this.index, this.values],
      [lo, hi],
    )) as string[];
    const out: [string, T][] = [];
    for (let i = 0; i < flat.length; i += 2) out.push([flat[i], JSON.parse(flat[i + 1]) as T]);
    return out;
  }

  /** One MULTI: atomic, and no other client sees a part of it. */
  async batch(ops: KeyValueOp<T>[]): Promise<void> {
    if (ops.length === 0) return;
    // Encode every value first, so a bad one fails the batch before any write.
    const encoded = ops.map((op) => (op.type === 'put' ? JSON.stringify(jsonClone(op.value)) : ''));
    const multi = this.conn().multi();
    ops.forEach((op, i) => {
      if (op.type === 'put')
        multi.hset(this.values, op.key, encoded[i]).zadd(this.index, 0, op.key);
      else multi.hdel(this.values, op.key).zrem(this.index, op.key);
    });
    await execOrThrow(multi);
  }
}
