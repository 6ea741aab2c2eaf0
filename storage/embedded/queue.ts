/**
 * The embedded queues: items keyed by owner and zero-padded id, oldest first
 * in key order, and a per-owner { last, count } record written in the same
 * batch, so `count` is one read and ids are never reused.
 */

import type { QueueItem, QueueStore } from '../types.ts';
import { KeyedLock, checkId, jsonClone, pad } from '../util.ts';
import { BATCH, SEP, SEP_END } from './level.ts';
import type { MakeSub, Op, Sub, Write } from './level.ts';
import { ReadCache } from './read-cache.ts';

interface QueueMeta {
  /** highest id ever given; ids are never reused, even after clear */
  last: number;
  /** items currently queued */
  count: number;
  /** characters of their JSON (absent in records written before it was kept: counted from 0) */
  bytes?: number;
}

/** {@link QueueStore} on LevelDB; one instance per store name and database. */
export class LevelQueue<T> implements QueueStore<T> {
  readonly #items: Sub;
  readonly #meta: Sub;
  readonly #write: Write;
  readonly #lock = new KeyedLock();
  /** the per-owner records, kept in memory: a login asks for its queue, and most are empty */
  readonly #metaCache: ReadCache;

  constructor(sub: MakeSub, write: Write, cacheEntries: number) {
    this.#items = sub('i');
    this.#meta = sub('m');
    this.#write = write;
    this.#metaCache = new ReadCache(cacheEntries);
  }

  /** Forget what is kept (the database was closed and opened again). */
  reset(): void {
    this.#metaCache.reset();
  }

  async push(owner: string, value: T): Promise<string> {
    checkId('owner', owner);
    const text = JSON.stringify(jsonClone(value));
    return this.#lock.run(owner, async () => {
      const meta = await this.#readMeta(owner);
      const id = pad(meta.last + 1);
      const next = JSON.stringify({
        last: meta.last + 1,
        count: meta.count + 1,
        bytes: (meta.bytes ?? 0) + text.length,
      });
      await this.#writeWithMeta(owner, next, [
        { type: 'put', sublevel: this.#items, key: owner + SEP + id, value: text },
        { type: 'put', sublevel: this.#meta, key: owner, value: next },
      ]);
      return id;
    });
  }

  async list(owner: string, limit?: number): Promise<QueueItem<T>[]> {
    checkId('owner', owner);
    const out: QueueItem<T>[] = [];
    // The count and the items are written in one batch: none counted, none there (no iterator needed).
    if ((await this.#readMeta(owner)).count === 0) return out;
    const range = {
      gte: owner + SEP,
      lt: owner + SEP_END,
      ...(limit === undefined ? {} : { limit: Math.max(0, limit) }),
    };
    for await (const [key, text] of this.#items.iterator(range)) {
      out.push({ id: key.slice(owner.length + 1), value: JSON.parse(text) as T });
    }
    return out;
  }

  async remove(owner: string, ids: string[]): Promise<void> {
    checkId('owner', owner);
    await this.#lock.run(owner, async () => {
      const keys = [...new Set(ids)].map((id) => owner + SEP + id);
      // Only ids that exist may lower the count (and their size the byte total).
      const found = await this.#items.getMany(keys);
      const present = keys.filter((_, i) => found[i] !== undefined);
      if (present.length === 0) return;
      const size = found.reduce((n: number, v) => n + (v === undefined ? 0 : v.length), 0);
      const meta = await this.#readMeta(owner);
      const ops: Op[] = present.map((key): Op => ({ type: 'del', sublevel: this.#items, key }));
      const next = JSON.stringify({
        ...meta,
        count: meta.count - present.length,
        bytes: Math.max(0, (meta.bytes ?? 0) - size),
      });
      ops.push({ type: 'put', sublevel: this.#meta, key: owner, value: next });
      await this.#writeWithMeta(owner, next, ops);
    });
  }

  async count(owner: string): Promise<number> {
    checkId('owner', owner);
    return (await this.#readMeta(owner)).count;
  }

  async bytes(owner: string): Promise<number> {
    checkId('owner', owner);
    return (await this.#readMeta(owner)).bytes ?? 0;
  }

  async clear(owner: string): Promise<void> {
    checkId('owner', owner);
    await this.#lock.run(owner, async () => {
      const meta = await this.#readMeta(owner);
      let deleted = 0;
      let ops: Op[] = [];
      // Each batch lowers the count with its deletes, so a crash mid-clear
      // leaves the count matching the items left. `last` is kept so ids stay
      // increasing and a stale id list never hits a newer item.
      const flush = async (count: number): Promise<void> => {
        const next = JSON.stringify({
          last: meta.last,
          count,
          bytes: count === 0 ? 0 : meta.bytes,
        });
        ops.push({ type: 'put', sublevel: this.#meta, key: owner, value: next });
        await this.#writeWithMeta(owner, next, ops);
        ops = [];
      };
      for await (const key of this.#items.keys({ gte: owner + SEP, lt: owner + SEP_END })) {
        ops.push({ type: 'del', sublevel: this.#items, key });
        deleted++;
        if (ops.length >= BATCH) await flush(Math.max(0, meta.count - deleted));
      }
      await flush(0);
    });
  }

  async #readMeta(owner: string): Promise<QueueMeta> {
    const text = await this.#metaCache.read(owner, () => this.#meta.get(owner));
    return text === null ? { last: 0, count: 0 } : (JSON.parse(text) as QueueMeta);
  }

  /** A batch that writes owner's record as `meta`, kept once it is on disk. */
  #writeWithMeta(owner: string, meta: string, ops: Op[]): Promise<void> {
    return this.#metaCache.write(owner, meta, () => this.#write(ops));
  }
}
