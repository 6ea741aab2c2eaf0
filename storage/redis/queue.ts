/**
 * Per-owner FIFO queues in Redis (storage/redis/index.ts has the layout): a
 * list of ids in push order, a hash of the items, and a hash with the highest
 * id given (kept across clear, so ids never go back) and the byte total.
 * Push and remove are Lua scripts: the id, the list, the item and the total
 * change together.
 */

import type { QueueItem, QueueStore } from '../types.ts';
import { checkId, jsonClone } from '../util.ts';
import type { Conn } from './index.ts';
import { QUEUE_LIST, QUEUE_PUSH, QUEUE_REMOVE } from './scripts.ts';

export class RedisQueue<T> implements QueueStore<T> {
  constructor(
    private readonly conn: Conn,
    /** `<prefix>q:<name>:` */
    private readonly base: string,
  ) {}

  #keys(owner: string): [string, string, string] {
    return [`${this.base}m:${owner}`, `${this.base}l:${owner}`, `${this.base}i:${owner}`];
  }

  async push(owner: string, value: T): Promise<string> {
    checkId('owner', owner);
    const text = JSON.stringify(jsonClone(value));
    return (await QUEUE_PUSH.run(this.conn(), this.#keys(owner), [text, text.length])) as string;
  }

  async list(owner: string, limit?: number): Promise<QueueItem<T>[]> {
    if (limit !== undefined && limit <= 0) return [];
    const [, ids, items] = this.#keys(owner);
    const stop = limit === undefined ? -1 : Math.floor(limit) - 1;
    const flat = (await QUEUE_LIST.run(this.conn(), [ids, items], [stop])) as string[];
    const out: QueueItem<T>[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const item = flat[i + 1];
      out.push({ id: flat[i], value: JSON.parse(item.slice(item.indexOf('|') + 1)) as T });
    }
    return out;
  }

  async remove(owner: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await QUEUE_REMOVE.run(this.conn(), this.#keys(owner), [...new Set(ids)]);
  }

  async count(owner: string): Promise<number> {
    return this.conn().llen(this.#keys(owner)[1]);
  }

  async bytes(owner: string): Promise<number> {
    return Number((await this.conn().hget(this.#keys(owner)[0], 'bytes')) ?? 0);
  }

  async clear(owner: string): Promise<void> {
    const [meta, ids, items] = this.#keys(owner);
    const results = await this.conn().multi().del(ids, items).hset(meta, 'bytes', 0).exec();
    for (const [err] of results ?? []) if (err) throw err;
  }
}
