import type { KeyValueOp, KeyValueStore } from '../storage/types.ts';
import { BrokerError } from './errors.ts';

/** Subscription states [RFC6121 2.1.2.5]. */
export type Subscription = 'none' | 'to' | 'from' | 'both';

export interface RosterItem {
  jid: string;
  name?: string;
  groups: string[];
  subscription: Subscription;
  /** outbound request pending [RFC6121 2.1.2.2] */
  ask?: boolean;
  /** pre-approved inbound subscription [RFC6121 3.4] */
  approved?: boolean;
  /** set only in pushes for removals */
  removed?: boolean;
}

/** Per roster: its version [RFC6121 2.6] and how many items it holds (for the size limit). */
interface RosterMeta {
  ver: number;
  count: number;
}

/** A record of the roster store: the meta record, an item, or a reverse-index entry. */
type RosterRecord = RosterMeta | RosterItem | 1;

export interface RosterLimits {
  /** items one roster may hold */
  maxItems: number;
}

/*
 * Key layout of the roster store: one record per item, so that a change
 * writes one item and the small meta record whatever the roster's size.
 * Bare JIDs contain no '/', so one user's prefix never covers another's.
 *
 *   <user>/v              RosterMeta
 *   <user>/i/<contact>    RosterItem
 *   <contact>/r/<user>    1: <user>'s roster lists <contact> (for account removal)
 */
const metaKey = (user: string) => `${user}/v`;
const itemPrefix = (user: string) => `${user}/i/`;
const itemKey = (user: string, contact: string) => `${user}/i/${contact}`;
const reverseKey = (contact: string, user: string) => `${contact}/r/${user}`;

/**
 * Per-user rosters and the subscription state machine of RFC 6121 §3 and
 * Appendix A, expressed as pure transitions on the stored items. Routing of the
 * presence stanzas is the PresenceService's job.
 */
export class RosterService {
  private readonly store: KeyValueStore<RosterRecord>;
  private readonly limits: RosterLimits;
  /** serialise read-modify-write per user */
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly onPush: (user: string, item: RosterItem, ver: string) => void;

  constructor(
    store: KeyValueStore<RosterRecord>,
    limits: RosterLimits,
    onPush: (user: string, item: RosterItem, ver: string) => void,
  ) {
    this.store = store;
    this.limits = limits;
    this.onPush = onPush;
  }

  /** Whole roster and its version [RFC6121 2.6]. */
  async get(user: string): Promise<{ ver: string; items: RosterItem[] }> {
    const [meta, entries] = await Promise.all([
      this.meta(user),
      this.store.entries(itemPrefix(user)),
    ]);
    return { ver: String(meta.ver), items: entries.map(([, it]) => it as RosterItem) };
  }

  async item(user: string, contact: string): Promise<RosterItem | undefined> {
    return (await this.store.get(itemKey(user, contact))) as RosterItem | undefined;
  }

  /** Number of items in the user's roster. */
  async count(user: string): Promise<number> {
    return (await this.meta(user)).count;
  }

  /** Client roster set: name and groups only; subscription is never set by the client [RFC6121 2.1.2.5]. */
  async set(
    user: string,
    contact: string,
    name: string | undefined,
    groups: string[],
  ): Promise<void> {
    if (new Set(groups).size !== groups.length)
      throw new BrokerError('bad-request', 'duplicate group'); // [RFC6121 2.3.3]
    if (groups.some((g) => g.length === 0))
      throw new BrokerError('not-acceptable', 'empty group name'); // [RFC6121 2.3.3]
    if (contact === user) {
      // A user's own bare JID in the roster is allowed by RFC 6121 but confuses clients; ejabberd refuses it too.
      throw new BrokerError('not-allowed', 'cannot add yourself');
    }
    await this.mutate(user, contact, (cur) => ({
      ...(cur ?? { jid: contact, subscription: 'none' as const }),
      name,
      groups,
    }));
  }

  /** Client roster remove; returns the item as it was so the caller can cancel subscriptions [RFC6121 2.5.2]. */
  async remove(user: string, contact: string): Promise<RosterItem> {
    let before: RosterItem | undefined;
    await this.mutate(user, contact, (cur) => {
      before = cur;
      if (!before) throw new BrokerError('item-not-found'); // [RFC6121 2.5.3]
      return undefined;
    });
    return before!;
  }

  /** User sends subscribe to contact [RFC6121 3.1.2]: none→none+ask, from→from+ask. */
  async outboundSubscribe(user: string, contact: string): Promise<void> {
    await this.transition(
      user,
      contact,
      (it) =>
        it.subscription === 'to' || it.subscription === 'both' ? undefined : { ...it, ask: true },
      true,
    );
  }

  /** Contact gets a subscribe: true when it is already approved (auto-answer subscribed) [RFC6121 3.1.3]. */
  async inboundSubscribeApproved(contact: string, from: string): Promise<boolean> {
    const it = await this.item(contact, from);
    return !!it && (it.subscription === 'from' || it.subscription === 'both' || !!it.approved);
  }

  /** Contact approves user's request (contact's roster) [RFC6121 3.1.5]: none→from, to→both. */
  async outboundSubscribed(
    contact: string,
    user: string,
    pendingIn: boolean,
  ): Promise<'approved' | 'preapproved' | 'noop'> {
    const it = await this.item(contact, user);
    if (it && (it.subscription === 'from' || it.subscription === 'both')) return 'noop';
    if (!pendingIn) {
      // [RFC6121 3.4] pre-approval: remember it, route nothing.
      await this.transition(contact, user, (i) => ({ ...i, approved: true }), true);
      return 'preapproved';
    }
    await this.transition(
      contact,
      user,
      (i) => ({
        ...i,
        approved: undefined,
        subscription: i.subscription === 'to' ? 'both' : 'from',
      }),
      true,
    );
    return 'approved';
  }

  /** User's roster on receiving subscribed [RFC6121 3.1.6]: none+ask→to, from+ask→both. Returns true if it changed. */
  async inboundSubscribed(user: string, contact: string): Promise<boolean> {
    return this.transition(
      user,
      contact,
      (it) => {
        if (!it.ask) return undefined; // not requested: ignore [RFC6121 3.1.6]
        return { ...it, ask: undefined, subscription: it.subscription === 'from' ? 'both' : 'to' };
      },
      false,
    );
  }

  /** User cancels own subscription to contact [RFC6121 3.3.2]: to→none, both→from. */
  async outboundUnsubscribe(user: string, contact: string): Promise<boolean> {
    return this.transition(
      user,
      contact,
      (it) => {
        if (it.subscription === 'none' || it.subscription === 'from')
          return it.ask ? { ...it, ask: undefined } : undefined;
        return {
          ...it,
          ask: undefined,
          subscription: it.subscription === 'both' ? 'from' : 'none',
        };
      },
      false,
    );
  }

  /** Contact's roster on receiving unsubscribe [RFC6121 3.3.3]: from→none, both→to. */
  async inboundUnsubscribe(contact: string, user: string): Promise<boolean> {
    return this.transition(
      contact,
      user,
      (it) => {
        if (it.subscription === 'none' || it.subscription === 'to')
          return it.approved ? { ...it, approved: undefined } : undefined;
        return {
          ...it,
          approved: undefined,
          subscription: it.subscription === 'both' ? 'to' : 'none',
        };
      },
      false,
    );
  }

  /** Contact refuses or revokes user's subscription (contact's roster) [RFC6121 3.2.2]: from→none, both→to. */
  async outboundUnsubscribed(contact: string, user: string): Promise<boolean> {
    return this.inboundUnsubscribe(contact, user);
  }

  /** User's roster on receiving unsubscribed [RFC6121 3.2.3]: to→none, both→from, ask cleared. */
  async inboundUnsubscribed(user: string, contact: string): Promise<boolean> {
    return this.outboundUnsubscribe(user, contact);
  }

  /** Contacts whose presence this user should receive / send. */
  async contacts(user: string, which: 'to' | 'from'): Promise<string[]> {
    return (await this.presenceContacts(user))[which];
  }

  /** Both directions from one read: `from` see the user's presence, `to` are probed [RFC6121 4.2.2]. */
  async presenceContacts(user: string): Promise<{ to: string[]; from: string[] }> {
    const to: string[] = [];
    const from: string[] = [];
    for (const [, rec] of await this.store.entries(itemPrefix(user))) {
      const i = rec as RosterItem;
      if (i.subscription === 'both' || i.subscription === 'to') to.push(i.jid);
      if (i.subscription === 'both' || i.subscription === 'from') from.push(i.jid);
    }
    return { to, from };
  }

  /** Users whose roster lists `contact` (from the reverse index). */
  async listedBy(contact: string): Promise<string[]> {
    const prefix = `${contact}/r/`;
    return (await this.store.keys(prefix)).map((k) => k.slice(prefix.length));
  }

  /**
   * Delete a user's roster: its items, its version and the reverse-index
   * entries of its items. Pushes nothing (the account is going away).
   */
  async drop(user: string): Promise<void> {
    await this.locked(user, async () => {
      const ops: KeyValueOp<RosterRecord>[] = [{ type: 'del', key: metaKey(user) }];
      for (const [key, rec] of await this.store.entries(itemPrefix(user))) {
        ops.push(
          { type: 'del', key },
          { type: 'del', key: reverseKey((rec as RosterItem).jid, user) },
        );
      }
      // Reverse entries naming this user as contact are removed by whoever removes the items (removeContact).
      await this.store.batch(ops);
    });
  }

  /**
   * Remove `contact` from `user`'s roster without any subscription
   * traffic (the contact's account was removed); pushes the removal to the
   * user's interested resources [RFC6121 2.5.2]. Returns the item as it was.
   */
  async removeContact(user: string, contact: string): Promise<RosterItem | undefined> {
    let before: RosterItem | undefined;
    await this.mutate(user, contact, (cur) => {
      before = cur;
      return cur ? undefined : null;
    });
    // A stale reverse entry (no such item) is dropped too.
    if (!before) await this.store.delete(reverseKey(contact, user));
    return before;
  }

  /** Every key of the store that belongs to `user` (for the account-removal check). */
  async keysOf(user: string): Promise<string[]> {
    return this.store.keys(`${user}/`);
  }

  private async meta(user: string): Promise<RosterMeta> {
    return (
      ((await this.store.get(metaKey(user))) as RosterMeta | undefined) ?? { ver: 0, count: 0 }
    );
  }

  /** Apply fn to the item (creating it when `create`); push and bump the version when it changed. */
  private async transition(
    user: string,
    contact: string,
    fn: (it: RosterItem) => RosterItem | undefined,
    create: boolean,
  ): Promise<boolean> {
    let changed = false;
    await this.mutate(user, contact, (cur) => {
      if (!cur && !create) return null;
      const next = fn(cur ?? { jid: contact, groups: [], subscription: 'none' });
      if (!next) return cur ?? null;
      changed = true;
      return next;
    });
    return changed;
  }

  private async locked(user: string, task: () => Promise<void>): Promise<void> {
    const prev = this.locks.get(user) ?? Promise.resolve();
    const run = prev.catch(() => {}).then(task);
    this.locks.set(user, run);
    try {
      await run;
    } finally {
      if (this.locks.get(user) === run) this.locks.delete(user);
    }
  }

  /**
   * Read-modify-write of one item under a per-user lock. fn returns the new
   * item, undefined to delete it, or null to leave the roster untouched.
   * Writes the item, the meta record and the reverse entry in one batch: the
   * cost does not depend on the roster's size. Every path that creates an
   * item (roster set, subscribe, pre-approval, approval) comes through here,
   * so the size limit is checked once for all [RFC6121 2.3.3].
   */
  private async mutate(
    user: string,
    contact: string,
    fn: (cur: RosterItem | undefined) => RosterItem | undefined | null,
  ): Promise<void> {
    await this.locked(user, async () => {
      const [meta, before] = await Promise.all([this.meta(user), this.item(user, contact)]);
      const next = fn(before);
      if (next === null) return;
      // [RFC6121 A.2.1] a transition to the same state changes nothing: no push, no new version
      if (next === before || (next && before && sameItem(stripUndefined(next), before))) return;
      if (next && !before && meta.count >= this.limits.maxItems) {
        // [RFC6121 2.3.3] the roster is full: not-allowed, the condition a roster set gets; the same for subscriptions
        throw new BrokerError('not-allowed', 'roster size limit reached');
      }
      const count = meta.count + (next && !before ? 1 : 0) - (!next && before ? 1 : 0);
      const ver = meta.ver + 1;
      const ops: KeyValueOp<RosterRecord>[] = [
        { type: 'put', key: metaKey(user), value: { ver, count } },
      ];
      let pushed: RosterItem;
      if (next === undefined) {
        ops.push(
          { type: 'del', key: itemKey(user, contact) },
          { type: 'del', key: reverseKey(contact, user) },
        );
        pushed = { jid: contact, groups: [], subscription: 'none', removed: true };
      } else {
        pushed = stripUndefined(next);
        ops.push({ type: 'put', key: itemKey(user, contact), value: pushed });
        if (!before) ops.push({ type: 'put', key: reverseKey(contact, user), value: 1 });
      }
      await this.store.batch(ops);
      this.onPush(user, pushed, String(ver)); // [RFC6121 2.1.6] push to interested resources
    });
  }
}

function sameItem(a: RosterItem, b: RosterItem): boolean {
  return JSON.stringify(a, Object.keys(a).sort()) === JSON.stringify(b, Object.keys(b).sort());
}

function stripUndefined(it: RosterItem): RosterItem {
  const out = { ...it } as Record<string, unknown>;
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out as unknown as RosterItem;
}
