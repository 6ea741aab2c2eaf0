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
  OwnerBounds,
  OwnerPage,
  OwnerQuery,
  KeyValueStore,
  QueueItem,
  QueueStore,
  Storage,
} from './types.ts';
import {
  archivers,
  checkId,
  compareKeys,
  filterBounds,
  inTimeRange,
  jsonClone,
  namedIds,
  nextPos,
  ownerRecord,
  pad,
  pageBounds,
  pageLimit,
  parseArchiveId,
  peerOf,
  posTime,
  seqRange,
  withSeq,
} from './util.ts';

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
    const encoded = ops.map((op) =>
      op.type === 'put' ? JSON.stringify(jsonClone(op.value)) : null,
    );
    ops.forEach((op, i) =>
      op.type === 'put' ? this.#data.set(op.key, encoded[i]!) : this.#data.delete(op.key),
    );
  }
}

interface Timeline<T> {
  /** never decreases, even when records are deleted, so seqs are not reused */
  last: number;
  /** ascending by seq */
  records: ArchiveRecord<T>[];
}

/** An entry of an owner's archive. */
interface OwnerEntry {
  pos: number;
  conversation: string;
  seq: number;
  peer: string;
}

class MemoryArchive<T> implements ArchiveStore<T> {
  readonly #timelines = new Map<string, Timeline<T>>();
  /** per owner, ascending by pos */
  readonly #owners = new Map<string, OwnerEntry[]>();
  #pos = 0;

  async append(input: Omit<ArchiveRecord<T>, 'seq'>): Promise<ArchiveRecord<T>> {
    checkId('conversation', input.conversation);
    input.owners.forEach((owner) => checkId('owner', owner));
    const indexed = archivers(input);
    if (indexed.length > 0) checkId('with', input.with);
    const body = jsonClone(input);
    let timeline = this.#timelines.get(body.conversation);
    if (timeline === undefined) {
      timeline = { last: 0, records: [] };
      this.#timelines.set(body.conversation, timeline);
    }
    // Synchronous from here on: concurrent appends cannot interleave.
    const pos = indexed.length > 0 ? (this.#pos = nextPos(this.#pos, body.timestamp)) : undefined;
    const record = withSeq(body, ++timeline.last, pos);
    timeline.records.push(record);
    if (pos !== undefined) {
      for (const owner of indexed) {
        let list = this.#owners.get(owner);
        if (list === undefined) this.#owners.set(owner, (list = []));
        list.push({
          pos,
          conversation: body.conversation,
          seq: record.seq,
          peer: peerOf(body, owner),
        });
      }
    }
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

  async queryOwner(owner: string, q: OwnerQuery = {}): Promise<OwnerPage<T>> {
    checkId('owner', owner);
    const list = this.#owners.get(owner) ?? [];
    const has = (id: string) => {
      const pos = parseArchiveId(id);
      return pos !== undefined && list.some((e) => e.pos === pos);
    };
    const missing = namedIds(q).filter((id) => !has(id));
    if (missing.length > 0) return { records: [], complete: true, missing };
    const filter = filterBounds(q);
    const page = pageBounds(q);
    const ids = q.ids === undefined ? undefined : new Set(q.ids.map(parseArchiveId));
    const matching = list.filter(
      (e) =>
        e.pos >= filter.lo &&
        e.pos <= filter.hi &&
        (q.with === undefined || e.peer === q.with) &&
        (ids === undefined || ids.has(e.pos)),
    );
    const inPage = matching.filter((e) => e.pos >= page.lo && e.pos <= page.hi);
    if (q.reverse) inPage.reverse();
    const limit = pageLimit(q);
    const records = inPage.slice(0, limit).map((e) => {
      const r = this.#timelines
        .get(e.conversation)
        ?.records.find((x) => x.seq === e.seq) as ArchiveRecord<T>;
      return ownerRecord(jsonClone(r));
    });
    const out: OwnerPage<T> = { records, complete: inPage.length <= limit };
    if (q.count) out.count = matching.length;
    return out;
  }

  async ownerBounds(owner: string): Promise<OwnerBounds> {
    const list = this.#owners.get(owner) ?? [];
    const at = (e: OwnerEntry) => ({ archiveId: String(e.pos), archivedAt: posTime(e.pos) });
    return list.length === 0 ? {} : { first: at(list[0]), last: at(list[list.length - 1]) };
  }

  async setValue(conversation: string, seq: number, value: T): Promise<boolean> {
    checkId('conversation', conversation);
    const record = this.#timelines.get(conversation)?.records.find((r) => r.seq === seq);
    if (record === undefined) return false;
    record.value = jsonClone(value);
    return true;
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
    // The archive time, as the persistent backends walk their owner index by it.
    const cutoff = Math.floor(olderThan) * 1000;
    return this.#deleteWhere((r) => r.pos !== undefined && r.pos < cutoff);
  }

  async trimOwners(max: number): Promise<number> {
    const keep = Math.max(0, Math.floor(max));
    let removed = 0;
    for (const [owner, list] of this.#owners) {
      const excess = list.slice(0, Math.max(0, list.length - keep));
      for (const e of excess) {
        const timeline = this.#timelines.get(e.conversation);
        const r = timeline?.records.find((x) => x.seq === e.seq);
        if (!timeline || !r) continue;
        const staying = archivers(r).filter((o) => o !== owner);
        if (staying.length > 0) r.archivedFor = staying;
        else timeline.records = timeline.records.filter((x) => x !== r);
        removed++;
      }
      this.#owners.set(owner, list.slice(excess.length));
    }
    return removed;
  }

  async forgetOwner(owner: string, before?: number): Promise<number> {
    let removed = 0;
    const all = this.#owners.get(owner) ?? [];
    const cutoff = before === undefined ? Infinity : Math.floor(before) * 1000;
    const leaving = all.filter((e) => e.pos < cutoff);
    for (const e of leaving) {
      const timeline = this.#timelines.get(e.conversation);
      const r = timeline?.records.find((x) => x.seq === e.seq);
      if (!timeline || !r) continue;
      const staying = archivers(r).filter((o) => o !== owner);
      if (staying.length > 0) r.archivedFor = staying;
      else timeline.records = timeline.records.filter((x) => x !== r);
      removed++;
    }
    if (before === undefined) this.#owners.delete(owner);
    else
      this.#owners.set(
        owner,
        all.filter((e) => e.pos >= cutoff),
      );
    return removed;
  }

  async removeOwner(owner: string): Promise<void> {
    this.#deleteWhere((r) => r.owners.includes(owner));
    this.#owners.delete(owner);
  }

  #deleteWhere(match: (r: ArchiveRecord<T>) => boolean): number {
    let removed = 0;
    const gone = new Set<number>();
    for (const timeline of this.#timelines.values()) {
      const kept = timeline.records.filter((r) => !match(r));
      for (const r of timeline.records)
        if (r.pos !== undefined && !kept.includes(r)) gone.add(r.pos);
      removed += timeline.records.length - kept.length;
      timeline.records = kept;
    }
    // Every owner's entries of the deleted records.
    for (const [owner, list] of this.#owners)
      this.#owners.set(
        owner,
        list.filter((e) => !gone.has(e.pos)),
      );
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
