/**
 * Storage interfaces. The broker imports only this file; bin/ picks a backend
 * (embedded by default, mongodb for clusters). Every backend passes the one
 * contract suite in storage/test/contract.ts.
 *
 * Values are plain JSON-serialisable data. Keys are strings.
 */

/** A named key-value store (accounts, rosters, settings…). */
export interface KeyValueStore<T> {
  get(key: string): Promise<T | undefined>;
  /** Durable when the promise resolves: survives kill -9 of the process. */
  put(key: string, value: T): Promise<void>;
  delete(key: string): Promise<void>;
  /** Keys in ascending order, optionally only those starting with prefix. */
  keys(prefix?: string): Promise<string[]>;
  /**
   * Keys and values in ascending key order, only those starting with prefix.
   * Lets a caller keep one record per item (a roster item, a pending request)
   * under a common prefix, so a write costs one record, not the whole set.
   */
  entries(prefix: string): Promise<[string, T][]>;
  /**
   * Several puts and deletes of this store in one write. Atomic where the
   * backend can (embedded: one LevelDB batch; memory); MongoDB applies them in
   * order without a transaction, so a crash may leave a prefix of them.
   */
  batch(ops: KeyValueOp<T>[]): Promise<void>;
}

/** One write of {@link KeyValueStore.batch}. */
export type KeyValueOp<T> = { type: 'put'; key: string; value: T } | { type: 'del'; key: string };

/** One archived item of a conversation timeline. */
export interface ArchiveRecord<T = unknown> {
  /** conversation id: a pair of users or a room */
  conversation: string;
  /** strictly increasing within the conversation, starting at 1 */
  seq: number;
  /** ms since the epoch */
  timestamp: number;
  /** owners who may read it (both parties of a 1:1 chat, or the room) */
  owners: string[];
  /** the other party / sender, for filtering */
  with: string;
  /** a stable id, unique within the conversation */
  id: string;
  /** the serialised envelope */
  value: T;
}

export interface ArchiveQuery {
  /** only records with seq > afterSeq */
  afterSeq?: number;
  /** only records with seq < beforeSeq */
  beforeSeq?: number;
  /** only records with timestamp >= start */
  start?: number;
  /** only records with timestamp <= end */
  end?: number;
  /** at most this many records (default 100) */
  limit?: number;
  /** newest first (then `limit` keeps the newest) */
  reverse?: boolean;
}

export interface ArchivePage<T> {
  records: ArchiveRecord<T>[];
  /** true when no more records match beyond this page */
  complete: boolean;
}

/** Append-only timelines with a per-conversation sequence. */
export interface ArchiveStore<T = unknown> {
  /**
   * Append atomically, assigning the next seq of the conversation. Two
   * concurrent appends to one conversation get distinct, increasing seqs.
   * Resolves to the record with its seq; it may share objects (value,
   * owners) with `record`, so a caller that changes one changes the other.
   */
  append(record: Omit<ArchiveRecord<T>, 'seq'>): Promise<ArchiveRecord<T>>;
  /** Records of one conversation; never scans other conversations. */
  query(conversation: string, query?: ArchiveQuery): Promise<ArchivePage<T>>;
  /** Highest seq of the conversation, 0 when empty. */
  lastSeq(conversation: string): Promise<number>;
  /** Conversations an owner takes part in. */
  conversations(owner: string): Promise<string[]>;
  /** Delete records older than the timestamp; returns how many. */
  prune(olderThan: number): Promise<number>;
  /** Delete every record an owner takes part in (account removal). */
  removeOwner(owner: string): Promise<void>;
}

export interface QueueItem<T> {
  id: string;
  value: T;
}

/** Per-owner FIFO queues (offline messages, pending subscription requests). */
export interface QueueStore<T = unknown> {
  /** Append; durable when resolved. Returns the item id (increasing per owner). */
  push(owner: string, value: T): Promise<string>;
  /** Oldest first. */
  list(owner: string, limit?: number): Promise<QueueItem<T>[]>;
  remove(owner: string, ids: string[]): Promise<void>;
  count(owner: string): Promise<number>;
  /** Size of an owner's queued items, in characters of their JSON (the per-user byte bound of the offline queue). */
  bytes(owner: string): Promise<number>;
  clear(owner: string): Promise<void>;
}

export interface Storage {
  readonly name: string;
  open(): Promise<void>;
  close(): Promise<void>;
  /** true when the backend answers (for /readyz) */
  ping(): Promise<boolean>;
  kv<T>(name: string): KeyValueStore<T>;
  archive<T>(name: string): ArchiveStore<T>;
  queue<T>(name: string): QueueStore<T>;
}
