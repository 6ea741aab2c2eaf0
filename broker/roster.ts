import type { KeyValueStore } from '../storage/types.ts';
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

interface RosterDoc {
  ver: number;
  items: Record<string, RosterItem>;
}

export interface RosterLimits {
  /** items one roster may hold */
  maxItems: number;
}

/**
 * Per-user rosters and the subscription state machine of RFC 6121 §3 and
 * Appendix A, expressed as pure transitions on the stored items. Routing of the
 * presence stanzas is the PresenceService's job.
 */
export class RosterService {
  private readonly store: KeyValueStore<RosterDoc>;
  private readonly limits: RosterLimits;
  /** serialise read-modify-write per user */
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly onPush: (user: string, item: RosterItem, ver: string) => void;

  constructor(store: KeyValueStore<RosterDoc>, limits: RosterLimits, onPush: (user: string, item: RosterItem, ver: string) => void) {
    this.store = store;
    this.limits = limits;
    this.onPush = onPush;
  }

  /** Whole roster and its version [RFC6121 2.6]. */
  async get(user: string): Promise<{ ver: string; items: RosterItem[] }> {
    const doc = await this.load(user);
    return { ver: String(doc.ver), items: Object.values(doc.items) };
  }

  async item(user: string, contact: string): Promise<RosterItem | undefined> {
    return (await this.load(user)).items[contact];
  }

  /** Client roster set: name and groups only; subscription is never set by the client [RFC6121 2.1.2.5]. */
  async set(user: string, contact: string, name: string | undefined, groups: string[]): Promise<void> {
    if (new Set(groups).size !== groups.length) throw new BrokerError('bad-request', 'duplicate group'); // [RFC6121 2.3.3]
    if (groups.some((g) => g.length === 0)) throw new BrokerError('not-acceptable', 'empty group name'); // [RFC6121 2.3.3]
    if (contact === user) {
      // A user's own bare JID in the roster is allowed by RFC 6121 but confuses clients; ejabberd refuses it too.
      throw new BrokerError('not-allowed', 'cannot add yourself');
    }
    await this.mutate(user, (doc) => {
      const cur = doc.items[contact];
      if (!cur && Object.keys(doc.items).length >= this.limits.maxItems) {
        throw new BrokerError('not-allowed', 'roster size limit reached'); // [RFC6121 2.3.3] policy-violation is also allowed
      }
      return { ...(cur ?? { jid: contact, subscription: 'none' as const }), name, groups };
    }, contact);
  }

  /** Client roster remove; returns the item as it was so the caller can cancel subscriptions [RFC6121 2.5.2]. */
  async remove(user: string, contact: string): Promise<RosterItem> {
    let before: RosterItem | undefined;
    await this.mutate(user, (doc) => {
      before = doc.items[contact];
      if (!before) throw new BrokerError('item-not-found'); // [RFC6121 2.5.3]
      return undefined;
    }, contact);
    return before!;
  }

  /** User sends subscribe to contact [RFC6121 3.1.2]: none→none+ask, from→from+ask. */
  async outboundSubscribe(user: string, contact: string): Promise<void> {
    await this.transition(user, contact, (it) => (it.subscription === 'to' || it.subscription === 'both' ? undefined : { ...it, ask: true }), true);
  }

  /** Contact gets a subscribe: true when it is already approved (auto-answer subscribed) [RFC6121 3.1.3]. */
  async inboundSubscribeApproved(contact: string, from: string): Promise<boolean> {
    const it = await this.item(contact, from);
    return !!it && (it.subscription === 'from' || it.subscription === 'both' || !!it.approved);
  }

  /** Contact approves user's request (contact's roster) [RFC6121 3.1.5]: none→from, to→both. */
  async outboundSubscribed(contact: string, user: string, pendingIn: boolean): Promise<'approved' | 'preapproved' | 'noop'> {
    const it = await this.item(contact, user);
    if (it && (it.subscription === 'from' || it.subscription === 'both')) return 'noop';
    if (!pendingIn) {
      // [RFC6121 3.4] pre-approval: remember it, route nothing.
      await this.transition(contact, user, (i) => ({ ...i, approved: true }), true);
      return 'preapproved';
    }
    await this.transition(contact, user, (i) => ({ ...i, approved: undefined, subscription: i.subscription === 'to' ? 'both' : 'from' }), true);
    return 'approved';
  }

  /** User's roster on receiving subscribed [RFC6121 3.1.6]: none+ask→to, from+ask→both. Returns true if it changed. */
  async inboundSubscribed(user: string, contact: string): Promise<boolean> {
    return this.transition(user, contact, (it) => {
      if (!it.ask) return undefined; // not requested: ignore [RFC6121 3.1.6]
      return { ...it, ask: undefined, subscription: it.subscription === 'from' ? 'both' : 'to' };
    }, false);
  }

  /** User cancels own subscription to contact [RFC6121 3.3.2]: to→none, both→from. */
  async outboundUnsubscribe(user: string, contact: string): Promise<boolean> {
    return this.transition(user, contact, (it) => {
      if (it.subscription === 'none' || it.subscription === 'from') return it.ask ? { ...it, ask: undefined } : undefined;
      return { ...it, ask: undefined, subscription: it.subscription === 'both' ? 'from' : 'none' };
    }, false);
  }

  /** Contact's roster on receiving unsubscribe [RFC6121 3.3.3]: from→none, both→to. */
  async inboundUnsubscribe(contact: string, user: string): Promise<boolean> {
    return this.transition(contact, user, (it) => {
      if (it.subscription === 'none' || it.subscription === 'to') return it.approved ? { ...it, approved: undefined } : undefined;
      return { ...it, approved: undefined, subscription: it.subscription === 'both' ? 'to' : 'none' };
    }, false);
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
    const doc = await this.load(user);
    const to: string[] = [];
    const from: string[] = [];
    for (const k in doc.items) {
      const i = doc.items[k]!;
      if (i.subscription === 'both' || i.subscription === 'to') to.push(i.jid);
      if (i.subscription === 'both' || i.subscription === 'from') from.push(i.jid);
    }
    return { to, from };
  }

  async drop(user: string): Promise<void> {
    await this.store.delete(user);
  }

  private async load(user: string): Promise<RosterDoc> {
    return (await this.store.get(user)) ?? { ver: 0, items: {} };
  }

  /** Apply fn to the item (creating it when `create`); push and bump the version when it changed. */
  private async transition(user: string, contact: string, fn: (it: RosterItem) => RosterItem | undefined, create: boolean): Promise<boolean> {
    let changed = false;
    await this.mutate(user, (doc) => {
      const cur = doc.items[contact];
      if (!cur && !create) return cur;
      const next = fn(cur ?? { jid: contact, groups: [], subscription: 'none' });
      if (!next) return cur ?? null;
      changed = true;
      return next;
    }, contact);
    return changed;
  }

  /**
   * Read-modify-write under a per-user lock. fn returns the new item, undefined
   * to delete it, or null to leave the roster untouched.
   */
  private async mutate(user: string, fn: (doc: RosterDoc) => RosterItem | undefined | null, contact: string): Promise<void> {
    const prev = this.locks.get(user) ?? Promise.resolve();
    const run = prev.catch(() => {}).then(async () => {
      const doc = await this.load(user);
      const next = fn(doc);
      if (next === null) return;
      const before = doc.items[contact];
      // [RFC6121 A.2.1] a transition to the same state changes nothing: no push, no new version
      if (next === before || (next && before && sameItem(stripUndefined(next), before))) return;
      doc.ver += 1;
      let pushed: RosterItem;
      if (next === undefined) {
        delete doc.items[contact];
        pushed = { jid: contact, groups: [], subscription: 'none', removed: true };
      } else {
        doc.items[contact] = stripUndefined(next);
        pushed = doc.items[contact];
      }
      await this.store.put(user, doc);
      this.onPush(user, pushed, String(doc.ver)); // [RFC6121 2.1.6] push to interested resources
    });
    this.locks.set(user, run);
    try {
      await run;
    } finally {
      if (this.locks.get(user) === run) this.locks.delete(user);
    }
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
