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
  /** Sessions of a node, e.g. to purge a dead node. */
  byNode(node: string): Promise<SessionEntry[]>;
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
  /** Deliver to one node (possibly this one). */
  send(node: string, type: string, payload: unknown): Promise<void>;
  /** Deliver to every node, this one included. */
  broadcast(type: string, payload: unknown): Promise<void>;
  onMessage(handler: (msg: BusMessage) => void): void;
  /** Live nodes. */
  members(): Promise<string[]>;
  /** Called with the id of a node found dead. */
  onNodeDown(handler: (node: string) => void): void;
}

/** Atomic per-key counters (sequence numbers across nodes). */
export interface Cluster {
  bus: ClusterBus;
  registry: SessionRegistry;
}
