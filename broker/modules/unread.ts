import { Address } from '../address.ts';
import type { Broker } from '../broker.ts';
import type { Envelope } from '../envelope.ts';
import { defineModule } from '../module.ts';
import type { KeyValueStore } from '../../storage/types.ts';

/** Unread counts of one user: per conversation (the peer's bare JID) and in total. */
export interface UnreadCounts {
  conversations: Record<string, number>;
  total: number;
}

/** Where a user's last displayed position came from: a chat marker a device sent, or a XEP-0490 publish. */
export type DisplayedSource = 'marker' | 'sync';

/** The stored position: the seq of the last displayed message of the conversation and its archive id in the user's archive. */
interface Displayed {
  seq: number;
  id?: string;
}

type ChangeListener = (user: Address, counts: UnreadCounts) => void;
type DisplayedListener = (
  user: Address,
  peer: Address,
  archiveId: string,
  source: DisplayedSource,
) => void;

/** Does this archived message count as unread for `user` (a message of the peer with a body, not a correction or tombstone)? */
function countable(env: Envelope, user: string): boolean {
  if (env.from.bare().toString() === user || env.body === undefined) return false;
  const type = env.type ?? 'normal';
  if (type !== 'chat' && type !== 'normal') return false;
  const c = env.chat;
  return (
    c === undefined ||
    (c.replace === undefined && c.retract === undefined && c.retracted === undefined)
  );
}

/**
 * Unread counts, protocol-neutral (docs/conversations.md): per user and
 * conversation, the messages of the peer archived after the last one the
 * user marked displayed, from any device: a XEP-0333 `displayed` marker (or
 * its MQTT JSON) or a XEP-0490 publish. The position is the message's seq in
 * the conversation (stored in `kv:unread`); a count reads that conversation's
 * records after it, at most `maxCount`, and nothing of anyone else. Counts
 * of users with a session are kept in memory and follow each stored message;
 * listeners (the MQTT `unread/{me}` topic, XEP-0490 notifications) hear
 * every change.
 */
export class UnreadService {
  private readonly broker: Broker;
  private readonly store: KeyValueStore<Displayed>;
  readonly maxCount: number;
  private readonly lookback: number;
  /** per user: per peer, the displayed seq and the count after it */
  private readonly cache = new Map<string, Map<string, { seq: number; count: number }>>();
  private readonly loading = new Map<
    string,
    Promise<Map<string, { seq: number; count: number }>>
  >();
  private readonly changed = new Set<ChangeListener>();
  private readonly displayedListeners = new Set<DisplayedListener>();
  /** writes of one user, in order */
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly maxUsers: number;

  constructor(broker: Broker, opts: { maxCount: number; lookback: number; cacheUsers: number }) {
    this.broker = broker;
    this.store = broker.storage.kv<Displayed>('unread');
    this.maxCount = opts.maxCount;
    this.lookback = opts.lookback;
    this.maxUsers = opts.cacheUsers;
  }

  /** Hear every change of a user's counts (only users whose counts are in memory). */
  onChange(fn: ChangeListener): () => void {
    this.changed.add(fn);
    return () => this.changed.delete(fn);
  }

  /** Hear each advance of a user's displayed position, with the archive id of the message now displayed. */
  onDisplayed(fn: DisplayedListener): () => void {
    this.displayedListeners.add(fn);
    return () => this.displayedListeners.delete(fn);
  }

  /** The user's counts, read from the archive the first time. */
  async counts(user: Address): Promise<UnreadCounts> {
    return summary(await this.load(user.bare().toString()));
  }

  /** A chat marker `displayed` the user sent to `peer` about the message with `messageId` [XEP-0333]. */
  displayedMessage(user: Address, peer: Address, messageId: string): Promise<void> {
    return this.locked(user, async () => {
      const found = await this.broker.archive.findById(user, peer, messageId, this.lookback);
      const msg = found.find((m) => m.from.bare().equals(peer.bare()));
      if (msg?.seq === undefined) return; // an id of no message of the peer: nothing moves
      await this.advance(user, peer, msg.seq, msg.archive?.id, 'marker');
    });
  }

  /** A XEP-0490 position: the user's archive id of the last message displayed in the conversation with `peer`. */
  displayedArchiveId(user: Address, peer: Address, archiveId: string): Promise<void> {
    return this.locked(user, async () => {
      const msg = await this.broker.archive.byArchiveId(user, archiveId);
      // Only a message of this very conversation moves its position.
      if (msg?.seq === undefined) return;
      const parties = new Set([msg.from.bare().toString(), msg.to.bare().toString()]);
      if (
        !parties.has(user.bare().toString()) ||
        !parties.has(peer.bare().toString()) ||
        (parties.size === 1) !== user.bare().equals(peer.bare())
      )
        return;
      await this.advance(user, peer, msg.seq, archiveId, 'sync');
    });
  }

  /**
   * A message was archived: the recipient's count follows (a retraction
   * recounts). Synchronous, with no promise, for every message of a user
   * whose counts nobody asked for.
   */
  stored(env: Envelope): void | Promise<void> {
    if (env.kind !== 'message' || !env.to.local || env.to.domain !== this.broker.domain) return;
    const user = env.to.bare().toString();
    const counts = this.cache.get(user);
    if (!counts || (env.archive !== undefined && !env.archive.owners.includes(user))) return;
    const peer = env.from.bare().toString();
    if (env.chat?.retract !== undefined)
      return this.locked(env.to, async () => this.recount(user, peer, counts));
    if (!countable(env, user)) return;
    const entry = counts.get(peer) ?? { seq: 0, count: 0 };
    if (entry.count >= this.maxCount) return;
    counts.set(peer, { seq: entry.seq, count: entry.count + 1 });
    this.emit(user, counts);
  }

  /** A removed account's counts leave memory (its positions go with `kv:unread`, broker/account-removal.ts). */
  forget(user: Address): void {
    this.cache.delete(user.bare().toString());
  }

  private async advance(
    user: Address,
    peer: Address,
    seq: number,
    archiveId: string | undefined,
    source: DisplayedSource,
  ): Promise<void> {
    const me = user.bare().toString();
    const other = peer.bare().toString();
    const key = `${me}/${other}`;
    const now = await this.store.get(key);
    if (now !== undefined && now.seq >= seq) return; // never backwards: an older marker changes nothing
    await this.store.put(key, archiveId === undefined ? { seq } : { seq, id: archiveId });
    const counts = this.cache.get(me);
    if (counts) await this.recount(me, other, counts, seq);
    if (archiveId !== undefined)
      for (const fn of this.displayedListeners) fn(user.bare(), peer.bare(), archiveId, source);
  }

  /** Count the conversation again after the stored position (one range read of that conversation). */
  private async recount(
    user: string,
    peer: string,
    counts: Map<string, { seq: number; count: number }>,
    seq?: number,
  ): Promise<void> {
    const from = seq ?? (await this.store.get(`${user}/${peer}`))?.seq ?? 0;
    const count = await this.countAfter(user, peer, from);
    const before = counts.get(peer);
    counts.set(peer, { seq: from, count });
    if (before?.count !== count) this.emit(user, counts);
  }

  private async countAfter(user: string, peer: string, seq: number): Promise<number> {
    const page = await this.broker.archive.after(
      Address.parse(user),
      Address.parse(peer),
      seq,
      this.maxCount * 4,
    );
    let n = 0;
    for (const env of page.envelopes) if (countable(env, user) && ++n >= this.maxCount) break;
    return n;
  }

  private load(user: string): Promise<Map<string, { seq: number; count: number }>> {
    const cached = this.cache.get(user);
    if (cached) {
      // Recently used last (eviction takes the first).
      this.cache.delete(user);
      this.cache.set(user, cached);
      return Promise.resolve(cached);
    }
    let p = this.loading.get(user);
    if (!p) {
      p = (async () => {
        const counts = new Map<string, { seq: number; count: number }>();
        const positions = new Map(
          (await this.store.entries(`${user}/`)).map(([k, v]) => [k.slice(user.length + 1), v.seq]),
        );
        for (const peer of await this.broker.archive.peers(Address.parse(user))) {
          const seq = positions.get(peer) ?? 0;
          counts.set(peer, { seq, count: await this.countAfter(user, peer, seq) });
        }
        this.cache.set(user, counts);
        while (this.cache.size > this.maxUsers)
          this.cache.delete(this.cache.keys().next().value as string);
        return counts;
      })().finally(() => this.loading.delete(user));
      this.loading.set(user, p);
    }
    return p;
  }

  private emit(user: string, counts: Map<string, { seq: number; count: number }>): void {
    if (this.changed.size === 0) return;
    const address = Address.parse(user);
    const s = summary(counts);
    for (const fn of this.changed) fn(address, s);
  }

  private locked<T>(user: Address, fn: () => Promise<T>): Promise<T> {
    const key = user.bare().toString();
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return run;
  }
}

function summary(counts: Map<string, { seq: number; count: number }>): UnreadCounts {
  const conversations: Record<string, number> = {};
  let total = 0;
  for (const [peer, { count }] of counts) {
    if (count === 0) continue;
    conversations[peer] = count;
    total += count;
  }
  return { conversations, total };
}

const services = new WeakMap<Broker, UnreadService>();

/** The unread service of a broker, when the module is loaded (adapters render it). */
export function unreadService(broker: Broker): UnreadService | undefined {
  return services.get(broker);
}

/**
 * Unread counts from the last displayed marker of each user
 * (docs/conversations.md): the core part; the XMPP `mds` module (XEP-0490)
 * and the MQTT `unread/{me}` topic render it.
 */
export default defineModule({
  name: 'unread',
  description:
    'Unread counts per conversation from the last displayed marker any device sent (XEP-0333, XEP-0490, MQTT unread/)',
  options: {
    maxCount: {
      type: 'number',
      default: 1000,
      min: 1,
      max: 100_000,
      doc: "a conversation's count stops here (a count reads at most 4× this many records of the conversation)",
    },
    lookback: {
      type: 'number',
      default: 1000,
      min: 1,
      max: 100_000,
      doc: 'records of a conversation searched, newest first, for the message a displayed marker names',
    },
    cacheUsers: {
      type: 'number',
      default: 10_000,
      min: 1,
      doc: 'users whose counts are kept in memory (least recently asked go first)',
    },
  },
  specs: [],
  setup(ctx) {
    const { broker, options } = ctx;
    const svc = new UnreadService(broker, {
      maxCount: options.maxCount,
      lookback: options.lookback,
      cacheUsers: options.cacheUsers,
    });
    services.set(broker, svc);
    ctx.onUnload(() => void services.delete(broker));
    const fail = (err: unknown) => ctx.log.warn({ err }, 'unread: update failed');
    // [XEP-0333 3] a displayed marker from any device of the user moves its position
    ctx.onUnload(
      broker.hooks.on('message:route', (env) => {
        const m = env.chat?.marker;
        if (
          m?.type !== 'displayed' ||
          env.from.domain !== broker.domain ||
          !env.from.local ||
          env.to.domain !== broker.domain ||
          !env.to.local
        )
          return;
        if (env.type === 'groupchat' || env.type === 'error') return;
        svc.displayedMessage(env.from, env.to, m.id).catch(fail);
      }),
    );
    ctx.onUnload(
      broker.hooks.on('message:stored', (env) => {
        const p = svc.stored(env);
        if (p) p.catch(fail);
      }),
    );
    ctx.onUnload(
      broker.hooks.on('account:removed', (username) =>
        svc.forget(broker.accounts.address(username)),
      ),
    );
  },
});
