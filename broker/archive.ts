import type {
  ArchivePage,
  ArchiveQuery,
  ArchiveRecord,
  ArchiveStore,
  KeyValueStore,
  OwnerQuery,
  OwnerRecord,
} from '../storage/types.ts';
import { Address } from './address.ts';
import { BrokerError } from './errors.ts';
import { fromRecord, toRecord, type Envelope, type EnvelopeRecord } from './envelope.ts';

/** Conversation id of a pair of users: order-independent. */
export function pairConversation(a: Address, b: Address): string {
  const x = a.bare().toString();
  const y = b.bare().toString();
  return x < y ? `chat:${x}|${y}` : `chat:${y}|${x}`;
}

/** What a user's archive keeps by default [XEP-0441]. */
export type ArchiveMode = 'always' | 'never' | 'roster';

/** A user's archiving preferences [XEP-0441]: a default and bare JIDs always / never archived. */
export interface ArchivePrefs {
  default: ArchiveMode;
  always: string[];
  never: string[];
}

/** The archive's settings (the `archive` module's options). */
export interface ArchiveSettings {
  /** the default of a user who never set preferences */
  defaultMode: ArchiveMode;
  /** page size when a query names none */
  defaultPageSize: number;
  /** the largest page a query gets, whatever it asks for */
  maxPageSize: number;
  /** most records a full-JID `with` query reads of the bare peer's conversation */
  fullJidScanMax: number;
  /** most JIDs in each of a user's always / never lists */
  maxPrefsJids: number;
}

export const defaultArchiveSettings: ArchiveSettings = {
  defaultMode: 'always',
  defaultPageSize: 50,
  maxPageSize: 250,
  fullJidScanMax: 10_000,
  maxPrefsJids: 1000,
};

/** A query of a user's own archive, in core terms (XEP-0313 form fields and XEP-0059 paging). */
export interface UserArchiveQuery {
  with?: Address;
  start?: number;
  end?: number;
  afterId?: string;
  beforeId?: string;
  ids?: string[];
  /** page after this id, oldest first */
  after?: string;
  /** page before this id; '' = the last page */
  before?: string;
  max?: number;
  /** leave the count out (the server's own reads, which show no count) */
  noCount?: boolean;
}

/** One archived message of a user's archive. */
export interface ArchivedMessage {
  /** the archive id: XEP-0359 stanza-id, XEP-0313 result id, MQTT archiveId */
  id: string;
  /** ms since the epoch: the archive time */
  stamp: number;
  env: Envelope;
}

/** A page of a user's archive, oldest first whatever the paging direction. */
export interface UserArchivePage {
  messages: ArchivedMessage[];
  /** no more results in the direction of the query [XEP-0313 query-paging] */
  complete: boolean;
  /** size of the whole result set [XEP-0059 2.6]; left out for a full-JID `with` (it would take a scan) */
  count?: number;
}

/** A record of a user's archive as a result. */
function toArchived(r: OwnerRecord<EnvelopeRecord>): ArchivedMessage {
  const env = fromRecord(r.value, Address.parse);
  env.seq = r.seq;
  return { id: r.archiveId, stamp: r.archivedAt, env };
}

/** At most this many users' preferences are kept in memory. */
const PREFS_CACHE = 10_000;

/**
 * The timeline: every one-to-one message is appended here, and gets its
 * per-conversation seq, before it is pushed anywhere (store, then sync).
 * Each party's own archive (XEP-0313 user archive) lists it unless that
 * party's preferences refuse it; a message nobody archives is not stored.
 */
export class ArchiveService {
  private readonly store: ArchiveStore<EnvelopeRecord>;
  private readonly prefsStore: KeyValueStore<ArchivePrefs> | undefined;
  private readonly onAppend: () => void;
  private readonly inRoster: (user: string, contact: string) => Promise<boolean>;
  settings: ArchiveSettings = { ...defaultArchiveSettings };
  /** Preferences per user as stored; null: none stored (the server default applies). */
  private readonly prefsCache = new Map<string, ArchivePrefs | null>();
  /** Appends that wait for preferences or a roster read, in call order. */
  private waiting = 0;
  private tail: Promise<void> = Promise.resolve();

  constructor(
    store: ArchiveStore<EnvelopeRecord>,
    onAppend: () => void = () => {},
    prefs?: KeyValueStore<ArchivePrefs>,
    inRoster: (user: string, contact: string) => Promise<boolean> = async () => false,
  ) {
    this.store = store;
    this.onAppend = onAppend;
    this.prefsStore = prefs;
    this.inRoster = inRoster;
  }

  /**
   * Append a 1:1 message; sets env.seq, env.timestamp and env.archive. The
   * append is asked for in call order (the pipelines rely on it): at once
   * when both parties' preferences are in memory and nothing waits, else
   * behind the appends that wait. Resolves to undefined, storing nothing,
   * when neither party archives the message [XEP-0441].
   */
  appendChat(env: Envelope): Promise<ArchiveRecord<EnvelopeRecord> | undefined> {
    const from = env.from.bare().toString();
    const to = env.to.bare().toString();
    if (this.waiting === 0) {
      const who = this.archiversNow(from, to);
      if (who !== undefined) return this.append(env, who);
    }
    this.waiting++;
    const previous = this.tail;
    let asked!: () => void;
    this.tail = new Promise<void>((resolve) => (asked = resolve));
    return (async () => {
      let appended: Promise<ArchiveRecord<EnvelopeRecord> | undefined>;
      try {
        await previous;
        const who = await this.archivers(from, to);
        appended = this.append(env, who);
      } finally {
        this.waiting--;
        asked();
      }
      return appended;
    })();
  }

  private append(env: Envelope, who: string[]): Promise<ArchiveRecord<EnvelopeRecord> | undefined> {
    env.timestamp ??= Date.now();
    if (who.length === 0) return Promise.resolve(undefined);
    const from = env.from.bare().toString();
    const to = env.to.bare().toString();
    return this.store
      .append({
        conversation: pairConversation(env.from, env.to),
        timestamp: env.timestamp,
        owners: [from, to],
        with: from,
        id: env.id ?? `${env.timestamp}`,
        value: toRecord(env),
        ...(who.length === 2 || (from === to && who.length === 1) ? {} : { archivedFor: who }),
      })
      .then((rec) => {
        env.seq = rec.seq;
        rec.value.seq = rec.seq;
        if (rec.pos !== undefined) env.archive = { id: String(rec.pos), owners: who };
        this.onAppend();
        return rec;
      });
  }

  /** Who archives a message between the two, when it can be told without a read; undefined otherwise. */
  private archiversNow(from: string, to: string): string[] | undefined {
    const parties = from === to ? [from] : [from, to];
    const out: string[] = [];
    for (const user of parties) {
      const prefs = this.prefsCache.get(user);
      if (prefs === undefined) return undefined;
      const peer = user === from ? to : from;
      const verdict = this.decide(prefs, user, peer);
      if (verdict === 'roster') return undefined;
      if (verdict) out.push(user);
    }
    return out;
  }

  private async archivers(from: string, to: string): Promise<string[]> {
    const parties = from === to ? [from] : [from, to];
    const out: string[] = [];
    for (const user of parties) {
      const prefs = await this.loadPrefs(user);
      const peer = user === from ? to : from;
      let verdict = this.decide(prefs, user, peer);
      if (verdict === 'roster') verdict = await this.inRoster(user, peer);
      if (verdict) out.push(user);
    }
    return out;
  }

  /**
   * [XEP-0441] a JID in `never` is never archived (it wins over `always`),
   * one in `always` always is, others follow the default; 'roster' means "in
   * the user's roster", asked by the caller. Notes to self are archived.
   */
  private decide(prefs: ArchivePrefs | null, user: string, peer: string): boolean | 'roster' {
    const p = prefs ?? { default: this.settings.defaultMode, always: [], never: [] };
    if (p.never.includes(peer)) return false;
    if (p.always.includes(peer) || peer === user) return true;
    if (p.default === 'roster') return 'roster';
    return p.default === 'always';
  }

  private async loadPrefs(user: string): Promise<ArchivePrefs | null> {
    const cached = this.prefsCache.get(user);
    if (cached !== undefined) return cached;
    const stored = (await this.prefsStore?.get(user)) ?? null;
    // A set in the meantime is newer than what was read.
    const now = this.prefsCache.get(user);
    if (now !== undefined) return now;
    this.cachePrefs(user, stored);
    return stored;
  }

  private cachePrefs(user: string, prefs: ArchivePrefs | null): void {
    this.prefsCache.delete(user);
    this.prefsCache.set(user, prefs);
    if (this.prefsCache.size > PREFS_CACHE)
      this.prefsCache.delete(this.prefsCache.keys().next().value as string);
  }

  /** A user's preferences, the server default when none are stored [XEP-0441 2.1]. */
  async getPrefs(user: Address): Promise<ArchivePrefs> {
    const p = await this.loadPrefs(user.bare().toString());
    return p ?? { default: this.settings.defaultMode, always: [], never: [] };
  }

  /** Replace a user's preferences [XEP-0441 2.1]; JIDs are kept as bare JIDs. */
  async setPrefs(user: Address, prefs: ArchivePrefs): Promise<ArchivePrefs> {
    const max = this.settings.maxPrefsJids;
    if (prefs.always.length > max || prefs.never.length > max)
      throw new BrokerError('not-acceptable', `at most ${max} JIDs per list`);
    const bare = (list: string[]) => [
      ...new Set(list.map((j) => Address.parse(j).bare().toString())),
    ];
    const clean: ArchivePrefs = {
      default: prefs.default,
      always: bare(prefs.always),
      never: bare(prefs.never),
    };
    const owner = user.bare().toString();
    await this.prefsStore?.put(owner, clean);
    this.cachePrefs(owner, clean);
    return clean;
  }

  /**
   * A page of the user's own archive. Only the user's index is read; an id
   * named as a bound that is not in it is `item-not-found` [XEP-0059 2.6]
   * [XEP-0313 query-limit-id]. `before: ''` asks for the last page.
   */
  async queryUser(user: Address, q: UserArchiveQuery): Promise<UserArchivePage> {
    const { defaultPageSize, maxPageSize } = this.settings;
    // Each named id is one index read: no more of them than a page holds.
    if (q.ids !== undefined && q.ids.length > maxPageSize)
      throw new BrokerError('policy-violation', `at most ${maxPageSize} ids`);
    const limit = Math.min(maxPageSize, Math.max(0, Math.floor(q.max ?? defaultPageSize)));
    const backwards = q.before !== undefined;
    const oq: OwnerQuery = { limit, count: !q.noCount, reverse: backwards };
    if (q.with) oq.with = q.with.bare().toString();
    if (q.start !== undefined) oq.start = q.start;
    if (q.end !== undefined) oq.end = q.end;
    if (q.afterId !== undefined) oq.afterId = q.afterId;
    if (q.beforeId !== undefined) oq.beforeId = q.beforeId;
    if (q.ids !== undefined) oq.ids = q.ids;
    if (q.after !== undefined) oq.after = q.after;
    if (q.before) oq.before = q.before;
    if (q.with?.resource) return this.queryFullJid(user, q.with.toString(), oq);
    const page = await this.store.queryOwner(user.bare().toString(), oq);
    if (page.missing)
      throw new BrokerError('item-not-found', `no archived message with id ${page.missing[0]}`);
    const messages = page.records.map(toArchived);
    if (backwards) messages.reverse();
    return { messages, complete: page.complete, count: page.count ?? messages.length };
  }

  /**
   * `with` a full JID matches only messages to or from that exact JID
   * [XEP-0313 4.1.1]. The index is by bare peer, so the bare peer's records
   * are read page by page (still the user's own index, never other users'
   * data) and filtered until the page is full or the conversation ends (at
   * most `fullJidScanMax` records per query). The
   * count is left out: it would take a scan of the whole conversation
   * [XEP-0059 2.6 leaves it optional].
   */
  private async queryFullJid(
    user: Address,
    full: string,
    oq: OwnerQuery,
  ): Promise<UserArchivePage> {
    const limit = oq.limit ?? this.settings.defaultPageSize;
    if (limit === 0) return { messages: [], complete: false }; // no count to give [XEP-0059 2.6]
    const scan: OwnerQuery = { ...oq, count: false, limit: this.settings.maxPageSize };
    const matched: ArchivedMessage[] = [];
    let complete = false;
    // Bounded: a conversation of 100,000 messages with none from that resource is not read whole
    // for one query. Past the bound the page ends short (not complete), and the client goes on
    // from its last result; a scan that found nothing asks for a narrower query.
    let budget = this.settings.fullJidScanMax;
    for (;;) {
      const page = await this.store.queryOwner(user.bare().toString(), scan);
      if (page.missing)
        throw new BrokerError('item-not-found', `no archived message with id ${page.missing[0]}`);
      for (const r of page.records)
        if (r.value.from === full || r.value.to === full) matched.push(toArchived(r));
      const last = page.records.at(-1);
      if (page.complete || !last) {
        complete = true;
        break;
      }
      if (matched.length > limit) break;
      budget -= page.records.length;
      if (budget <= 0) {
        if (matched.length === 0)
          throw new BrokerError(
            'resource-constraint',
            'no message of that full JID in the messages read; narrow the query (start, end, after-id)',
          );
        break;
      }
      // The next page of the scan goes on from the last record read, in the same direction.
      if (oq.reverse) scan.before = last.archiveId;
      else scan.after = last.archiveId;
    }
    const messages = matched.slice(0, limit);
    complete &&= matched.length <= limit;
    if (oq.reverse) messages.reverse();
    return { messages, complete };
  }

  /** The oldest and newest message of a user's archive [XEP-0313 archive-metadata]. */
  metadata(user: Address) {
    return this.store.ownerBounds(user.bare().toString());
  }

  async query(
    a: Address,
    b: Address,
    q?: ArchiveQuery,
  ): Promise<{ envelopes: Envelope[]; complete: boolean }> {
    const page: ArchivePage<EnvelopeRecord> = await this.store.query(pairConversation(a, b), q);
    return {
      envelopes: page.records.map((r) => {
        const env = fromRecord(r.value, Address.parse);
        env.seq = r.seq;
        return env;
      }),
      complete: page.complete,
    };
  }

  /**
   * The newest message with content (a body, or a tombstone) of the
   * conversation of `a` and `b` that its sender called `id` (its id, or its
   * XEP-0359 origin-id), among the conversation's last `window` records; only
   * that conversation is read. Receipts, markers and retractions are not
   * candidates: they are about another message.
   */
  async findById(a: Address, b: Address, id: string, window: number): Promise<Envelope[]> {
    const page = await this.store.query(pairConversation(a, b), { reverse: true, limit: window });
    const out: Envelope[] = [];
    for (const r of page.records) {
      const v = r.value;
      if (v.id !== id && v.chat?.originId !== id) continue;
      if (v.body === undefined && v.chat?.retracted === undefined) continue;
      const env = fromRecord(v, Address.parse);
      env.seq = r.seq;
      if (r.pos !== undefined)
        env.archive = { id: String(r.pos), owners: r.archivedFor ?? r.owners };
      out.push(env);
    }
    return out;
  }

  /** A message of the user's own archive by its archive id, with its seq; undefined when it is not in that archive. */
  async byArchiveId(user: Address, id: string): Promise<Envelope | undefined> {
    const page = await this.store.queryOwner(user.bare().toString(), { ids: [id], limit: 1 });
    const r = page.records[0];
    if (page.missing || r === undefined) return undefined;
    const env = fromRecord(r.value, Address.parse);
    env.seq = r.seq;
    env.archive = { id: r.archiveId, owners: r.archivedFor ?? r.owners };
    return env;
  }

  /** The peers (bare JIDs) of the one-to-one conversations a user takes part in. */
  async peers(user: Address): Promise<string[]> {
    const me = user.bare().toString();
    const out: string[] = [];
    for (const c of await this.store.conversations(me)) {
      if (!c.startsWith('chat:')) continue;
      // A localpart may hold '|': cut by the user's own JID, not by splitting.
      const rest = c.slice(5);
      if (rest === `${me}|${me}`) out.push(me);
      else if (rest.startsWith(`${me}|`)) out.push(rest.slice(me.length + 1));
      else if (rest.endsWith(`|${me}`)) out.push(rest.slice(0, -(me.length + 1)));
    }
    return out;
  }

  /**
   * Records of the conversation of `user` and `peer` after `afterSeq` that
   * `user`'s archive lists, oldest first, at most `limit` read: the
   * conversation's own range only.
   */
  async after(
    user: Address,
    peer: Address,
    afterSeq: number,
    limit: number,
  ): Promise<{ envelopes: Envelope[]; complete: boolean }> {
    const me = user.bare().toString();
    const page = await this.store.query(pairConversation(user, peer), { afterSeq, limit });
    const envelopes: Envelope[] = [];
    for (const r of page.records) {
      if (r.archivedFor !== undefined && !r.archivedFor.includes(me)) continue;
      const env = fromRecord(r.value, Address.parse);
      env.seq = r.seq;
      envelopes.push(env);
    }
    return { envelopes, complete: page.complete };
  }

  /**
   * Replace an archived message by a tombstone [XEP-0424 5]: its content goes
   * (body, subject, payloads), its place, seq and archive id in both parties'
   * archives stay. False when the record is gone (retention).
   */
  tombstone(
    original: Envelope,
    retracted: { stamp: number; by?: string; reason?: string },
  ): Promise<boolean> {
    if (original.seq === undefined) return Promise.resolve(false);
    const rec: EnvelopeRecord = {
      kind: 'message',
      from: original.from.toString(),
      to: original.to.toString(),
      extensions: [],
      seq: original.seq,
    };
    if (original.type !== undefined) rec.type = original.type;
    if (original.id !== undefined) rec.id = original.id;
    if (original.timestamp !== undefined) rec.timestamp = original.timestamp;
    rec.chat = {
      retracted,
      ...(original.chat?.originId !== undefined ? { originId: original.chat.originId } : {}),
    };
    return this.store.setValue(pairConversation(original.from, original.to), original.seq, rec);
  }

  lastSeq(a: Address, b: Address): Promise<number> {
    return this.store.lastSeq(pairConversation(a, b));
  }

  /** Retention by age: messages archived before the time leave every archive. */
  prune(olderThan: number): Promise<number> {
    return this.store.prune(olderThan);
  }

  /**
   * Retention by age for one user: messages archived before the time leave
   * that user's archive; the other party keeps its copy while it archives it.
   */
  pruneUser(user: Address, olderThan: number): Promise<number> {
    return this.store.forgetOwner(user.bare().toString(), olderThan);
  }

  /** Retention by count: each user keeps the newest `max` messages. */
  trim(max: number): Promise<number> {
    return this.store.trimOwners(max);
  }

  /**
   * Account removal: the user's own archive (index, counts) and
   * preferences go; a message stays in the other party's archive
   * while that party archives it, so the other side keeps its history.
   */
  async forgetUser(user: Address): Promise<void> {
    const owner = user.bare().toString();
    await this.store.forgetOwner(owner);
    await this.prefsStore?.delete(owner);
    this.prefsCache.delete(owner);
  }

  /** The user's messages, in both parties' archives, and the preferences. */
  async removeOwner(user: Address): Promise<void> {
    const owner = user.bare().toString();
    await this.store.removeOwner(owner);
    await this.prefsStore?.delete(owner);
    this.prefsCache.delete(owner);
  }
}
