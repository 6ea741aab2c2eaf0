import type { Advertise, ClusterStatus, NodeStatus, Peer } from '../types.ts';
import type { RedisBus } from './bus.ts';
import { WIRE_VERSION } from './wire.ts';

/**
 * Membership by heartbeat (docs/cluster.md "Membership"). Each node writes
 * its beat into one sorted set, scored by the Redis server's clock (TIME in
 * the script), so no node's clock matters. A node whose beat is older than
 * `missedBeats` intervals is dead; the first live node to take the reap lock
 * (SET NX, one lock per dead node and beat) runs the node-down handlers
 * (purge its sessions, unavailable presence...) and only then removes it,
 * so a reaper that dies half-way leaves the work to the next one.
 */

// KEYS: nodes zset, info hash. ARGV: node id, info JSON, dead-after ms.
// Returns {now, added (1 when this node was not listed: new, or reaped while away), dead [id, score...], live [id...]}.
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local limit = now - tonumber(ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. limit, 'WITHSCORES')
local live = redis.call('ZRANGEBYSCORE', KEYS[1], limit, '+inf')
return {now, added, dead, live}
`;

// KEYS: nodes zset. ARGV: node id. Returns {now, score or false}.
const PEEK = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {now, redis.call('ZSCORE', KEYS[1], ARGV[1])}
`;

// KEYS: nodes zset, info hash. ARGV: node id, the score it was found dead with.
const REMOVE_IF_UNCHANGED = `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
`;

/** The longest wait between two reconnection attempts of a node's Redis connections (2 s, and up to 100 ms of jitter). */
export const RECONNECT_MAX_MS = 2100;

interface NodeInfo {
  wire: number;
  version: string;
  startedAt: number;
  sessions: number;
  state: 'up' | 'draining';
  /** where clients may connect to this node (`cluster.advertise`); a draining node sends its clients there */
  advertise?: Advertise;
}

export class Membership {
  private readonly bus: RedisBus;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private liveNodes: string[] = [];
  /** local time of the last heartbeat Redis accepted */
  private lastBeatOk = 0;
  /** local time before which this node reaps nobody (it has just come back: see cameBack) */
  private reapAfter = 0;
  private joined = false;
  private readonly startedAt = Date.now();
  state: 'up' | 'draining' = 'up';
  /** dead nodes this node is reaping now */
  private readonly reaping = new Set<string>();
  private readonly warnedWire = new Set<string>();

  constructor(bus: RedisBus) {
    this.bus = bus;
  }

  private get deadMs(): number {
    return this.bus.heartbeatMs * this.bus.missedBeats;
  }

  private get keys(): [string, string] {
    return [this.bus.key('nodes'), this.bus.key('nodeinfo')];
  }

  /**
   * Enter the cluster. A beat under this node's id that is still fresh is a
   * previous run killed a moment ago, or another process with the same id:
   * wait until it is stale (the former), refuse if it keeps beating (the
   * latter). A stale one is reaped like any dead node before this one beats.
   */
  async join(): Promise<void> {
    const id = this.bus.nodeId;
    let last: string | null = null;
    const deadline = Date.now() + this.deadMs + 2 * this.bus.heartbeatMs;
    for (;;) {
      const [now, score] = (await this.bus.pub.eval(PEEK, 1, this.keys[0], id)) as [
        number,
        string | null,
      ];
      if (score === null) break;
      if (now - Number(score) > this.deadMs) {
        this.bus.log.info(
          { node: id },
          'cluster: a previous run of this node left sessions behind; reaping them first',
        );
        await this.reap(id, score);
        break;
      }
      if (last !== null && score !== last) {
        throw new Error(
          `cluster: another live node already uses the node id ${JSON.stringify(id)} (it beat ${now - Number(score)} ms ago); give this one another --node-id`,
        );
      }
      if (Date.now() > deadline)
        throw new Error(
          `cluster: node id ${JSON.stringify(id)} is still listed as live; try again`,
        );
      last = score;
      await new Promise((r) => setTimeout(r, Math.max(50, this.bus.heartbeatMs / 2)));
    }
    await this.beat();
    if (this.lastBeatOk === 0) throw new Error('cluster: the first heartbeat failed');
    this.joined = true;
    this.timer = setInterval(() => this.beatSoon(), this.bus.heartbeatMs);
    this.timer.unref();
  }

  /** Stop beating, say nothing (RedisBus.abandon); settles once no beat is in flight. */
  async halt(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.joined = false;
    await this.beating;
  }

  async leave(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.beating;
    this.joined = false;
    this.liveNodes = [];
    const [nodes, info] = this.keys;
    await this.bus.pub
      .multi()
      .zrem(nodes, this.bus.nodeId)
      .hdel(info, this.bus.nodeId)
      .exec()
      .catch(() => {});
  }

  /**
   * This node could not beat for a while (Redis was away, or this node was
   * cut off or frozen). The other nodes' beats in Redis may be as old as its
   * own, for the same reason (a Redis restarted from its AOF holds every
   * node's last beat from before the outage), and they need up to one
   * reconnection delay and one heartbeat to beat again: reap nobody until
   * then, or the first node back would declare every other one dead.
   */
  cameBack(): void {
    const grace = Math.max(this.deadMs, RECONNECT_MAX_MS + 2 * this.bus.heartbeatMs);
    this.reapAfter = Math.max(this.reapAfter, Date.now() + grace);
  }

  /** Beat now unless a beat is in flight (also after a reconnect). */
  beatSoon(): void {
    if (!this.beating) this.beating = this.beat().finally(() => (this.beating = undefined));
  }

  /** Live nodes, this one included; empty while this node cannot beat (Redis away): `/readyz` says not ready. */
  live(): string[] {
    if (!this.bus.connected || Date.now() - this.lastBeatOk > this.deadMs) return [];
    return this.liveNodes;
  }

  private info(): string {
    const info: NodeInfo = {
      wire: WIRE_VERSION,
      version: this.bus.version,
      startedAt: this.startedAt,
      sessions: this.bus.localSessions(),
      state: this.state,
      ...(this.bus.advertised && { advertise: this.bus.advertised }),
    };
    return JSON.stringify(info);
  }

  private async beat(): Promise<void> {
    // A node that cannot hear its channel is not live: it does not beat (others may reap it).
    if (!this.bus.connected) return;
    let res: [number, number, string[], string[]];
    try {
      res = (await this.bus.pub.eval(
        HEARTBEAT,
        2,
        ...this.keys,
        this.bus.nodeId,
        this.info(),
        this.deadMs,
      )) as typeof res;
    } catch (err) {
      this.bus.log.debug({ err: (err as Error).message }, 'cluster: heartbeat failed');
      return;
    }
    const [, added, dead, live] = res;
    // No beat went through for longer than the limit, without a reconnection (a silent cut, a freeze).
    if (this.lastBeatOk !== 0 && Date.now() - this.lastBeatOk > this.deadMs) this.cameBack();
    this.lastBeatOk = Date.now();
    if (added === 1 && this.joined) {
      // Reaped while cut off: this node's sessions were purged and contacts told it went away.
      this.bus.resynced(true);
    }
    // Listed anew (a start, or back after a reap): nodes that heard it was dead forget that
    // even when no beat of theirs saw it missing (a restart within one heartbeat of the reap).
    if (added === 1)
      void this.bus.broadcastRemote('node-up', { node: this.bus.nodeId }).catch(() => {});
    this.liveNodes = live;
    this.bus.nodesSeen(live.length);
    if (this.joined) void this.checkWire(live);
    if (Date.now() < this.reapAfter) return;
    for (let i = 0; i < dead.length; i += 2) {
      const node = dead[i];
      if (node !== this.bus.nodeId && !this.reaping.has(node)) void this.reap(node, dead[i + 1]);
    }
  }

  /** Take the reap lock for `node` as last seen at `score`; the holder runs the node-down handlers. */
  private async reap(node: string, score: string): Promise<void> {
    this.reaping.add(node);
    try {
      const lockMs = Math.max(30_000, 10 * this.bus.heartbeatMs);
      const got = await this.bus.pub.set(
        this.bus.key('reap', node, score),
        this.bus.nodeId,
        'PX',
        lockMs,
        'NX',
      );
      if (got !== 'OK') return;
      this.bus.log.warn(
        { node, silentMs: this.deadMs },
        'cluster: node missed its heartbeats; declaring it dead',
      );
      await this.bus.nodeDown(node);
      // Said before the removal: a node that comes back is listed again only after it, so every
      // node hears its 'node-down' before its 'node-up' (one Redis server orders the publishes).
      await this.bus.broadcast('node-down', { node }).catch(() => {});
      const removed = await this.bus.pub.eval(REMOVE_IF_UNCHANGED, 2, ...this.keys, node, score);
      // It beat again meanwhile (a restart quicker than the reap): it is live, and its own beat
      // found it listed, so it says nothing; say it for it.
      if (removed !== 1) await this.bus.broadcast('node-up', { node }).catch(() => {});
    } catch (err) {
      this.bus.log.error(
        { err, node },
        'cluster: reaping a dead node failed; another node retries when the lock expires',
      );
    } finally {
      this.reaping.delete(node);
    }
  }

  /**
   * Live nodes other than this one that are not draining, as their last
   * heartbeat describes them (one HMGET): where a draining node sends its
   * clients. Read from Redis, so a node that began draining a moment ago is
   * already left out.
   */
  async peers(): Promise<Peer[]> {
    const others = this.live().filter((n) => n !== this.bus.nodeId);
    if (others.length === 0) return [];
    const infos = await this.bus.pub.hmget(this.keys[1], ...others);
    const out: Peer[] = [];
    others.forEach((id, i) => {
      const info = parseInfo(infos[i]);
      if (info && info.state !== 'draining')
        out.push({ id, sessions: info.sessions, advertise: info.advertise ?? {} });
    });
    return out;
  }

  /** A node of another wire version is logged once (their frames are refused: wire.ts). */
  private async checkWire(live: string[]): Promise<void> {
    const others = live.filter((n) => n !== this.bus.nodeId && !this.warnedWire.has(n));
    if (others.length === 0) return;
    try {
      const infos = await this.bus.pub.hmget(this.keys[1], ...others);
      others.forEach((n, i) => {
        const info = parseInfo(infos[i]);
        if (info && info.wire !== WIRE_VERSION) {
          this.warnedWire.add(n);
          this.bus.log.error(
            { node: n, theirs: info.wire, ours: WIRE_VERSION },
            'cluster: a node speaks another bus wire version; messages between us are refused until the upgrade is finished',
          );
        } else if (info) this.warnedWire.add(n);
      });
    } catch {
      // the next beat tries again
    }
  }

  async status(): Promise<ClusterStatus> {
    const [nodesKey, infoKey] = this.keys;
    const base: ClusterStatus = {
      node: this.bus.nodeId,
      backend: 'redis',
      connected: this.bus.connected,
      health: {},
      nodes: [],
    };
    if (!this.bus.connected) return base;
    const [[, time], [, nodes], [, infos], [, text]] = (await this.bus.pub
      .multi()
      .time()
      .zrange(nodesKey, 0, -1, 'WITHSCORES')
      .hgetall(infoKey)
      .info()
      .exec()) as [
      [unknown, [string, string]],
      [unknown, string[]],
      [unknown, Record<string, string>],
      [unknown, string],
    ];
    const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
    const out: NodeStatus[] = [];
    for (let i = 0; i < nodes.length; i += 2) {
      const info = parseInfo(infos[nodes[i]]);
      out.push({
        id: nodes[i],
        lastBeatAgoMs: now - Number(nodes[i + 1]),
        sessions: info?.sessions ?? 0,
        wire: info?.wire ?? 0,
        version: info?.version ?? '?',
        startedAt: info?.startedAt ?? 0,
        state: info?.state ?? 'up',
        ...(info?.advertise && { advertise: info.advertise }),
      });
    }
    base.nodes = out;
    base.health = redisHealth(text);
    return base;
  }
}

function parseInfo(text: string | null | undefined): NodeInfo | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as NodeInfo;
  } catch {
    return undefined;
  }
}

/** The INFO fields an operator wants at a glance. */
function redisHealth(info: string): Record<string, string | number> {
  const want = [
    'redis_version',
    'uptime_in_seconds',
    'connected_clients',
    'used_memory_human',
    'aof_enabled',
    'rdb_last_bgsave_status',
    'role',
  ];
  const out: Record<string, string | number> = {};
  for (const line of info.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0 && want.includes(line.slice(0, i))) {
      const v = line.slice(i + 1);
      out[line.slice(0, i)] = /^\d+$/.test(v) ? Number(v) : v;
    }
  }
  return out;
}
