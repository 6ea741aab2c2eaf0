/**
 * The archive's retention and account removal in Redis (prune, trimOwners,
 * removeOwner, forgetOwner) and the reading of records by reference. Each
 * record is changed by one guarded script (GUARDED in scripts.ts): it applies
 * only if the record is still the JSON that was read, so two nodes pruning,
 * trimming or removing at once never half-apply a change; a record that
 * changed in between is read again and retried.
 */

import type { ArchiveRecord } from '../types.ts';
import { archivers, peerOf } from '../util.ts';
import type { Conn } from './index.ts';
import { GUARDED } from './scripts.ts';

/** The keys of one archive store (storage/redis/index.ts has the layout). */
export class ArchiveKeys {
  readonly seqs: string;
  readonly pos: string;
  readonly all: string;
  readonly owners: string;
  constructor(private readonly base: string) {
    this.seqs = `${base}seq`;
    this.pos = `${base}pos`;
    this.all = `${base}all`;
    this.owners = `${base}owners`;
  }
  /** a conversation's records by seq */
  conv(conversation: string): string {
    return `${this.base}c:${conversation}`;
  }
  /** an owner's archive by position */
  owner(owner: string): string {
    return `${this.base}o:${owner}`;
  }
  /** an owner's archive, one peer */
  peer(owner: string, peer: string): string {
    return `${this.base}w:${owner}\u0000${peer}`;
  }
  /** conversation → how many records an owner takes part in */
  convs(owner: string): string {
    return `${this.base}oc:${owner}`;
  }
}

/** A record as read, with its reference. */
interface Loaded<T> {
  member: string;
  conversation: string;
  seq: number;
  json: string;
  record: ArchiveRecord<T>;
}

type Cmd = (string | number)[];

/** How many times a record that keeps changing under a retention pass is read again. */
const RETRIES = 5;
/** References read per round trip. */
const CHUNK = 256;

function member(conversation: string, seq: number): string {
  return `${conversation}\u0000${seq}`;
}

function split(ref: string): { conversation: string; seq: number } {
  const i = ref.lastIndexOf('\u0000');
  return { conversation: ref.slice(0, i), seq: Number(ref.slice(i + 1)) };
}

export class ArchiveRetention<T> {
  constructor(
    private readonly conn: Conn,
    private readonly k: ArchiveKeys,
  ) {}

  /** The records of references, in order; undefined where one is gone. */
  async read(refs: string[]): Promise<(ArchiveRecord<T> | undefined)[]> {
    return (await this.#load(refs)).map((l) => l?.record);
  }

  async #load(refs: string[]): Promise<(Loaded<T> | undefined)[]> {
    if (refs.length === 0) return [];
    const p = this.conn().pipeline();
    const parts = refs.map(split);
    for (const { conversation, seq } of parts) p.zrangebyscore(this.k.conv(conversation), seq, seq);
    const results = (await p.exec()) ?? [];
    return refs.map((ref, i) => {
      const [err, found] = results[i] ?? [];
      if (err) throw err;
      const json = (found as string[] | undefined)?.[0];
      if (json === undefined) return undefined;
      return { member: ref, ...parts[i], json, record: JSON.parse(json) as ArchiveRecord<T> };
    });
  }

  /** Commands that take a record out of the store and out of every index. */
  #drop(l: Loaded<T>): Cmd[] {
    const r = l.record;
    const cmds: Cmd[] = [['ZREMRANGEBYSCORE', this.k.conv(l.conversation), l.seq, l.seq]];
    if (r.pos !== undefined) {
      cmds.push(['ZREM', this.k.all, l.member]);
      for (const a of archivers(r))
        cmds.push(
          ['ZREM', this.k.owner(a), l.member],
          ['ZREM', this.k.peer(a, peerOf(r, a)), l.member],
        );
    }
    for (const o of new Set(r.owners)) cmds.push(['DECRDEL', this.k.convs(o), l.conversation]);
    return cmds;
  }

  /** Commands that take a record out of one owner's archive; out of the store once nobody archives it. */
  #forget(l: Loaded<T>, owner: string): Cmd[] {
    const r = l.record;
    const current = archivers(r);
    const cmds: Cmd[] = [['ZREM', this.k.owner(owner), l.member]];
    if (!current.includes(owner)) return cmds;
    const staying = current.filter((o) => o !== owner);
    if (staying.length === 0) return this.#drop(l);
    const next = JSON.stringify({ ...r, archivedFor: staying });
    cmds.push(['ZREM', this.k.peer(owner, peerOf(r, owner)), l.member]);
    cmds.push(
      ['ZREMRANGEBYSCORE', this.k.conv(l.conversation), l.seq, l.seq],
      ['ZADD', this.k.conv(l.conversation), l.seq, next],
    );
    return cmds;
  }

  /**
   * Applies `change` to each record, each in one guarded script; a record
   * that changed since it was read is read again and retried. Returns how
   * many changes applied.
   */
  async #each(
    loaded: (Loaded<T> | undefined)[],
    change: (l: Loaded<T>) => Cmd[] | undefined,
  ): Promise<number> {
    let applied = 0;
    let todo = loaded.filter((l): l is Loaded<T> => l !== undefined);
    for (let attempt = 0; todo.length > 0 && attempt <= RETRIES; attempt++) {
      const p = this.conn().pipeline();
      const sent: Loaded<T>[] = [];
      for (const l of todo) {
        const cmds = change(l);
        if (cmds === undefined || cmds.length === 0) continue;
        const args: (string | number)[] = [l.seq, l.json];
        for (const c of cmds) args.push(c.length, ...c);
        p.evalsha(GUARDED.sha, 1, this.k.conv(l.conversation), ...args);
        sent.push(l);
      }
      if (sent.length === 0) break;
      const results = (await p.exec()) ?? [];
      const changed: string[] = [];
      let reload = false;
      results.forEach(([err, ok], i) => {
        // A server that lost its scripts (restarted, SCRIPT FLUSH): loaded again, the record retried.
        if (err && String(err.message).startsWith('NOSCRIPT')) reload = true;
        else if (err) throw err;
        else if (Number(ok) === 1) return void applied++;
        changed.push(sent[i].member);
      });
      if (reload) await this.conn().script('LOAD', GUARDED.lua);
      todo = (await this.#load(changed)).filter((l): l is Loaded<T> => l !== undefined);
    }
    return applied;
  }

  /**
   * Rewrites one record (a tombstone's new value): false when the
   * conversation has no record with that seq. Guarded like every rewrite.
   */
  async rewrite(
    conversation: string,
    seq: number,
    change: (r: ArchiveRecord<T>) => ArchiveRecord<T>,
  ): Promise<boolean> {
    const ref = member(conversation, seq);
    const key = this.k.conv(conversation);
    let [l] = await this.#load([ref]);
    for (let attempt = 0; l !== undefined && attempt <= RETRIES; attempt++) {
      const next = JSON.stringify(change(l.record));
      const cmds: Cmd[] = [
        ['ZREMRANGEBYSCORE', key, seq, seq],
        ['ZADD', key, seq, next],
      ];
      const args: (string | number)[] = [seq, l.json];
      for (const c of cmds) args.push(c.length, ...c);
      if (Number(await GUARDED.run(this.conn(), [key], args)) === 1) return true;
      [l] = await this.#load([ref]);
    }
    if (l === undefined) return false;
    throw new Error(`archive record ${seq} of a conversation kept changing while it was rewritten`);
  }

  async prune(olderThan: number): Promise<number> {
    // By archive time (position / 1000), walking the store's position index from its oldest entry.
    const cutoff = Math.floor(olderThan) * 1000;
    let removed = 0;
    let from = '-inf';
    for (;;) {
      const flat = await this.conn().zrangebyscore(
        this.k.all,
        from,
        `(${cutoff}`,
        'WITHSCORES',
        'LIMIT',
        0,
        CHUNK,
      );
      if (flat.length === 0) break;
      const refs: string[] = [];
      for (let i = 0; i < flat.length; i += 2) refs.push(flat[i]);
      from = `(${flat[flat.length - 1]}`;
      const loaded = await this.#load(refs);
      // A reference whose record is gone is stale: removed, so it is not met again.
      const stale = refs.filter((_, i) => loaded[i] === undefined);
      if (stale.length > 0) await this.conn().zrem(this.k.all, ...stale);
      removed += await this.#each(loaded, (l) =>
        l.record.pos !== undefined && l.record.pos < cutoff ? this.#drop(l) : undefined,
      );
    }
    return removed;
  }

  async trimOwners(max: number): Promise<number> {
    const keep = Math.max(0, Math.floor(max));
    const redis = this.conn();
    let removed = 0;
    let cursor = '0';
    do {
      const [next, owners] = await redis.sscan(this.k.owners, cursor, 'COUNT', CHUNK);
      cursor = next;
      for (const owner of owners) {
        const n = await redis.zcard(this.k.owner(owner));
        if (n === 0) {
          await redis.srem(this.k.owners, owner);
          continue;
        }
        for (let excess = n - keep; excess > 0;) {
          const refs = await redis.zrange(this.k.owner(owner), 0, Math.min(excess, CHUNK) - 1);
          if (refs.length === 0) break;
          const loaded = await this.#load(refs);
          const stale = refs.filter((_, i) => loaded[i] === undefined);
          if (stale.length > 0) await redis.zrem(this.k.owner(owner), ...stale);
          const done = await this.#each(loaded, (l) => this.#forget(l, owner));
          removed += done;
          if (done + stale.length === 0) break;
          excess -= done + stale.length;
        }
      }
    } while (cursor !== '0');
    return removed;
  }

  async forgetOwner(owner: string, before?: number): Promise<number> {
    const redis = this.conn();
    let removed = 0;
    // With `before` (ms): only the entries archived before it (positions are ms × 1000), per-user retention.
    const upTo = before === undefined ? '+inf' : `(${Math.floor(before) * 1000}`;
    for (;;) {
      const refs = await redis.zrangebyscore(this.k.owner(owner), '-inf', upTo, 'LIMIT', 0, CHUNK);
      if (refs.length === 0) break;
      const loaded = await this.#load(refs);
      const stale = refs.filter((_, i) => loaded[i] === undefined);
      if (stale.length > 0) await redis.zrem(this.k.owner(owner), ...stale);
      const done = await this.#each(loaded, (l) => this.#forget(l, owner));
      removed += done;
      if (done + stale.length === 0) break;
    }
    if (before === undefined) await redis.srem(this.k.owners, owner);
    return removed;
  }

  async removeOwner(owner: string): Promise<void> {
    const redis = this.conn();
    for (const conversation of await redis.hkeys(this.k.convs(owner))) {
      const key = this.k.conv(conversation);
      let from = '-inf';
      for (;;) {
        const flat = await redis.zrangebyscore(key, from, '+inf', 'WITHSCORES', 'LIMIT', 0, CHUNK);
        if (flat.length === 0) break;
        const loaded: Loaded<T>[] = [];
        for (let i = 0; i < flat.length; i += 2) {
          const seq = Number(flat[i + 1]);
          loaded.push({
            member: member(conversation, seq),
            conversation,
            seq,
            json: flat[i],
            record: JSON.parse(flat[i]) as ArchiveRecord<T>,
          });
        }
        from = `(${flat[flat.length - 1]}`;
        await this.#each(loaded, (l) =>
          l.record.owners.includes(owner) ? this.#drop(l) : undefined,
        );
      }
    }
    await redis.srem(this.k.owners, owner);
  }
}
