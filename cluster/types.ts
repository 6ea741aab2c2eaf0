/**
 * Cluster interfaces. The router goes through these even on a single node
 * (cluster/local), so the Redis backend slots in without touching it.
 */

/** One online session as the whole cluster sees it. */
export interface SessionEntry {
  /** bare user address, e.g. alice@example.com */
  user: string;
  resource: string;
  node: string;
  sessionId: string;
  protocol: string;
  priority: number;
  /** true once it sent available presence */
  available: boolean;
  /** ms since the epoch when it was bound (absent from nodes of older releases) */
  since?: number;
}

export interface SessionRegistry {
  put(entry: SessionEntry): Promise<void>;
  remove(user: string, resource: string, sessionId: string): Promise<void>;
  /** The user's entries on every node; callers read them and must not change them. */
  lookup(user: string): Promise<SessionEntry[]>;
  /**
   * The same answer as {@link lookup} when the registry has it at hand (an
   * in-process registry always does), else undefined: the router's fast path
   * for every routed message, without a promise.
   */
  lookupNow?(user: string): SessionEntry[] | undefined;
  /**
   * The same answer as {@link lookup}, read from the shared backend now
   * rather than from a cache that may lag a bind on another node by a moment.
   */
  lookupFresh?(user: string): Promise<SessionEntry[]>;
  /** Sessions of a node, e.g. to purge a dead node. */
  byNode(node: string): Promise<SessionEntry[]>;
  /**
   * Every address the node registered, including those another node has
   * registered since under the same full address (a device that reconnected
   * elsewhere with the same resource before the node was reaped); read before
   * `purgeNode`.
   */
  residents?(node: string): Promise<{ user: string; resource: string }[]>;
  purgeNode(node: string): Promise<number>;
}

/** A message from one node to another; payload is JSON. */
export interface BusMessage {
  from: string;
  type: string;
  payload: unknown;
}

export interface ClusterBus {
  readonly nodeId: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Deliver to one node (possibly this one). Rejects when it could not; an
   * error with `undelivered: true` says the message surely reached no node
   * (nobody listened on that node's channel, or the backend was away before
   * it was sent), so the caller may send it again without running it twice.
   */
  send(node: string, type: string, payload: unknown): Promise<void>;
  /** Deliver to every node, this one included. */
  broadcast(type: string, payload: unknown): Promise<void>;
  onMessage(handler: (msg: BusMessage) => void): void;
  /** Live nodes. */
  members(): Promise<string[]>;
  /**
   * Called with the id of a node found dead. With several nodes, only the one
   * node that takes the reap lock runs the handlers (cluster/redis/membership.ts),
   * and the dead node stays listed until every handler has settled.
   */
  onNodeDown(handler: (node: string) => void | Promise<void>): void;
  /**
   * A claim on `key` for `ttlMs`, cluster-wide: true for the one caller that
   * asks while no claim on the key holds, false for every other until the
   * first expires (so something is done once per period by one node: a push
   * notification per burst). Rejects when the backend is unreachable; the
   * caller decides whether to go ahead. Keys are the callers' own names.
   */
  claim(key: string, ttlMs: number): Promise<boolean>;
  /** True once this node drains: `/readyz` says not ready, `parley cluster status` shows it. */
  readonly draining?: boolean;
  /** Start draining (announced in the heartbeat). */
  drain?(): void;
  /** Client-facing addresses of this node, announced from the next heartbeat on. */
  advertise?(addresses: Advertise): void;
  /**
   * The other live nodes that are not draining, with the client-facing
   * addresses they advertise (`cluster.advertise`): where a draining node
   * sends its clients. Absent on a single node.
   */
  peers?(): Promise<Peer[]>;
  /** Nodes, their sessions and the backend's health (`parley cluster status`); absent on a single node. */
  status?(): Promise<ClusterStatus>;
  /** Counters and timings for /metrics; absent on a single node. */
  observe?(observer: BusObserver): void;
  /**
   * Called after the backend came back from an outage during which messages
   * between nodes may have been lost (the registry resynchronises itself);
   * `reaped`: the other nodes declared this one dead meanwhile (they told its
   * users' contacts it was gone).
   */
  onReconnect?(handler: (info: { reaped: boolean }) => void): void;
}

/**
 * Client-facing addresses a node advertises (`cluster.advertise`): `xmpp`
 * (STARTTLS port) and `xmpps` (direct TLS) as host[:port] with an IPv6
 * address in brackets, `websocket` as a ws:// or wss:// URI.
 */
export interface Advertise {
  xmpp?: string;
  xmpps?: string;
  websocket?: string;
}

/** A live, non-draining other node (ClusterBus.peers). */
export interface Peer {
  id: string;
  sessions: number;
  advertise: Advertise;
}

/** One node as the cluster sees it. */
export interface NodeStatus {
  id: string;
  /** ms since its last heartbeat, by the backend's clock */
  lastBeatAgoMs: number;
  /** its local sessions at its last heartbeat */
  sessions: number;
  /** the bus wire version it speaks */
  wire: number;
  /** its software version */
  version: string;
  startedAt: number;
  state: 'up' | 'draining';
  /** the client-facing addresses it advertises (`cluster.advertise`) */
  advertise?: Advertise;
}

export interface ClusterStatus {
  /** this node */
  node: string;
  backend: string;
  /** the backend is reachable from this node */
  connected: boolean;
  /** the backend's own health figures (Redis: version, memory, clients) */
  health: Record<string, string | number>;
  nodes: NodeStatus[];
}

/** What a bus reports to /metrics. */
export interface BusObserver {
  /** a bus message (not a frame) sent or received */
  message(direction: 'in' | 'out'): void;
  /** ms from publish on one node to receipt on another */
  latency(ms: number): void;
  /** live nodes seen at a heartbeat */
  nodes(count: number): void;
  /** the backend's reachability changed */
  connected(up: boolean): void;
}

/** The logging calls a cluster backend makes (pino's shape); cluster/ imports nothing of the broker. */
export interface ClusterLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/**
 * What the broker gets from bin/: a bus and a registry (cluster/local.ts on
 * one node, cluster/redis with `cluster.redis`). Sequence numbers are not
 * here: the shared store assigns them atomically (docs/cluster.md).
 */
export interface Cluster {
  bus: ClusterBus;
  registry: SessionRegistry;
  /**
   * Storable messages handed to another node during the last this-many ms
   * are kept (references), and queued again when that node is declared dead
   * (docs/cluster.md, "Node loss"); 0 or absent: not at all.
   */
  deathReplayMs?: number;
  /** at most this many kept per other node (the oldest go first) */
  deathReplayMax?: number;
  /**
   * A room's requests whose home node could not be reached are held (in
   * order) and run at the room's next home, for at most this many ms
   * (docs/cluster.md, "Rooms"); 0 or absent: bounced at once.
   */
  roomHoldMs?: number;
  /** at most this many held room requests on this node (past it: resource-constraint) */
  roomHoldMax?: number;
}
