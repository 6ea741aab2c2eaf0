import type { KeyValueOp, KeyValueStore } from '../storage/types.ts';
import { BrokerError } from './errors.ts';
import { Address } from './address.ts';
import type { Broker } from './broker.ts';
import { fromRecord, toRecord, type Envelope, type EnvelopeRecord } from './envelope.ts';
import type { RosterItem } from './roster.ts';
import type { Session } from './session.ts';
import type { Target } from './router.ts';
import { SUBSCRIPTION_TYPES } from './vocabulary.ts';
import type { SessionEntry } from '../cluster/types.ts';

/** The 'probe' bus message: `to` wants the presence of `user`'s sessions on the receiving node (all, or `resources`). */
interface RemoteProbe {
  user: string;
  resources: string[];
  to: string;
}

/**
 * Presence [RFC6121 4] and subscriptions [RFC6121 3]. Both parties live on
 * this domain, so the server applies the sender's and the receiver's half of
 * each transition in one step.
 */
export class PresenceService {
  private readonly broker: Broker;
  /**
   * Inbound subscription requests not yet answered [RFC6121 3.1.3], one
   * record per request under `<contact>/<requester>` (bare JIDs hold no '/'),
   * so that a request costs one record whatever how many are waiting.
   */
  private readonly pending: KeyValueStore<EnvelopeRecord>;

  constructor(broker: Broker, pending: KeyValueStore<EnvelopeRecord>) {
    this.broker = broker;
    this.pending = pending;
    broker.cluster.bus.onMessage((msg) => {
      if (msg.type === 'probe')
        this.answerRemoteProbe(msg.payload as RemoteProbe).catch((err) =>
          broker.log.warn({ err }, 'cross-node presence probe failed'),
        );
    });
  }

  /**
   * Ask the nodes of `targets` that are not this one for those sessions'
   * current presence, to be sent to `to`: the presence of a session lives
   * with its session, on its node (one bus message per node).
   */
  private probeRemote(owner: Address, targets: Target[], to: Address): Promise<unknown> {
    const byNode = new Map<string, RemoteProbe>();
    for (const t of targets) {
      if (t.local) continue;
      let p = byNode.get(t.node);
      if (!p)
        byNode.set(
          t.node,
          (p = { user: owner.bare().toString(), resources: [], to: to.toString() }),
        );
      p.resources.push(t.resource);
    }
    return Promise.all(
      [...byNode].map(([node, p]) =>
        this.broker.cluster.bus.send(node, 'probe', p).catch(() => {}),
      ),
    );
  }

  private async answerRemoteProbe(p: RemoteProbe): Promise<void> {
    const to = Address.parse(p.to);
    for (const resource of p.resources) {
      const s = this.broker.sessions.getByUser(p.user, resource);
      if (!s?.available || !s.presence) continue;
      if (to.isBare)
        for (const t of await this.available(to))
          await this.broker.router.deliverTo(t, { ...s.presence, to });
      else await this.broker.router.deliverFull(to, { ...s.presence, to });
    }
  }

  /**
   * Send the session's current presence again to its contacts and the user's
   * other resources (a node the cluster had declared dead is back: its
   * contacts were told its sessions were gone).
   */
  async announceAgain(session: Session): Promise<void> {
    if (session.available && session.presence) await this.goAvailable(session, session.presence);
  }

  /**
   * A session of a node found dead (cluster): it cannot say goodbye, so the
   * node that reaped it tells the contacts that saw it available, and the
   * user's other resources [RFC6121 4.5.2]. Its directed presences died with
   * its node and are not known here.
   */
  async remoteSessionGone(e: SessionEntry): Promise<void> {
    if (!e.available) return;
    const user = Address.parse(e.user);
    const unavailable: Envelope = {
      kind: 'presence',
      type: 'unavailable',
      from: user.withResource(e.resource),
      to: user,
      extensions: [],
    };
    const sends: Promise<void>[] = [];
    for (const contact of await this.broker.roster.contacts(e.user, 'from')) {
      const c = Address.parse(contact);
      for (const t of await this.available(c)) this.send(sends, t, { ...unavailable, to: c });
    }
    for (const t of await this.available(user)) this.send(sends, t, unavailable);
    await Promise.all(sends);
  }

  /** Requests waiting for `owner`'s answer, oldest key first. */
  async pendingFor(owner: Address): Promise<Envelope[]> {
    return (await this.pending.entries(`${owner.toString()}/`)).map(([, rec]) =>
      fromRecord(rec, Address.parse),
    );
  }

  /** Every pending-request key of `user`: the ones waiting for it and the ones it sent to `contacts` (account removal). */
  async dropPending(user: Address, contacts: Iterable<string>): Promise<void> {
    const u = user.toString();
    const ops: KeyValueOp<EnvelopeRecord>[] = (await this.pending.keys(`${u}/`)).map((key) => ({
      type: 'del',
      key,
    }));
    for (const c of contacts) ops.push({ type: 'del', key: `${c}/${u}` });
    await this.pending.batch(ops);
  }

  /** A presence stanza a session sent. `env.from` is the session's full address. */
  async fromSession(session: Session, env: Envelope): Promise<void> {
    const type = env.type;
    if (type && SUBSCRIPTION_TYPES.has(type)) {
      // [RFC6121 3.1.2] the server stamps the bare JID and routes to the bare contact.
      const user = session.address.bare();
      const contact = env.to.bare();
      return this.subscription(type, user, contact, { ...env, from: user, to: contact });
    }
    if (type === undefined && this.broker.hooks.has('presence:outgoing'))
      env = await this.broker.hooks.fold('presence:outgoing', env, session);
    if (env.to.equals(session.address.bare()) && !type) env = { ...env, to: session.address }; // presence to self = broadcast
    const broadcast =
      env.to.equals(session.address) || (env.to.isDomain && env.to.domain === this.broker.domain);
    if (broadcast && (type === undefined || type === 'unavailable')) {
      return type === 'unavailable'
        ? this.goUnavailable(session, env)
        : this.goAvailable(session, env);
    }
    if (type === undefined || type === 'unavailable') {
      // Directed presence [RFC6121 4.6]: remember it for the unavailable on logout.
      if (type === undefined) {
        const directed = (session.directed ??= new Set());
        const to = env.to.toString();
        if (!directed.has(to) && directed.size >= this.broker.limits.maxDirectedPresences) {
          // Bounded per session: refused with resource-constraint [RFC6120 8.3.3.18], not routed, so
          // that every recipient of an available presence is sure to get the unavailable [RFC6121 4.6.3].
          throw new BrokerError(
            'resource-constraint',
            'too many directed presences from this session',
          );
        }
        directed.add(to);
      } else session.directed?.delete(env.to.toString());
    }
    await this.broker.router.route(env, session);
  }

  /** Presence routed to a user of this domain (directed, probe, error). */
  async handle(env: Envelope): Promise<void> {
    if (!env.to.local) return;
    if (env.type === 'probe') return this.answerProbe(env.from.bare(), env.to.bare(), env.from);
    if (env.type && SUBSCRIPTION_TYPES.has(env.type)) {
      // From another server (federation): no roster state is kept for remote contacts yet
      // (docs/federation.md); the user's available sessions see the request or answer as it is.
      if (env.from.domain !== this.broker.domain) {
        for (const t of await this.available(env.to.bare()))
          await this.broker.router.deliverTo(t, env);
        return;
      }
      return this.subscription(env.type, env.from.bare(), env.to.bare(), env);
    }
    if (!env.to.isBare) {
      await this.broker.router.deliverFull(env.to, env);
      return;
    }
    for (const t of await this.available(env.to)) await this.broker.router.deliverTo(t, env);
  }

  /** Session ended: unavailable to everyone who saw it available [RFC6121 4.5.2]. */
  async sessionEnded(session: Session): Promise<void> {
    if (!session.available && !session.directed?.size) return;
    await this.goUnavailable(session, {
      kind: 'presence',
      type: 'unavailable',
      from: session.address,
      to: session.address.bare(),
      extensions: [],
    });
  }

  /** Roster item removed by its owner: cancel both directions [RFC6121 2.5.2]. */
  async rosterRemoved(user: Address, item: RosterItem): Promise<void> {
    const contact = Address.parse(item.jid);
    if (item.subscription === 'to' || item.subscription === 'both' || item.ask) {
      await this.deliverToInterested(contact, await this.cancelInbound(contact, user));
    }
    if (item.subscription === 'from' || item.subscription === 'both') {
      await this.sendUnavailableFrom(user, contact);
      await this.broker.roster.inboundUnsubscribed(contact.toString(), user.toString());
      await this.deliverToInterested(contact, this.stanza('unsubscribed', user, contact));
    }
    await this.clearPending(user, contact);
  }

  /**
   * `gone`'s account was removed and its item dropped from `owner`'s roster:
   * tell `owner`'s sessions that the subscriptions ended and `gone` is
   * unavailable [RFC6121 3.2.3, 3.3.3, 4.5.2], as ejabberd does on user removal.
   */
  async contactRemoved(owner: Address, gone: Address, item: RosterItem): Promise<void> {
    if (item.subscription === 'to' || item.subscription === 'both' || item.ask) {
      await this.deliverToInterested(owner, this.stanza('unsubscribed', gone, owner));
    }
    if (item.subscription === 'from' || item.subscription === 'both') {
      await this.deliverToInterested(owner, this.stanza('unsubscribe', gone, owner));
    }
    if (item.subscription === 'to' || item.subscription === 'both') {
      for (const t of await this.available(owner)) {
        await this.broker.router.deliverTo(t, {
          kind: 'presence',
          type: 'unavailable',
          from: gone,
          to: owner,
          extensions: [],
        });
      }
    }
  }

  private async goAvailable(session: Session, env: Envelope): Promise<void> {
    const initial = !session.available;
    session.available = true;
    session.priority = clampPriority(env.priority ?? 0);
    const presence: Envelope = { ...env, to: session.address.bare(), from: session.address };
    session.presence = presence;
    await this.broker.sessions.update(session);
    const user = session.address.bare();
    const contacts = await this.broker.roster.presenceContacts(user.toString());
    const sends: Promise<void>[] = [];
    // [RFC6121 4.2.2] to contacts with from/both and to the user's own available resources
    for (const contact of contacts.from) {
      const c = Address.parse(contact);
      for (const t of await this.available(c)) this.send(sends, t, { ...presence, to: c });
    }
    for (const t of await this.available(user)) this.send(sends, t, presence);
    await Promise.all(sends);
    if (this.broker.hooks.has('presence:available'))
      this.broker.hooks.emit('presence:available', session, presence);
    if (!initial) return;
    // [RFC6121 4.2.2] probe contacts with to/both; answered locally from the registry.
    for (const contact of contacts.to) {
      const c = Address.parse(contact);
      const targets = await this.available(c);
      for (const t of targets) {
        if (t.local?.presence) session.deliver({ ...t.local.presence, to: session.address });
      }
      await this.probeRemote(c, targets, session.address);
    }
    for (const other of this.broker.sessions.sessionsOf(user)) {
      if (other !== session && other.available && other.presence)
        session.deliver({ ...other.presence, to: session.address });
    }
    await this.probeRemote(user, await this.available(user), session.address);
    // [RFC6121 3.1.3] subscription requests that arrived while offline
    for (const env of await this.pendingFor(user)) session.deliver(env);
    this.broker.hooks.emit('session:available', session);
  }

  private async goUnavailable(session: Session, env: Envelope): Promise<void> {
    const wasAvailable = session.available;
    session.available = false;
    session.presence = undefined;
    session.goneStatus = env.status;
    await this.broker.sessions.update(session);
    const user = session.address.bare();
    const unavailable: Envelope = { ...env, type: 'unavailable', from: session.address, to: user };
    const sent = new Set<string>();
    const sends: Promise<void>[] = [];
    if (wasAvailable) {
      for (const contact of await this.broker.roster.contacts(user.toString(), 'from')) {
        sent.add(contact);
        const c = Address.parse(contact);
        for (const t of await this.available(c)) this.send(sends, t, { ...unavailable, to: c });
      }
      for (const t of await this.available(user)) {
        if (t.local !== session) this.send(sends, t, unavailable);
      }
      await Promise.all(sends);
    }
    // [RFC6121 4.6.3] directed presence recipients hear the unavailable too
    for (const to of session.directed ?? []) {
      const a = Address.parse(to);
      if (sent.has(a.bare().toString())) continue;
      await this.broker.router.route({ ...unavailable, to: a }, session);
    }
    session.directed?.clear();
  }

  private async subscription(
    type: string,
    user: Address,
    contact: Address,
    env: Envelope,
  ): Promise<void> {
    const roster = this.broker.roster;
    const u = user.toString();
    const c = contact.toString();
    if (contact.domain !== this.broker.domain) return this.broker.router.route(env);
    if (!contact.local || contact.equals(user)) return;
    const exists = await this.broker.userExists(contact);
    switch (type) {
      case 'subscribe': {
        await roster.outboundSubscribe(u, c); // throws not-allowed when the user's roster is full [RFC6121 2.3.3]
        if (!exists) {
          // [RFC6121 3.1.3] no such contact: answer unsubscribed on its behalf
          await roster.inboundUnsubscribed(u, c);
          return this.deliverToInterested(user, this.stanza('unsubscribed', contact, user));
        }
        if (await roster.inboundSubscribeApproved(c, u)) {
          // [RFC6121 3.1.3] already approved (or pre-approved): answer subscribed automatically
          await roster.outboundSubscribed(c, u, true);
          return this.approved(user, contact);
        }
        const key = `${c}/${u}`;
        if (
          (await this.pending.get(key)) === undefined &&
          (await this.pending.keys(`${c}/`)).length >= this.broker.limits.maxPendingSubscriptions
        ) {
          // The contact has too many unanswered requests: refuse this one rather than grow without bound
          // [RFC6120 8.3.3.18]; the user's own item keeps ask until the user cancels it.
          throw new BrokerError(
            'resource-constraint',
            'the contact has too many pending subscription requests',
          );
        }
        await this.pending.put(key, toRecord(this.stanza('subscribe', user, contact, env)));
        // [RFC6121 3.1.3] the request goes to every available resource
        for (const t of await this.available(contact))
          await this.broker.router.deliverTo(t, this.stanza('subscribe', user, contact, env));
        return;
      }
      case 'subscribed': {
        // here `user` approves `contact`; the request stays pending if the approval fails (roster full)
        const hadPending = (await this.pending.get(`${u}/${c}`)) !== undefined;
        const r = await roster.outboundSubscribed(u, c, hadPending);
        await this.clearPending(user, contact);
        if (r === 'approved' && exists) await this.approved(contact, user);
        return;
      }
      case 'unsubscribed': {
        // `user` refuses or revokes `contact`'s subscription [RFC6121 3.2]
        const hadPending = await this.clearPending(user, contact);
        const changed = await roster.outboundUnsubscribed(u, c);
        if (!exists || (!changed && !hadPending)) return;
        await this.sendUnavailableFrom(user, contact);
        await roster.inboundUnsubscribed(c, u);
        return this.deliverToInterested(contact, this.stanza('unsubscribed', user, contact));
      }
      case 'unsubscribe': {
        await roster.outboundUnsubscribe(u, c);
        if (!exists) return;
        return this.deliverToInterested(contact, await this.cancelInbound(contact, user));
      }
    }
  }

  /** `contact` receives `user`'s unsubscribe: update its roster, drop any pending request. */
  private async cancelInbound(contact: Address, user: Address): Promise<Envelope> {
    await this.clearPending(contact, user);
    if (await this.broker.roster.inboundUnsubscribe(contact.toString(), user.toString())) {
      await this.sendUnavailableFrom(contact, user);
    }
    return this.stanza('unsubscribe', user, contact);
  }

  /** `owner` approved `subscriber`: update subscriber's roster, tell it, send owner's presence [RFC6121 3.1.6]. */
  private async approved(subscriber: Address, owner: Address): Promise<void> {
    await this.broker.roster.inboundSubscribed(subscriber.toString(), owner.toString());
    await this.deliverToInterested(subscriber, this.stanza('subscribed', owner, subscriber));
    const owners = await this.available(owner);
    for (const t of owners) {
      if (!t.local?.presence) continue;
      for (const s of await this.available(subscriber)) {
        await this.broker.router.deliverTo(s, { ...t.local.presence, to: subscriber });
      }
    }
    await this.probeRemote(owner, owners, subscriber);
  }

  /** Answer a probe on behalf of `owner` if `prober` is subscribed [RFC6121 4.3.2]. */
  private async answerProbe(prober: Address, owner: Address, replyTo: Address): Promise<void> {
    const item = await this.broker.roster.item(owner.toString(), prober.toString());
    if (!item || (item.subscription !== 'from' && item.subscription !== 'both')) return;
    const all = await this.available(owner);
    const avail = all.filter((t) => t.local?.presence);
    const remote = all.filter((t) => !t.local);
    if (avail.length === 0 && remote.length === 0) {
      await this.broker.router.deliverFull(replyTo, {
        kind: 'presence',
        type: 'unavailable',
        from: owner,
        to: replyTo,
        extensions: [],
      });
      return;
    }
    for (const t of avail)
      await this.broker.router.deliverFull(replyTo, { ...t.local!.presence!, to: replyTo });
    await this.probeRemote(owner, remote, replyTo);
  }

  /** Unavailable from each of `from`'s available resources to `to`'s sessions. */
  private async sendUnavailableFrom(from: Address, to: Address): Promise<void> {
    const targets = await this.available(to);
    for (const t of await this.available(from)) {
      const full = from.withResource(t.resource);
      for (const s of targets) {
        await this.broker.router.deliverTo(s, {
          kind: 'presence',
          type: 'unavailable',
          from: full,
          to,
          extensions: [],
        });
      }
    }
  }

  private async clearPending(owner: Address, requester: Address): Promise<boolean> {
    const key = `${owner.toString()}/${requester.toString()}`;
    if ((await this.pending.get(key)) === undefined) return false;
    await this.pending.delete(key);
    return true;
  }

  /** Approvals and cancellations go to interested resources, available or not [RFC6121 3.1.6, 3.2.3, 3.3.3]. */
  private async deliverToInterested(user: Address, env: Envelope): Promise<void> {
    for (const t of await this.broker.router.targets(user)) {
      if (!t.local || t.local.interested) await this.broker.router.deliverTo(t, env);
    }
  }

  /**
   * Deliver without waiting for a remote hop, so that a broadcast to contacts
   * on other nodes leaves as one bus frame per node; the caller awaits
   * `pending` once (the local deliveries are done at once).
   */
  private send(pending: Promise<void>[], t: Target, env: Envelope): void {
    const p = this.broker.router.deliverTo(t, env);
    if (p) pending.push(p);
  }

  private async available(user: Address): Promise<Target[]> {
    return (await this.broker.router.targets(user)).filter((t) => t.available);
  }

  private stanza(type: string, from: Address, to: Address, base?: Envelope): Envelope {
    return {
      kind: 'presence',
      type,
      from,
      to,
      extensions: base?.extensions ?? [],
      status: base?.status,
    };
  }
}

function clampPriority(p: number): number {
  // [RFC6121 4.7.2.3] an integer between -128 and +127
  return Math.max(-128, Math.min(127, Math.trunc(p)));
}
