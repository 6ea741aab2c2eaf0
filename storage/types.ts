/**
 * Storage interfaces. The broker imports only this file; bin/ picks a backend
 * (embedded by default; redis or mongodb for clusters). Every backend passes
 * the one contract suite in storage/test/contract.ts.
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
   * backend can (embedded: one LevelDB batch; redis: one MULTI; memory); MongoDB applies them in
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
  /**
   * Owners whose own archive (the per-user view, {@link ArchiveStore.queryOwner})
   * lists this record; absent means every owner. A subset of `owners`: an
   * owner whose archiving preferences refuse the message keeps no entry.
   */
  archivedFor?: string[];
  /**
   * The record's archive id as a number, set by the store when at least one
   * owner archives it: unique within the store (so within each owner's
   * archive), increasing in append order, and at least `timestamp × 1000`
   * (docs/architecture.md, "Archive ids"). Its decimal form is the id clients
   * see (XEP-0359 stanza-id, XEP-0313 result id, MQTT `archiveId`).
   */
  pos?: number;
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

/**
 * A query of one owner's archive (XEP-0313 user archive). The filters narrow
 * the result set (and its `count`); `after`/`before` only page through it
 * (XEP-0059). Ids are archive ids (decimal {@link ArchiveRecord.pos}).
 */
export interface OwnerQuery {
  /** only records whose peer (the other party, or the sender in a one-owner archive) is this bare JID */
  with?: string;
  /** only records archived at or after this time (ms; the archive time is pos / 1000) */
  start?: number;
  /** only records archived at or before this time (ms) */
  end?: number;
  /** filter: only records after this id (exclusive) */
  afterId?: string;
  /** filter: only records before this id (exclusive) */
  beforeId?: string;
  /** filter: only these ids */
  ids?: string[];
  /** page: records after this id, oldest first */
  after?: string;
  /** page: records before this id; with `reverse` the newest of them first */
  before?: string;
  /** at most this many records (default 100) */
  limit?: number;
  /** newest first */
  reverse?: boolean;
  /** compute {@link OwnerPage.count} (its cost: docs/architecture.md) */
  count?: boolean;
}

/** A record of an owner's archive, with its archive id. */
export interface OwnerRecord<T> extends ArchiveRecord<T> {
  /** decimal archive id */
  archiveId: string;
  /** the archive time: pos / 1000, in ms */
  archivedAt: number;
}

export interface OwnerPage<T> {
  /** in iteration order: oldest first, newest first with `reverse` */
  records: OwnerRecord<T>[];
  /** true when no more records match beyond this page, in the direction of the query */
  complete: boolean;
  /** the size of the whole result set (filters only, not after/before), when asked for */
  count?: number;
  /** ids named in after/before/afterId/beforeId/ids that are not in the owner's archive; nothing else is answered then */
  missing?: string[];
}

/** The oldest and newest record of an owner's archive (XEP-0313 metadata). */
export interface OwnerBounds {
  first?: { archiveId: string; archivedAt: number };
  last?: { archiveId: string; archivedAt: number };
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
  /**
   * Overwrite the value of one record in place, for tombstones (XEP-0424
   * message retraction: the content goes, the message keeps its place). The
   * record keeps its seq, pos, owners, `with`, `id` and index entries, so its
   * archive id and every count stay as they were. Resolves to false when the
   * conversation holds no record with that seq (never appended, or gone to
   * retention). One record, one write: a key-value backend (Redis) writes the
   * record's serialised form again under its key.
   */
  setValue(conversation: string, seq: number, value: T): Promise<boolean>;
  /** Highest seq of the conversation, 0 when empty. */
  lastSeq(conversation: string): Promise<number>;
  /** Conversations an owner takes part in. */
  conversations(owner: string): Promise<string[]>;
  /**
   * One owner's archive, from its owner index: never reads another owner's
   * entries (they are only read to find the records the page shows).
   */
  queryOwner(owner: string, query?: OwnerQuery): Promise<OwnerPage<T>>;
  /** The oldest and newest entry of an owner's archive. */
  ownerBounds(owner: string): Promise<OwnerBounds>;
  /**
   * Delete records archived before the time (the archive time, pos / 1000);
   * returns how many. Walks each owner's index from its oldest entry, so the
   * cost follows what is removed plus one seek per owner. Records that no
   * owner archives are not stored (broker/archive.ts), so none is missed.
   */
  prune(olderThan: number): Promise<number>;
  /**
   * Keep at most `max` entries in each owner's archive, dropping the oldest;
   * a record leaves the store once no owner archives it. Returns how many
   * entries were dropped.
   */
  trimOwners(max: number): Promise<number>;
  /** Delete every record an owner takes part in, from every owner's archive. */
  removeOwner(owner: string): Promise<void>;
  /**
   * Account removal: the owner's archive view goes (its index entries and
   * counts; `conversations` still names the records' parties); a record stays while another owner
   * archives it (the other party keeps its history) and leaves the store
   * otherwise. Returns how many entries were dropped. With `before` (ms),
   * only the entries archived before that time go (per-user retention,
   * `parley archive purge --user`); the counts and the rest stay.
   */
  forgetOwner(owner: string, before?: number): Promise<number>;
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

/**
 * Where uploaded files live (XEP-0363, docs/upload.md). Embedded: files on
 * disk under `<dataDir>/upload/` (storage/blobs-disk.ts); MongoDB: GridFS
 * (storage/blobs-gridfs.ts); an S3-compatible store implements the same
 * four calls. Files are streamed: no call holds a whole file in memory.
 * Every store passes storage/test/contract-blobs.ts.
 */
export interface BlobStore {
  /**
   * Store the stream under `id`, refusing to overwrite (rejects with code
   * 'EEXIST') and stopping with code 'E2BIG' after `maxBytes`. The file is
   * visible to {@link open} only once the whole stream was written.
   */
  write(id: string, data: NodeJS.ReadableStream, maxBytes: number): Promise<{ bytes: number }>;
  /** Size of a stored file, or undefined. */
  stat(id: string): Promise<{ bytes: number } | undefined>;
  /** A stream of bytes `start`..`end` inclusive (the whole file without them). */
  open(id: string, range?: { start: number; end: number }): NodeJS.ReadableStream;
  /** Remove a file; no error when it does not exist. */
  remove(id: string): Promise<void>;
  /**
   * Remove what interrupted writes left behind (a crash mid-upload), older
   * than `olderThanMs`; returns how many. Optional: a store whose writes
   * leave nothing (an S3 multipart upload with a lifecycle rule) omits it.
   */
  sweep?(olderThanMs?: number): Promise<number>;
}
