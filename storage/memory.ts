/**
 * An in-memory backend with the semantics of the persistent ones, for unit
 * tests of the broker. Values are JSON round-tripped on the way in and out, as
 * a real backend would, so a test cannot pass by mutating a stored object.
 * Data survives close() and open() of the same instance, like a disk would.
 * Ids are checked like the embedded backend checks them, so a test here fails
 * where production would.
 */

import type {
  ArchivePage,
  ArchiveQuery,
  ArchiveRecord,
  ArchiveStore,
  KeyValueOp,
  KeyValueStore,
  QueueItem,
  QueueStore,
  Storage,
} from './types.ts';
import { checkId, compareKeys, inTimeRange, jsonClone, pad, pageLimit, seqRange, withSeq } from './util.ts';

/** Storage in process memory; nothing survives the process. */
export class MemoryStorage implements Storage {
  readonly name = 'memory';
  #open = false;
  readonly #stores = new Map<string, unknown>();

  async open(): Promise<void> {
    this.#open = true;
  }

  async close(): Promise<void> {
    this.#open = false;
  }

  async ping(): Promise<boolean> {
    return this.#open;
  }

  kv<T>(name: string): KeyValueStore<T> {
    return this.#store(`kv:${name}`, () => new MemoryKeyValue<T>());
  }

  archive<T>(name: string): ArchiveStore<T> {
    return this.#store(`ar:${name}`, () => new MemoryArchive<T>());
  }

  queue<T>(name: string): QueueStore<T> {
    return this.#store(`q:${name}`, () => new MemoryQueue<T>());
  }

  #store<S>(key: string, make: () => S): S {
    let store = this.#stores.get(key) as S | undefined;
    if (store === undefined) {
      store = make();
      this.#stores.set(key, store);
    }
    return store;
  }
}

class MemoryKeyValue<T> implements KeyValueStore<T> {
  readonly #data = new Map<string, string>();

  async get(key: string): Promise<T | undefined> {
    const text = this.#data.get(key);
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  async put(key: string, value: T): Promise<void> {
    this.#data.set(key, JSON.stringify(jsonClone(value)));
  }

  async delete(key: string): Promise<void> {
    this.#data.delete(key);
  }

  async keys(prefix = ''): Promise<string[]> {
    return [...this.#data.keys()].filter((k) => k.startsWith(prefix)).sort(compareKeys);
  }

  async entries(prefix: string): Promise<[string, T][]> {
    return (await this.keys(prefix)).map((k) => [k, JSON.parse(this.#data.get(k)!) as T]);
  }

  async batch(ops: KeyValueOp<T>[]): Promise<void> {
    // Encode every value first, so a bad one fails the batch before any write.
    const encoded = ops.map((op) => (op.type === 'put' ? JSON.stringify(jsonClone(op.value)) : null));
    ops.forEach((op, i) => (op.type === 'put' ? this.#data.set(op.key, encoded[i]!) : this.#data.delete(op.key)));
  }
}

interface Timeline<T> {
  /** never decreases, even when records are deleted, so seqs are not reused */
  last: number;
  /** ascending by seq */
  records: ArchiveRecord<T>[];
}

class MemoryArchive<T> implements ArchiveStore<T> {
  readonly #timelines = new Map<string, Timeline<T>>();

  async append(input: Omit<ArchiveRecord<T>, 'seq'>): Promise<ArchiveRecord<T>> {
    checkId('conversation', input.conversation);
    input.owners.forEach((owner) => checkId('owner', owner));
    const body = jsonClone(input);
    let timeline = this.#timelines.get(body.conversation);
    if (timeline === undefined) {
      timeline = { last: 0, records: [] };
      this.#timelines.set(body.conversation, timeline);
    }
    // Synchronous from here on: concurrent appends cannot interleave.
    const record = withSeq(body, ++timeline.last);
    timeline.records.push(record);
    return jsonClone(record);
  }

  async query(conversation: string, q: ArchiveQuery = {}): Promise<ArchivePage<T>> {
    const { lo, hi } = seqRange(q);
    const limit = pageLimit(q);
    const matches = (this.#timelines.get(conversation)?.records ?? []).filter(
      (r) => r.seq >= lo && r.seq <= hi && inTimeRange(q, r.timestamp),
    );
    if (q.reverse) matches.reverse();
    return { records: jsonClone(matches.slice(0, limit)), complete: matches.length <= limit };
  }

  async lastSeq(conversation: string): Promise<number> {
    return this.#timelines.get(conversation)?.last ?? 0;
  }

  async conversations(owner: string): Promise<string[]> {
    const out: string[] = [];
    for (const [conversation, { records }] of this.#timelines) {
      if (records.some((r) => r.owners.includes(owner))) out.push(conversation);
    }
    return out.sort(compareKeys);
  }

  async prune(olderThan: number): Promise<number> {
    return this.#deleteWhere((r) => r.timestamp < olderThan);
  }

  async removeOwner(owner: string): Promise<void> {
    this.#deleteWhere((r) => r.owners.includes(owner));
  }

  #deleteWhere(match: (r: ArchiveRecord<T>) => boolean): number {
    let removed = 0;
    for (const timeline of this.#timelines.values()) {
      const kept = timeline.records.filter((r) => !match(r));
      removed += timeline.records.length - kept.length;
      timeline.records = kept;
    }
    return removed;
  }
}

class MemoryQueue<T> implements QueueStore<T> {
  /** per owner: highest id ever given (never reused) and the items in id order */
  readonly #queues = new Map<string, { last: number; bytes: number; items: Map<string, string> }>();

  async push(owner: string, value: T): Promise<string> {
    checkId('owner', owner);
    const text = JSON.stringify(jsonClone(value));
    let queue = this.#queues.get(owner);
    if (queue === undefined) {
      queue = { last: 0, bytes: 0, items: new Map() };
      this.#queues.set(owner, queue);
    }
    const id = pad(++queue.last);
    // Ids only grow, so Map insertion order is id order.
    queue.items.set(id, text);
    queue.bytes += text.length;
    return id;
  }

  async list(owner: string, limit?: number): Promise<QueueItem<T>[]> {
    const items = [...(this.#queues.get(owner)?.items ?? [])];
    return items
      .slice(0, limit === undefined ? undefined : Math.max(0, limit))
      .map(([id, text]) => ({ id, value: JSON.parse(text) as T }));
  }

  async remove(owner: string, ids: string[]): Promise<void> {
    const queue = this.#queues.get(owner);
    if (!queue) return;
    for (const id of ids) {
      const text = queue.items.get(id);
      if (text === undefined) continue;
      queue.bytes -= text.length;
      queue.items.delete(id);
    }
  }

  async count(owner: string): Promise<number> {
    return this.#queues.get(owner)?.items.size ?? 0;
  }

  async bytes(owner: string): Promise<number> {
    return this.#queues.get(owner)?.bytes ?? 0;
  }

  async clear(owner: string): Promise<void> {
    const queue = this.#queues.get(owner);
    if (!queue) return;
    queue.items.clear();
    queue.bytes = 0;
  }
}
