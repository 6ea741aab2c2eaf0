import { Redis, type RedisOptions } from 'ioredis';
import type {
  Advertise,
  BusMessage,
  BusObserver,
  ClusterBus,
  ClusterLogger,
  ClusterStatus,
  Peer,
} from '../types.ts';
import { Membership, RECONNECT_MAX_MS } from './membership.ts';
import { decodeFrame, encodeFrame, WIRE_VERSION } from './wire.ts';

export interface RedisBusOptions {
  /** redis://[user:password@]host:port[/db] or rediss:// */
  url: string;
  nodeId: string;
  /** key and channel prefix, so that several clusters can share one Redis */
  prefix?: string;
  /** ms between heartbeats; a node silent for `missedBeats` of them is dead */
  heartbeatMs?: number;
  missedBeats?: number;
  /** the software version, announced in the heartbeat */
  version?: string;
  log?: ClusterLogger;
  /** most bus messages in one frame (one PUBLISH) */
  maxBatch?: number;
}

/** A send found nobody listening on the target node's channel: the node is gone (or not yet reaped). */
export class NoReceiverError extends Error {
  /** PUBLISH counted no receiver: the message surely reached no node (cluster/types.ts, `ClusterBus.send`) */
  readonly undelivered = true;
  constructor(node: string) {
    super(`cluster node ${node} is not listening`);
  }
}

/** The bus is cut from Redis: nothing crosses nodes until it reconnects. */
export class BusDownError extends Error {
  /** true when the message was never handed to Redis (false: the connection went while it was on its way) */
  readonly undelivered: boolean;
  constructor(undelivered = true) {
    super('cluster bus: Redis unreachable');
    this.undelivered = undelivered;
  }
}

const silent: ClusterLogger = { info() {}, warn() {}, error() {}, debug() {} };

interface Batch {
  messages: [string, unknown][];
  done: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * The cluster bus on Redis pub/sub (docs/cluster.md): one publisher and one
 * subscriber connection per node, a channel per node (`<prefix>:node:<id>`)
 * and one for all (`<prefix>:all`). Messages to one channel sent in one turn
 * of the event loop leave as one frame (cluster/redis/wire.ts). Reconnects
 * with backoff; while Redis is away, sends fail at once (the router then
 * takes the offline path) and `members()` leaves this node out (`/readyz`).
 */
export class RedisBus implements ClusterBus {
  readonly nodeId: string;
  readonly prefix: string;
  readonly heartbeatMs: number;
  readonly missedBeats: number;
  readonly version: string;
  readonly log: ClusterLogger;
  /** client-facing addresses, announced in the heartbeat (a draining peer redirects its clients there) */
  advertised?: Advertise;
  /** the command connection (also used by the registry and membership) */
  readonly pub: Redis;
  private readonly sub: Redis;
  private readonly url: string;
  private readonly maxBatch: number;
  private readonly handlers: ((msg: BusMessage) => void)[] = [];
  private readonly downHandlers: ((node: string) => void | Promise<void>)[] = [];
  private readonly reconnectHandlers: ((info: { reaped: boolean }) => void)[] = [];
  private readonly observers: BusObserver[] = [];
  private readonly batches = new Map<string, Batch>();
  private flushScheduled = false;
  private readonly refused = new Set<string>();
  readonly membership: Membership;
  private up = false;
  /** set once a connection was lost; the next time both are ready is a reconnect */
  private lostSinceReady = false;
  private started = false;
  private lastReaped = 0;
  /** the subscriber holds both channels (set after each (re)subscription) */
  private subscribed = false;
  /** sessions on this node, announced in the heartbeat (set by the registry) */
  localSessions: () => number = () => 0;

  constructor(opts: RedisBusOptions) {
    this.nodeId = opts.nodeId;
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(this.nodeId))
      throw new Error(
        `cluster node id ${JSON.stringify(this.nodeId)}: 1 to 64 of A-Z a-z 0-9 . _ -`,
      );
    this.url = opts.url;
    this.prefix = opts.prefix ?? 'parley';
    this.heartbeatMs = opts.heartbeatMs ?? 5000;
    this.missedBeats = opts.missedBeats ?? 3;
    this.version = opts.version ?? '0.0.0-dev';
    this.log = opts.log ?? silent;
    this.maxBatch = opts.maxBatch ?? 256;
    const common: RedisOptions = {
      lazyConnect: true,
      // Reconnect for ever, backing off to 2 s (with jitter, so nodes do not reconnect in step).
      retryStrategy: (times) =>
        Math.min(50 * 2 ** Math.min(times, 6), RECONNECT_MAX_MS - 100) +
        Math.floor(Math.random() * 100),
      // A partition without a reset: fail the command rather than wait for TCP.
      commandTimeout: Math.max(2000, this.heartbeatMs),
      keepAlive: 10_000,
    };
    // Commands fail at once while disconnected (no offline queue): callers fall back, nothing piles up.
    this.pub = new Redis(this.url, {
      ...common,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectionName: `parley:${this.nodeId}:pub`,
    });
    this.sub = new Redis(this.url, { ...common, connectionName: `parley:${this.nodeId}:sub` });
    for (const c of [this.pub, this.sub]) {
      c.on('error', (err: Error) =>
        this.log.debug({ err: err.message }, 'cluster: redis connection error'),
      );
      c.on('close', () => {
        if (c === this.sub) this.subscribed = false;
        this.connectionChanged();
      });
      c.on('end', () => this.connectionChanged());
    }
    this.pub.on('ready', () => this.connectionChanged());
    // Up only once the channels are subscribed again: a delta published before that would be
    // missed, and a registry answer cached in that window would stay wrong.
    this.sub.on('ready', () => {
      if (!this.started) return;
      this.sub.subscribe(this.channel(this.nodeId), this.broadcastChannel).then(
        () => {
          this.subscribed = true;
          this.connectionChanged();
        },
        () => {},
      );
    });
    this.sub.on('messageBuffer', (channel: Buffer, message: Buffer) =>
      this.receive(channel, message),
    );
    this.membership = new Membership(this);
  }

  channel(node: string): string {
    return `${this.prefix}:node:${node}`;
  }

  get broadcastChannel(): string {
    return `${this.prefix}:all`;
  }

  key(...parts: string[]): string {
    return [this.prefix, ...parts].join(':');
  }

  /** `SET <prefix>:claim:<key> 1 NX PX <ttl>`: set only by the first asker while none holds (ClusterBus.claim). */
  async claim(key: string, ttlMs: number): Promise<boolean> {
    const ms = Math.max(1, Math.ceil(ttlMs));
    return (await this.pub.set(this.key('claim', key), this.nodeId, 'PX', ms, 'NX')) === 'OK';
  }

  /** Both connections are ready. */
  get connected(): boolean {
    return this.up;
  }

  async start(): Promise<void> {
    if (this.started) return;
    try {
      await this.pub.connect();
      await this.sub.connect();
      await this.sub.subscribe(this.channel(this.nodeId), this.broadcastChannel);
      this.subscribed = true;
    } catch (err) {
      this.pub.disconnect();
      this.sub.disconnect();
      throw new Error(
        `cluster: cannot reach Redis at ${redact(this.url)}: ${(err as Error).message}`,
      );
    }
    this.connectionChanged();
    await this.membership.join();
    this.started = true;
    this.log.info(
      {
        node: this.nodeId,
        redis: redact(this.url),
        wire: WIRE_VERSION,
        heartbeatMs: this.heartbeatMs,
      },
      'cluster: joined',
    );
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    // Before the heartbeat goes: the others stop routing to this node now, not at their next read.
    await this.broadcastRemote('node-left', { node: this.nodeId }).catch(() => {});
    await this.flush();
    await this.membership.leave();
    this.sub.disconnect();
    await this.pub.quit().catch(() => this.pub.disconnect());
    this.up = false;
  }

  /**
   * Drop both connections without leaving the cluster, as a process killed
   * with SIGKILL would: the other nodes find it dead by its heartbeats.
   */
  async abandon(): Promise<void> {
    this.started = false;
    await this.membership.halt();
    this.sub.disconnect();
    this.pub.disconnect();
  }

  send(node: string, type: string, payload: unknown): Promise<void> {
    if (node === this.nodeId) {
      this.dispatch({ from: this.nodeId, type, payload });
      return Promise.resolve();
    }
    return this.enqueue(this.channel(node), type, payload);
  }

  broadcast(type: string, payload: unknown): Promise<void> {
    // This node hears its own broadcast at once, Redis or not; its echo from Redis is skipped.
    this.dispatch({ from: this.nodeId, type, payload });
    return this.enqueue(this.broadcastChannel, type, payload);
  }

  /** To every other node (this one does not hear it). */
  broadcastRemote(type: string, payload: unknown): Promise<void> {
    return this.enqueue(this.broadcastChannel, type, payload);
  }

  onMessage(handler: (msg: BusMessage) => void): void {
    this.handlers.push(handler);
  }

  async members(): Promise<string[]> {
    return this.membership.live();
  }

  onNodeDown(handler: (node: string) => void | Promise<void>): void {
    this.downHandlers.push(handler);
  }

  onReconnect(handler: (info: { reaped: boolean }) => void): void {
    this.reconnectHandlers.push(handler);
  }

  observe(observer: BusObserver): void {
    this.observers.push(observer);
    observer.connected(this.up);
  }

  get draining(): boolean {
    return this.membership.state === 'draining';
  }

  drain(): void {
    this.membership.state = 'draining';
    this.membership.beatSoon();
    // Heard at once (the heartbeat's state is read about once a second): rooms move away from here.
    void this.broadcastRemote('node-draining', { node: this.nodeId }).catch(() => {});
  }

  advertise(addresses: Advertise): void {
    this.advertised = Object.keys(addresses).length ? addresses : undefined;
    if (this.started) this.membership.beatSoon();
  }

  peers(): Promise<Peer[]> {
    return this.membership.peers();
  }

  status(): Promise<ClusterStatus> {
    return this.membership.status();
  }

  /** Run the node-down handlers (membership, on the node holding the reap lock). */
  async nodeDown(node: string): Promise<void> {
    for (const h of this.downHandlers) await h(node);
  }

  nodesSeen(n: number): void {
    for (const o of this.observers) o.nodes(n);
  }

  /** Tell the reconnect listeners that messages may have been missed (and whether this node was reaped). */
  resynced(reaped = false): void {
    if (reaped) {
      // Learnt twice (our beat found us unlisted, and the reaper's 'node-down'): act once.
      if (Date.now() - this.lastReaped < this.heartbeatMs * this.missedBeats) return;
      this.lastReaped = Date.now();
      this.log.warn(
        { node: this.nodeId },
        'cluster: this node was declared dead while it could not beat; registering its sessions again',
      );
    }
    for (const h of this.reconnectHandlers) {
      try {
        h({ reaped });
      } catch (err) {
        this.log.error({ err }, 'cluster: reconnect handler failed');
      }
    }
  }

  private connectionChanged(): void {
    const up = this.pub.status === 'ready' && this.sub.status === 'ready' && this.subscribed;
    if (up === this.up) return;
    this.up = up;
    for (const o of this.observers) o.connected(up);
    if (!up) {
      if (this.started)
        this.log.warn(
          { redis: redact(this.url) },
          'cluster: Redis connection lost; reconnecting (cross-node messages go to offline storage meanwhile)',
        );
      this.lostSinceReady = true;
      return;
    }
    if (this.lostSinceReady && this.started) {
      this.lostSinceReady = false;
      this.log.info({ redis: redact(this.url) }, 'cluster: Redis connection back');
      this.membership.cameBack();
      this.membership.beatSoon();
      this.resynced();
    }
  }

  private enqueue(channel: string, type: string, payload: unknown): Promise<void> {
    if (!this.up) return Promise.reject(new BusDownError());
    let b = this.batches.get(channel);
    if (!b) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // Callers that drop the promise must not crash the process with an unhandled rejection.
      done.catch(() => {});
      this.batches.set(channel, (b = { messages: [], done, resolve, reject }));
    }
    b.messages.push([type, payload]);
    for (const o of this.observers) o.message('out');
    if (b.messages.length >= this.maxBatch) {
      this.batches.delete(channel);
      this.publish(channel, b);
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => void this.flush());
    }
    return b.done;
  }

  private async flush(): Promise<void> {
    this.flushScheduled = false;
    const all = [...this.batches];
    this.batches.clear();
    await Promise.all(all.map(([channel, b]) => this.publish(channel, b)));
  }

  private async publish(channel: string, b: Batch): Promise<void> {
    try {
      const receivers = await this.pub.publish(channel, encodeFrame(this.nodeId, b.messages));
      if (receivers === 0 && channel !== this.broadcastChannel)
        b.reject(new NoReceiverError(channel.slice(this.channel('').length)));
      else b.resolve();
    } catch (err) {
      b.reject(this.up ? err : new BusDownError(false)); // it may have reached Redis
    }
  }

  private receive(channel: Buffer, message: Buffer): void {
    const d = decodeFrame(message);
    if (!d.ok) {
      const key = `${d.from ?? '?'}/${d.reason}/${d.version ?? ''}`;
      if (!this.refused.has(key)) {
        this.refused.add(key);
        if (d.reason === 'version') {
          this.log.error(
            { from: d.from, theirs: d.version, ours: WIRE_VERSION },
            'cluster: refusing bus frames of another wire version (finish the rolling upgrade; see docs/cluster.md)',
          );
        } else {
          this.log.warn(
            { channel: channel.toString(), from: d.from },
            'cluster: ignoring a message on a bus channel that is not a Parley frame',
          );
        }
      }
      return;
    }
    const { frame } = d;
    if (frame.from === this.nodeId) return; // our own broadcast, already dispatched locally
    for (const [type, payload] of frame.messages) {
      // Reaped while paused (the reaper got there before our next beat): we are alive, say so.
      if (
        type === 'node-down' &&
        (payload as { node?: string })?.node === this.nodeId &&
        this.started
      )
        this.resynced(true);
    }
    const latency = Date.now() - frame.sentAt;
    for (const o of this.observers) o.latency(latency);
    for (const [type, payload] of frame.messages) {
      for (const o of this.observers) o.message('in');
      this.dispatch({ from: frame.from, type, payload }, true);
    }
  }

  private dispatch(msg: BusMessage, now = false): void {
    const run = () => {
      for (const h of this.handlers) {
        try {
          h(msg);
        } catch (err) {
          this.log.error({ err, type: msg.type, from: msg.from }, 'cluster: bus handler failed');
        }
      }
    };
    // Asynchronous like a remote message, so callers never depend on re-entrancy.
    if (now) run();
    else queueMicrotask(run);
  }
}

/** The URL without its password, for logs. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis://(unparsable url)';
  }
}
