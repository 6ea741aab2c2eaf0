/**
 * Archives in Redis (storage/redis/index.ts has the layout): each
 * conversation is a sorted set of its records keyed by seq; each owner's
 * archive a sorted set of references keyed by archive position, with one more
 * per peer for the `with` filter. An append is one Lua script (the seq, the
 * position and every index entry together, atomic across nodes); retention
 * and account removal rewrite one record at a time with a guarded script
 * that applies only if the record is still what was read
 * (storage/redis/archive-retention.ts).
 */

import type {
  ArchivePage,
  ArchiveQuery,
  ArchiveRecord,
  ArchiveStore,
  OwnerBounds,
  OwnerPage,
  OwnerQuery,
} from '../types.ts';
import {
  archivers,
  checkId,
  compareKeys,
  filterBounds,
  jsonClone,
  namedIds,
  ownerRecord,
  pageBounds,
  pageLimit,
  parseArchiveId,
  peerOf,
  posTime,
  seqRange,
} from '../util.ts';
import type { Conn } from './index.ts';
import { ArchiveKeys, ArchiveRetention } from './archive-retention.ts';
import { ARCHIVE_APPEND, ARCHIVE_QUERY_TIME } from './scripts.ts';

export class RedisArchive<T> implements ArchiveStore<T> {
  readonly #k: ArchiveKeys;
  readonly #retention: ArchiveRetention<T>;

  constructor(
    private readonly conn: Conn,
    /** `<prefix>ar:<name>:` */
    base: string,
  ) {
    this.#k = new ArchiveKeys(base);
    this.#retention = new ArchiveRetention<T>(conn, this.#k);
  }

  async append(input: Omit<ArchiveRecord<T>, 'seq'>): Promise<ArchiveRecord<T>> {
    checkId('conversation', input.conversation);
    input.owners.forEach((owner) => checkId('owner', owner));
    const indexed = archivers(input);
    if (indexed.length > 0) checkId('with', input.with);
    const body = jsonClone(input) as ArchiveRecord<T>;
    // seq and pos are the store's: the script appends them to the JSON.
    delete (body as Partial<ArchiveRecord<T>>).seq;
    delete body.pos;
    const owners = [...new Set(body.owners)];
    const k = this.#k;
    const keys = [
      k.seqs,
      k.pos,
      k.conv(body.conversation),
      k.all,
      k.owners,
      ...indexed.map((o) => k.owner(o)),
      ...indexed.map((o) => k.peer(o, peerOf(body, o))),
      ...owners.map((o) => k.convs(o)),
    ];
    const t =
      Number.isFinite(body.timestamp) && body.timestamp > 0 ? Math.floor(body.timestamp) * 1000 : 0;
    if (!Number.isSafeInteger(t)) throw new RangeError('archive position out of range');
    const [seq, pos] = (await ARCHIVE_APPEND.run(this.conn(), keys, [
      body.conversation,
      t,
      JSON.stringify(body),
      indexed.length,
      owners.length,
      ...indexed,
    ])) as [string, string];
    const record = body;
    record.seq = Number(seq);
    if (pos !== '') record.pos = Number(pos);
    return record;
  }

  async query(conversation: string, q: ArchiveQuery = {}): Promise<ArchivePage<T>> {
    const { lo, hi } = seqRange(q);
    const limit = pageLimit(q);
    if (lo > hi) return { records: [], complete: true };
    const key = this.#k.conv(conversation);
    let found: string[];
    if (q.start !== undefined || q.end !== undefined) {
      found = (await ARCHIVE_QUERY_TIME.run(
        this.conn(),
        [key],
        [lo, hi, limit + 1, q.reverse ? '1' : '0', q.start ?? '', q.end ?? ''],
      )) as string[];
    } else if (q.reverse) {
      found = await this.conn().zrevrangebyscore(key, hi, lo, 'LIMIT', 0, limit + 1);
    } else {
      found = await this.conn().zrangebyscore(key, lo, hi, 'LIMIT', 0, limit + 1);
    }
    // One record past the page tells whether the page is complete.
    return {
      records: found.slice(0, limit).map((j) => JSON.parse(j) as ArchiveRecord<T>),
      complete: found.length <= limit,
    };
  }

  /**
   * Overwrites the value of one record in place (XEP-0424 tombstones): its
   * seq, position, owners and index entries stay. False when the
   * conversation has no record with that seq.
   */
  async setValue(conversation: string, seq: number, value: T): Promise<boolean> {
    checkId('conversation', conversation);
    const clone = jsonClone(value);
    return this.#retention.rewrite(conversation, seq, (r) => ({ ...r, value: clone }));
  }

  async lastSeq(conversation: string): Promise<number> {
    return Number((await this.conn().hget(this.#k.seqs, conversation)) ?? 0);
  }

  async conversations(owner: string): Promise<string[]> {
    return (await this.conn().hkeys(this.#k.convs(owner))).sort(compareKeys);
  }

  async queryOwner(owner: string, q: OwnerQuery = {}): Promise<OwnerPage<T>> {
    checkId('owner', owner);
    const redis = this.conn();
    const own = this.#k.owner(owner);
    // Every id the query names must be in the owner's archive [XEP-0313 query-limit-id].
    const named = namedIds(q);
    if (named.length > 0) {
      const p = redis.pipeline();
      for (const id of named) {
        const pos = parseArchiveId(id);
        if (pos !== undefined) p.zcount(own, pos, pos);
        else p.echo('0');
      }
      const counts = (await p.exec()) ?? [];
      const missing = named.filter((_, i) => Number(counts[i]?.[1] ?? 0) === 0);
      if (missing.length > 0) return { records: [], complete: true, missing };
    }
    const index = q.with === undefined ? own : this.#k.peer(owner, q.with);
    const filter = filterBounds(q);
    const page = pageBounds(q);
    const limit = pageLimit(q);
    let refs: { member: string; pos: number }[];
    let count: number | undefined;
    if (q.ids !== undefined) {
      // Picked by id: each one looked up in the index, then filtered and paged here.
      const positions = [
        ...new Set(q.ids.map(parseArchiveId).filter((p): p is number => p !== undefined)),
      ]
        .filter((p) => p >= filter.lo && p <= filter.hi)
        .sort((a, b) => a - b);
      const p = redis.pipeline();
      for (const pos of positions) p.zrangebyscore(index, pos, pos);
      const found = ((await p.exec()) ?? []).map((r) => (r[1] as string[] | undefined)?.[0]);
      const matching = positions
        .map((pos, i) => ({ pos, member: found[i] }))
        .filter((r): r is { pos: number; member: string } => r.member !== undefined);
      count = matching.length;
      refs = matching.filter((r) => r.pos >= page.lo && r.pos <= page.hi);
      if (q.reverse) refs.reverse();
    } else {
      const flat =
        page.lo > page.hi
          ? []
          : q.reverse
            ? await redis.zrevrangebyscore(
                index,
                page.hi,
                page.lo,
                'WITHSCORES',
                'LIMIT',
                0,
                limit + 1,
              )
            : await redis.zrangebyscore(
                index,
                page.lo,
                page.hi,
                'WITHSCORES',
                'LIMIT',
                0,
                limit + 1,
              );
      refs = [];
      for (let i = 0; i < flat.length; i += 2)
        refs.push({ member: flat[i], pos: Number(flat[i + 1]) });
      // Counted on the index: the cost follows its size, not the records'.
      if (q.count)
        count = filter.lo > filter.hi ? 0 : await redis.zcount(index, filter.lo, filter.hi);
    }
    const records = await this.#retention.read(refs.slice(0, limit).map((r) => r.member));
    const out: OwnerPage<T> = {
      records: records
        .filter((r): r is ArchiveRecord<T> => r !== undefined)
        .map((r) => ownerRecord(r)),
      complete: refs.length <= limit,
    };
    if (q.count) out.count = count;
    return out;
  }

  async ownerBounds(owner: string): Promise<OwnerBounds> {
    const redis = this.conn();
    const own = this.#k.owner(owner);
    const [first, last] = await Promise.all([
      redis.zrange(own, 0, 0, 'WITHSCORES'),
      redis.zrange(own, -1, -1, 'WITHSCORES'),
    ]);
    const at = (r: string[]) => ({ archiveId: r[1], archivedAt: posTime(Number(r[1])) });
    const out: OwnerBounds = {};
    if (first.length > 0) out.first = at(first);
    if (last.length > 0) out.last = at(last);
    return out;
  }

  prune(olderThan: number): Promise<number> {
    return this.#retention.prune(olderThan);
  }

  trimOwners(max: number): Promise<number> {
    return this.#retention.trimOwners(max);
  }

  removeOwner(owner: string): Promise<void> {
    return this.#retention.removeOwner(owner);
  }

  forgetOwner(owner: string, before?: number): Promise<number> {
    return this.#retention.forgetOwner(owner, before);
  }
}
