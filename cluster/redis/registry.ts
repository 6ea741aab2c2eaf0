import type { BusMessage, SessionEntry, SessionRegistry } from '../types.ts';
import type { RedisBus } from './bus.ts';

/**
 * The session registry on Redis (docs/cluster.md "Registry"):
 *
 *   <prefix>:s:<user>   hash  resource → entry JSON        (who is online where)
 *   <prefix>:n:<node>   hash  "<user>\n<resource>" → session id   (what a node holds)
 *
 * Both written in one MULTI or one script, so a node's sessions are purged
 * in one step (PURGE below). Reads are answered from a local cache: every
 * change is broadcast on the bus as a delta ('reg'), which each node applies
 * to the users it has cached, in the order the writer sent them; a user
 * looked up and not cached is read once from Redis and cached, an empty
 * answer too. After an outage (deltas may have been missed) the cache is
 * dropped and this node's own sessions are written again. While Redis is
 * away, this node's own sessions are still known (they are kept apart), so
 * local traffic goes on.
 */

// KEYS: user hash, node hash. ARGV: resource, session id, member.
const REMOVE = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and cjson.decode(v).sessionId == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[3]) end
return 0
`;

// KEYS: node hash. ARGV: user-hash prefix ("<prefix>:s:"), 1 to delete or 0 to list.
// Returns the entries (JSON) the node still holds; with delete, removes them and the node hash.
const BY_NODE = `
local m = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #m, 2 do
  local nl = string.find(m[i], '\\n', 1, true)
  if nl then
    local key = ARGV[1] .. string.sub(m[i], 1, nl - 1)
    local res = string.sub(m[i], nl + 1)
    local v = redis.call('HGET', key, res)
    if v and cjson.decode(v).sessionId == m[i + 1] then
      out[#out + 1] = v
      if ARGV[2] == '1' then redis.call('HDEL', key, res) end
    end
  end
end
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end
return out
`;

type Delta =
  | { op: 'put'; e: SessionEntry }
  | { op: 'del'; u: string; r: string; s: string }
  | { op: 'purge'; node: string }
  /** a node wrote all its sessions again: its entries are exactly these */
  | { op: 'sync'; node: string; entries: SessionEntry[] };

export interface RedisRegistryOptions {
  /** users whose entries are cached (besides this node's own); the oldest cached go first */
  cacheUsers?: number;
}

export class RedisRegistry implements SessionRegistry {
  private readonly bus: RedisBus;
  private readonly cacheUsers: number;
  /** cached users: resource → entry (a Map in insertion order: the oldest are evicted first) */
  private readonly cache = new Map<string, Map<string, SessionEntry>>();
  /** this node's own sessions: user → resource → entry; the truth for them, Redis or not */
  private readonly own = new Map<string, Map<string, SessionEntry>>();
  private ownCount = 0;
  /** users being read from Redis, with the deltas that arrived meanwhile */
  private readonly loading = new Map<
    string,
    { promise: Promise<SessionEntry[]>; deltas: Delta[] }
  >();
  /** a write failed (Redis away): write every own session again when it is back */
  private dirty = false;
  /** the next try of a failed write (retryLater) */
  private retry: NodeJS.Timeout | undefined;

  constructor(bus: RedisBus, opts: RedisRegistryOptions = {}) {
    this.bus = bus;
    this.cacheUsers = opts.cacheUsers ?? 100_000;
    bus.localSessions = () => this.ownCount;
    bus.onMessage((msg) => this.onBus(msg));
    bus.onReconnect(() => void this.resync());
  }

  private userKey(user: string): string {
    return this.bus.key('s', user);
  }

  private nodeKey(node: string): string {
    return this.bus.key('n', node);
  }

  async put(entry: SessionEntry): Promise<void> {
    const e = { ...entry };
    if (e.node === this.bus.nodeId) this.setOwn(e);
    this.apply({ op: 'put', e });
    try {
      await this.bus.pub
        .multi()
        .hset(this.userKey(e.user), e.resource, JSON.stringify(e))
        .hset(this.nodeKey(e.node), `${e.user}\n${e.resource}`, e.sessionId)
        .exec();
      await this.bus.broadcastRemote('reg', { op: 'put', e });
    } catch (err) {
      this.writeFailed(err);
    }
  }

  async remove(user: string, resource: string, sessionId: string): Promise<void> {
    const mine = this.own.get(user)?.get(resource);
    if (mine?.sessionId === sessionId) this.deleteOwn(user, resource);
    const d: Delta = { op: 'del', u: user, r: resource, s: sessionId };
    this.apply(d);
    try {
      await this.bus.pub.eval(
        REMOVE,
        2,
        this.userKey(user),
        this.nodeKey(this.bus.nodeId),
        resource,
        sessionId,
        `${user}\n${resource}`,
      );
      await this.bus.broadcastRemote('reg', d);
    } catch (err) {
      this.writeFailed(err);
    }
  }

  async lookup(user: string): Promise<SessionEntry[]> {
    const now = this.lookupNow(user);
    if (now) return now;
    let l = this.loading.get(user);
    if (!l) {
      const promise = this.load(user);
      this.loading.set(user, (l = { promise, deltas: [] }));
    }
    return l.promise;
  }

  /**
   * The user's entries as Redis holds them now (one HGETALL, the cache left
   * alone; this node's own sessions from memory): for a decision that must
   * see a bind another node finished a moment ago, before its delta arrives.
   */
  async lookupFresh(user: string): Promise<SessionEntry[]> {
    const own = this.own.get(user);
    let entries: SessionEntry[];
    try {
      const h = await this.bus.pub.hgetall(this.userKey(user));
      entries = Object.values(h).map((v) => JSON.parse(v) as SessionEntry);
    } catch {
      return own ? Array.from(own.values()) : [];
    }
    const out = entries.filter((e) => e.node !== this.bus.nodeId);
    for (const e of own?.values() ?? []) out.push(e);
    return out;
  }

  lookupNow(user: string): SessionEntry[] | undefined {
    const m = this.cache.get(user);
    if (m) return Array.from(m.values());
    if (!this.bus.connected) {
      // Redis away: what this node knows for sure, its own sessions.
      const own = this.own.get(user);
      return own ? Array.from(own.values()) : [];
    }
    return undefined;
  }

  async byNode(node: string): Promise<SessionEntry[]> {
    const list = (await this.bus.pub.eval(
      BY_NODE,
      1,
      this.nodeKey(node),
      this.bus.key('s', ''),
      '0',
    )) as string[];
    return list.map((v) => JSON.parse(v) as SessionEntry);
  }

  async residents(node: string): Promise<{ user: string; resource: string }[]> {
    const fields = await this.bus.pub.hkeys(this.nodeKey(node));
    const out: { user: string; resource: string }[] = [];
    for (const f of fields) {
      const nl = f.indexOf('\n');
      if (nl > 0) out.push({ user: f.slice(0, nl), resource: f.slice(nl + 1) });
    }
    return out;
  }

  async purgeNode(node: string): Promise<number> {
    const list = (await this.bus.pub.eval(
      BY_NODE,
      1,
      this.nodeKey(node),
      this.bus.key('s', ''),
      '1',
    )) as string[];
    const d: Delta = { op: 'purge', node };
    this.apply(d);
    await this.bus.broadcastRemote('reg', d).catch(() => {});
    return list.length;
  }

  /** Sessions this node holds (heartbeat, status). */
  get localCount(): number {
    return this.ownCount;
  }

  private async load(user: string): Promise<SessionEntry[]> {
    let entries: SessionEntry[];
    try {
      const h = await this.bus.pub.hgetall(this.userKey(user));
      entries = Object.values(h).map((v) => JSON.parse(v) as SessionEntry);
    } catch {
      // Redis away: answer with what is known for sure and cache nothing.
      this.loading.delete(user);
      const own = this.own.get(user);
      return own ? Array.from(own.values()) : [];
    }
    const l = this.loading.get(user);
    this.loading.delete(user);
    const m = new Map(entries.map((e) => [e.resource, e]));
    // This node's own view of its own sessions wins over what Redis said.
    for (const [r, e] of m)
      if (e.node === this.bus.nodeId && this.own.get(user)?.get(r)?.sessionId !== e.sessionId)
        m.delete(r);
    for (const e of this.own.get(user)?.values() ?? []) m.set(e.resource, e);
    this.cacheSet(user, m);
    for (const d of l?.deltas ?? []) this.apply(d);
    return Array.from(this.cache.get(user)?.values() ?? m.values());
  }

  private cacheSet(user: string, m: Map<string, SessionEntry>): void {
    this.cache.delete(user);
    this.cache.set(user, m);
    while (this.cache.size > this.cacheUsers) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }

  private onBus(msg: BusMessage): void {
    if (msg.from === this.bus.nodeId) return; // applied when made
    if (msg.type === 'reg') this.apply(msg.payload as Delta);
    else if (msg.type === 'node-down')
      this.apply({ op: 'purge', node: (msg.payload as { node: string }).node });
  }

  /** Apply a change to the cache (and to loads in flight, after their answer). */
  private apply(d: Delta): void {
    if (d.op === 'purge' || d.op === 'sync') {
      if (d.node === this.bus.nodeId) return; // our own sessions are ours to say
      for (const l of this.loading.values()) l.deltas.push(d);
      for (const m of this.cache.values())
        for (const [r, e] of m) if (e.node === d.node) m.delete(r);
      if (d.op === 'sync') for (const e of d.entries) this.cache.get(e.user)?.set(e.resource, e);
      return;
    }
    const user = d.op === 'put' ? d.e.user : d.u;
    this.loading.get(user)?.deltas.push(d);
    const m = this.cache.get(user);
    if (!m) return;
    if (d.op === 'put') m.set(d.e.resource, d.e);
    else if (m.get(d.r)?.sessionId === d.s) m.delete(d.r);
  }

  private setOwn(e: SessionEntry): void {
    let m = this.own.get(e.user);
    if (!m) this.own.set(e.user, (m = new Map()));
    if (!m.has(e.resource)) this.ownCount++;
    m.set(e.resource, e);
  }

  private deleteOwn(user: string, resource: string): void {
    const m = this.own.get(user);
    if (!m?.delete(resource)) return;
    this.ownCount--;
    if (m.size === 0) this.own.delete(user);
  }

  private writeFailed(err: unknown): void {
    if (!this.dirty)
      this.bus.log.warn(
        { err: (err as Error)?.message },
        'cluster: registry write failed; this node writes its sessions again when Redis is back',
      );
    this.dirty = true;
    this.retryLater();
  }

  /**
   * Redis still looks up (a command timed out: a silent partition, shorter
   * than the heartbeat limit, that no reconnect will follow): write the
   * sessions again after a beat, and again after each failure, until it
   * takes. After an outage the reconnect does it.
   */
  private retryLater(): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.dirty && this.bus.connected) void this.resync();
    }, this.bus.heartbeatMs);
    this.retry.unref();
  }

  /**
   * After an outage: drop the cache (deltas may have been missed) and write
   * this node's sessions again, replacing whatever Redis holds for it.
   */
  async resync(): Promise<void> {
    this.cache.clear();
    this.dirty = false;
    const me = this.bus.nodeId;
    const mine: SessionEntry[] = [];
    for (const m of this.own.values()) for (const e of m.values()) mine.push(e);
    try {
      // One transaction: nobody reads this node's sessions half written.
      const tx = this.bus.pub
        .multi()
        .eval(BY_NODE, 1, this.nodeKey(me), this.bus.key('s', ''), '1');
      for (const e of mine) {
        tx.hset(this.userKey(e.user), e.resource, JSON.stringify(e));
        tx.hset(this.nodeKey(me), `${e.user}\n${e.resource}`, e.sessionId);
      }
      const res = await tx.exec();
      const failed = res?.find(([err]) => err);
      if (!res || failed) throw failed?.[0] ?? new Error('transaction aborted');
      // Other nodes' caches: whatever they had of ours is replaced, in one delta.
      await this.bus.broadcastRemote('reg', {
        op: 'sync',
        node: me,
        entries: mine,
      } satisfies Delta);
      this.bus.log.info(
        { sessions: mine.length, replaced: (res[0][1] as string[]).length },
        'cluster: registry written again after the outage',
      );
    } catch (err) {
      this.dirty = true;
      this.retryLater();
      this.bus.log.warn(
        { err: (err as Error)?.message },
        'cluster: registry resync failed; retrying after a heartbeat, or at the next reconnect',
      );
    }
  }
}
