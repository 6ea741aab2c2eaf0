/**
 * The Redis backend, for small clusters: every node shares one Redis server
 * (a primary, with replicas or Sentinel for failover; not Redis Cluster, whose
 * multi-key scripts would have to stay in one slot). Seqs, archive
 * positions and queue ids come from Redis counters inside Lua scripts, never
 * from a node's memory, so they are atomic across nodes.
 *
 * Layout (prefix `parley:` by default; store names percent-encoded as N):
 *
 *   kv:N               HASH key → JSON                       (storage/redis/kv.ts)
 *   kvi:N              ZSET of the keys, score 0 (lex order = UTF-8 byte order)
 *   q:N:m:<owner>      HASH { last: highest id given, bytes }  (storage/redis/queue.ts)
 *   q:N:l:<owner>      LIST of ids, oldest first
 *   q:N:i:<owner>      HASH id → "<length>|<json>"
 *   ar:N:seq           HASH conversation → last seq            (storage/redis/archive.ts)
 *   ar:N:pos           the last archive position
 *   ar:N:c:<conv>      ZSET seq → record JSON
 *   ar:N:all           ZSET position → "<conv>\0<seq>"          (prune)
 *   ar:N:o:<owner>     ZSET position → "<conv>\0<seq>"          (an owner's archive)
 *   ar:N:w:<owner>\0<peer>  the same, one peer only             (the `with` filter)
 *   ar:N:oc:<owner>    HASH conversation → records the owner takes part in
 *   ar:N:owners        SET of owners with an archive           (trimOwners)
 *
 * Durability is the server's: with AOF `appendfsync always` a write is on
 * disk when acknowledged; with `everysec` (Redis' default) up to a second of
 * acknowledged writes is lost if the server's machine fails
 * (docs/operations.md, "Storage backends").
 */

import { Redis } from 'ioredis';
import type { ArchiveStore, KeyValueStore, QueueStore, Storage } from '../types.ts';
import { RedisArchive } from './archive.ts';
import { RedisKeyValue } from './kv.ts';
import { RedisQueue } from './queue.ts';
import { ALL_SCRIPTS } from './scripts.ts';

/** Options of {@link RedisStorage}. */
export interface RedisStorageOptions {
  /** A Redis URL: `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. */
  url: string;
  /** Prefix of every key (default `parley:`), so that one server can hold several deployments. */
  prefix?: string;
}

/** Hands out the open connection; stores outlive a close/open cycle. */
export type Conn = () => Redis;

/** Store names in keys: percent-encoded, so a name never contains the `:` that ends it. */
export function enc(name: string): string {
  return encodeURIComponent(name);
}

/** Storage in a Redis server, shared by every node of a cluster. */
export class RedisStorage implements Storage {
  readonly name = 'redis';
  readonly #url: string;
  readonly #prefix: string;
  #client: Redis | undefined;
  readonly #stores = new Map<string, unknown>();

  constructor(options: RedisStorageOptions) {
    this.#url = options.url;
    this.#prefix = options.prefix ?? 'parley:';
  }

  async open(): Promise<void> {
    if (this.#client !== undefined) return;
    const client = new Redis(this.#url, {
      lazyConnect: true,
      maxRetriesPerRequest: 3,
      connectionName: 'parley-storage',
    });
    // Scripts are loaded on every (re)connection, before queued commands run,
    // so EVALSHA finds them (a restarted server has an empty script cache).
    client.on('ready', () => {
      for (const s of ALL_SCRIPTS) client.script('LOAD', s.lua).catch(() => {});
    });
    // Errors surface on the commands; the connection retries with backoff.
    let last: Error | undefined;
    client.on('error', (err: Error) => (last = err));
    try {
      await client.connect();
      await Promise.all(ALL_SCRIPTS.map((s) => client.script('LOAD', s.lua)));
    } catch (err) {
      client.disconnect();
      // Where, without the URL's password, and why (the socket's error, not ioredis' "Connection is closed").
      const where = `${client.options.host ?? '?'}:${client.options.port ?? '?'}`;
      throw new Error(
        `redis store: cannot use the server at ${where}: ${(last ?? (err as Error)).message}`,
        { cause: err },
      );
    }
    this.#client = client;
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client === undefined) return;
    try {
      await client.quit();
    } catch {
      client.disconnect();
    }
  }

  async ping(): Promise<boolean> {
    const client = this.#client;
    if (client === undefined || client.status !== 'ready') return false;
    try {
      return (await client.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  /**
   * What is unsafe in the server's settings for a store (docs/operations.md,
   * "Storage backends"): AOF off, or an eviction policy that may drop data.
   * Nothing when the server does not let us read its settings (CONFIG GET
   * refused by an ACL or a managed service).
   */
  async serverWarnings(): Promise<string[]> {
    const client = this.#conn();
    const get = async (name: string): Promise<string | undefined> => {
      try {
        return ((await client.config('GET', name)) as string[])[1];
      } catch {
        return undefined;
      }
    };
    const out: string[] = [];
    const aof = await get('appendonly');
    if (aof !== undefined && aof !== 'yes')
      out.push(
        'redis: appendonly is off, a restart of the server loses what was written since its last snapshot; set appendonly yes',
      );
    const policy = await get('maxmemory-policy');
    if (policy !== undefined && policy !== 'noeviction')
      out.push(
        `redis: maxmemory-policy is ${policy}, the server may drop stored accounts and messages when full; set noeviction`,
      );
    return out;
  }

  kv<T>(name: string): KeyValueStore<T> {
    return this.#store(
      `kv:${name}`,
      () =>
        new RedisKeyValue<T>(
          this.#conn,
          `${this.#prefix}kv:${enc(name)}`,
          `${this.#prefix}kvi:${enc(name)}`,
        ),
    );
  }

  archive<T>(name: string): ArchiveStore<T> {
    return this.#store(
      `ar:${name}`,
      () => new RedisArchive<T>(this.#conn, `${this.#prefix}ar:${enc(name)}:`),
    );
  }

  queue<T>(name: string): QueueStore<T> {
    return this.#store(
      `q:${name}`,
      () => new RedisQueue<T>(this.#conn, `${this.#prefix}q:${enc(name)}:`),
    );
  }

  readonly #conn: Conn = () => {
    if (this.#client === undefined) throw new Error('RedisStorage is not open');
    return this.#client;
  };

  #store<S>(key: string, make: () => S): S {
    let store = this.#stores.get(key) as S | undefined;
    if (store === undefined) {
      store = make();
      this.#stores.set(key, store);
    }
    return store;
  }
}
