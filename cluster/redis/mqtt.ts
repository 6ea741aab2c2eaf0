import { Redis, type RedisOptions } from 'ioredis';
import MQEmitterRedis from 'mqemitter-redis';
import type { ClusterLogger } from '../types.ts';
import { redact } from './bus.ts';

/**
 * aedes' fan-out across the cluster (docs/cluster.md, "Plain MQTT topics"):
 * mqemitter-redis, with the Redis channel names it would use changed.
 *
 * mqemitter-redis as shipped names each Redis channel after the MQTT topic
 * itself and turns a filter's `+` and `#` into `*` of a Redis PSUBSCRIBE
 * pattern, leaving the rest of the filter as it is. On the Redis of the
 * cluster bus that would (1) mix MQTT topics with the bus's channels and
 * another cluster's, and (2) hand Redis' glob the topic's own `*`, `?`,
 * `[`, `]` and `\`: a filter `[+` or `\#` would be a pattern nobody meant.
 * Here:
 *
 * - every channel is `<prefix>:mqtt:<topic>` (the cluster prefix has no `:`,
 *   so no pattern of one cluster reaches another's channels, nor its own
 *   bus's `<prefix>:node:…` and `<prefix>:all`);
 * - a filter without wildcards is a SUBSCRIBE to exactly its channel;
 * - a filter with wildcards is a PSUBSCRIBE whose literal levels have every
 *   glob character escaped, `+` is `*` and a trailing `/#` is `*` (it also
 *   matches the parent level [MQTT-4.7.1-2]). Redis' `*` also crosses `/`,
 *   so a pattern may bring more than the filter matches: what arrives is
 *   matched again, by MQTT's rules, by the local mqemitter (qlobber), and
 *   each client's ACL is applied again when aedes forwards (authorizeForward).
 *
 * A message goes to Redis once and comes back to every node that has a
 * matching subscription, this one included; mqemitter-redis drops a copy it
 * already had (a node subscribed to both `a/b` and `a/+` gets it twice from
 * Redis). Topics for which `local(topic)` holds never reach Redis (aedes'
 * park for consumed packets, per-node `$SYS/broker/` statistics). While
 * Redis is away a publish reaches this node's subscribers only, and a new
 * subscription waits for Redis before it is acknowledged.
 */

type Listener = (message: Message, done: () => void) => void;
export interface Message {
  topic: string;
  [k: string]: unknown;
}

/** The parts of mqemitter-redis (mqemitter-redis.js, 7.2.1) this subclass relies on. */
interface Internals {
  subConn: Redis;
  _topics: Record<string, number>;
  _opts: { wildcardOne: string; wildcardSome: string };
  closed?: boolean;
  closing?: boolean;
  _on(topic: string, cb: Listener): void;
  _removeListener(topic: string, cb: Listener): void;
  _emit(msg: Message, cb?: (err?: Error) => void): void;
  _close(cb: () => void): void;
  _containsWildcard(topic: string): boolean;
  state: NodeJS.EventEmitter;
}

/** Redis' glob specials [string matching in Redis' util.c]: escaped with a backslash. */
const GLOB = /[*?[\]\\]/g;
export function globEscape(s: string): string {
  return s.replace(GLOB, '\\$&');
}

/** The channel of an MQTT topic name (and of a filter without wildcards). */
export function topicChannel(prefix: string, topic: string): string {
  return `${prefix}:mqtt:${topic}`;
}

/**
 * The PSUBSCRIBE pattern of a filter with wildcards: it matches every
 * channel of a topic the filter matches [MQTT-4.7.1], and no channel outside
 * this cluster's MQTT namespace whatever the filter holds.
 */
export function filterPattern(prefix: string, filter: string): string {
  const levels = filter.split('/');
  let out = '';
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l === '#') {
      out += '*'; // [MQTT-4.7.1-2] "a/#" also matches "a": no separator before it
      break;
    }
    if (i > 0) out += '/';
    out += l === '+' ? '*' : globEscape(l); // [MQTT-4.7.1-3] one level, or more: re-matched locally
  }
  return globEscape(topicChannel(prefix, '')) + out;
}

const Base = MQEmitterRedis as unknown as new (opts: object) => object;

export interface ClusterMqOptions {
  url: string;
  /** the cluster prefix (cluster.prefix) */
  prefix: string;
  nodeId: string;
  /** messages delivered in parallel (aedes `concurrency`) */
  concurrency?: number;
  /** topics kept on this node (never sent to Redis) */
  local?: (topic: string) => boolean;
  log?: ClusterLogger;
}

class ClusterMq extends Base {
  private readonly prefix: string;
  private readonly local: (topic: string) => boolean;
  private readonly log?: ClusterLogger;
  private failing = false;

  private readonly redisPub: Redis;

  constructor(opts: ClusterMqOptions & { subConn: Redis; pubConn: Redis }) {
    const pub = opts.pubConn;
    // mqemitter-redis publishes on `msg.topic`: it gets a publisher that puts the topic in its channel.
    const facade = {
      publish: (topic: string, body: Buffer) => pub.publish(topicChannel(opts.prefix, topic), body),
      on(event: string, fn: (...a: unknown[]) => void) {
        pub.on(event, fn);
        return facade;
      },
    };
    super({ subConn: opts.subConn, pubConn: facade, concurrency: opts.concurrency });
    this.redisPub = pub;
    this.prefix = opts.prefix;
    this.local = opts.local ?? (() => false);
    this.log = opts.log;
    // Connection errors are the bus's to report; without a listener they would end the process.
    this.self.state.on('error', () => {});
  }

  private get self(): Internals {
    return this as unknown as Internals;
  }

  /** Redis channel or pattern of a filter (mqemitter-redis calls this in on/removeListener). */
  _subTopic(topic: string): string {
    return this.self._containsWildcard(topic)
      ? filterPattern(this.prefix, topic)
      : topicChannel(this.prefix, topic);
  }

  /** What came from Redis: only a packet of the expected shape reaches the local fan-out. */
  _emit(msg: Message, cb?: (err?: Error) => void): void {
    if (!msg || typeof msg !== 'object' || typeof msg.topic !== 'string') {
      cb?.();
      return;
    }
    (MQEmitterRedis.prototype as unknown as Internals)._emit.call(this, msg, cb);
  }

  emit(msg: Message, done: (err?: Error) => void = () => {}): void {
    const self = this.self;
    if (this.local(msg.topic) || self.closed) return self._emit(msg, done);
    (MQEmitterRedis.prototype as unknown as { emit: Internals['_emit'] }).emit.call(
      this,
      msg,
      (err) => {
        if (!err) {
          this.failing = false;
          return done();
        }
        // Redis away: this node's subscribers still get it, as the core's local traffic goes on.
        if (!this.failing)
          this.log?.warn(
            { err: err.message },
            'cluster: plain MQTT topics reach this node only until Redis is back',
          );
        this.failing = true;
        self._emit(msg, done);
      },
    );
  }

  /**
   * mqemitter-redis 7.2.1 leaves a channel subscribed after its last
   * listener goes when no other filter matches the topic: here every last
   * listener unsubscribes its channel or pattern.
   */
  removeListener(topic: string, cb: Listener, done?: () => void): this {
    const self = this.self;
    const sub = this._subTopic(topic);
    const finish = () => {
      if (done) setImmediate(done);
    };
    self._removeListener(topic, cb);
    if (--self._topics[sub] > 0) {
      finish();
      return this;
    }
    delete self._topics[sub];
    const conn = self.subConn;
    (self._containsWildcard(topic) ? conn.punsubscribe(sub) : conn.unsubscribe(sub)).then(
      finish,
      finish,
    );
    return this;
  }

  /** Close without waiting for Redis: a node stopping while Redis is away must not hang. */
  close(cb: () => void = () => {}): this {
    const self = this.self;
    if (self.closed || self.closing) {
      cb();
      return this;
    }
    self.closing = true;
    self.subConn.disconnect();
    this.redisPub.quit().catch(() => this.redisPub.disconnect());
    self._close(cb);
    return this;
  }
}

/**
 * aedes' mqemitter for a cluster node (bin/ gives it to the MQTT adapter as
 * `mq`): two connections of its own (one subscribes, one publishes),
 * connected before it returns.
 */
export async function clusterMqEmitter(opts: ClusterMqOptions): Promise<unknown> {
  const common: RedisOptions = {
    lazyConnect: true,
    retryStrategy: (times) =>
      Math.min(50 * 2 ** Math.min(times, 6), 2000) + Math.floor(Math.random() * 100),
    keepAlive: 10_000,
  };
  // The publisher fails at once while disconnected (the message then stays on this node); the
  // subscriber queues SUBSCRIBEs until Redis is back, and ioredis subscribes again after a reconnect.
  const pubConn = new Redis(opts.url, {
    ...common,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectionName: `parley:${opts.nodeId}:mqtt-pub`,
  });
  const subConn = new Redis(opts.url, {
    ...common,
    connectionName: `parley:${opts.nodeId}:mqtt-sub`,
  });
  for (const c of [pubConn, subConn])
    c.on('error', (err: Error) =>
      opts.log?.debug({ err: err.message }, 'cluster: mqtt redis connection error'),
    );
  try {
    await pubConn.connect();
    await subConn.connect();
  } catch (err) {
    pubConn.disconnect();
    subConn.disconnect();
    throw new Error(
      `cluster: cannot reach Redis at ${redact(opts.url)} for MQTT: ${(err as Error).message}`,
    );
  }
  return new ClusterMq({ ...opts, pubConn, subConn });
}
