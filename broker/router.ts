import { Address } from './address.ts';
import type { Broker } from './broker.ts';
import {
  isArchivable,
  isStorableMessage,
  toRecord,
  fromRecord,
  type Envelope,
  type EnvelopeRecord,
} from './envelope.ts';
import { BrokerError, type ErrorCondition } from './errors.ts';
import { HandedOver } from './handed-over.ts';
import type { Session } from './session.ts';
import type { SessionEntry } from '../cluster/types.ts';

/** A place an envelope can go: a local session object, or a session on another node. */
export interface Target {
  node: string;
  resource: string;
  priority: number;
  available: boolean;
  local?: Session;
}

/** What the 'deliver' bus message carries: one envelope for some sessions of the receiving node. */
interface RemoteDelivery {
  resources: string[];
  env: EnvelopeRecord;
}

/**
 * Pipelining of one origin's messages (see {@link Router.route}): the origin
 * may hand over its next message once this one has its place in the
 * archive's order, and this one sends nothing before the previous one is done.
 */
/**
 * An offline copy of a message other devices of the user already got live
 * (a delivery to several devices whose hop to one node failed): the
 * resources that had it. The offline module does not flush such a copy to
 * them at once (they would see it twice in one session); it waits for the
 * next login, as any message queued for a device that missed it.
 */
export const deliveredElsewhere = new WeakMap<Envelope, ReadonlySet<string>>();

export interface Ordered {
  /** Called once the message's archive append has been asked for (at most once; maybe never). */
  admit(): void;
  /** Settles (never rejects) once the origin's previous message has been handled. */
  after: Promise<unknown>;
}

/**
 * validate → filter hooks → local session / host service / remote node /
 * offline. Kept small on purpose (Prosody's stanza_router); features hook in.
 */
export class Router {
  private readonly broker: Broker;
  /** synchronous checks before each local delivery (see addDeliveryGuard) */
  private guards: ((env: Envelope, to: Session) => boolean)[] = [];

  /** storable messages handed to other nodes lately: queued again if that node dies (docs/cluster.md "Node loss") */
  private readonly handed: HandedOver;

  constructor(broker: Broker) {
    this.broker = broker;
    const { deathReplayMs = 0, deathReplayMax = 20_000 } = broker.cluster;
    this.handed = new HandedOver(deathReplayMs, deathReplayMax);
    broker.cluster.bus.onMessage((msg) => {
      if (msg.type === 'deliver') this.fromNode(msg.payload as RemoteDelivery);
    });
    if (this.handed.enabled)
      broker.hooks.on('node:down', (node) => {
        void broker.hooks
          .track(this.replayHanded(node))
          .catch((err) =>
            broker.log.error({ err, node }, 'cluster: queueing again what a dead node held failed'),
          );
      });
  }

  /**
   * A node died holding messages this node had handed to it and its clients
   * had not acknowledged (in its memory, socket buffers, stream-management
   * queues): they are in the recipients' archives, but would reach them only
   * through MAM. Each goes through the offline path again, delay-stamped
   * [XEP-0203]: queued, and flushed at once to a session the user has on a
   * live node (a client that reconnected). One the dead node's client had
   * acknowledged comes again with the same ids, for the client to drop; the
   * user's devices that had it live elsewhere do not get it at once
   * (`deliveredElsewhere`). A full queue does not bounce: the message was
   * delivered and archived.
   */
  private async replayHanded(node: string): Promise<void> {
    const list = this.handed.take(node);
    let queued = 0;
    for (const h of list) {
      const copy: Envelope = {
        ...h.env,
        to: h.env.to.bare(),
        delay: h.env.delay ?? { stamp: h.env.timestamp ?? h.at, from: this.broker.domain },
      };
      const had = h.all.filter((r) => !h.resources.includes(r));
      if (had.length) deliveredElsewhere.set(copy, new Set(had));
      if ((await this.broker.hooks.run('message:offline', copy)) === 'queued') queued++;
    }
    if (list.length > 0)
      this.broker.log.info(
        { node, handed: list.length, queued },
        'cluster: messages handed to a dead node queued again',
      );
  }

  /**
   * An envelope another node routed to sessions here ('deliver', one per
   * node with the recipients grouped). A storable message whose sessions all
   * went away meanwhile (the sender's view was a moment old) takes the
   * offline path here: nothing is dropped silently.
   */
  private fromNode(p: RemoteDelivery): void {
    const e = fromRecord(p.env, Address.parse);
    const bare = e.to.bare().toString();
    let reached = 0;
    for (const resource of p.resources) {
      const local = this.broker.sessions.getByUser(bare, resource);
      if (!local) continue;
      reached++;
      this.deliverTo(
        {
          node: this.broker.cluster.bus.nodeId,
          resource,
          priority: local.priority,
          available: local.available,
          local,
        },
        e,
      );
    }
    if (reached === 0 && e.kind === 'message' && isStorableMessage(e) && e.type !== 'headline') {
      this.undeliverable({ ...e, to: e.to.bare() }).catch((err) =>
        this.broker.log.error({ err }, 'offline hand-over of a message for a session gone failed'),
      );
    }
  }

  /**
   * Add a synchronous check run before every delivery to a local session,
   * whatever the kind (messages, presence broadcasts, IQs) and protocol;
   * false drops the envelope silently. For policy that must hold on every
   * path, including those that do not pass 'route:filter' (presence
   * broadcasts): blocking [XEP-0191]. Returns the remover.
   */
  addDeliveryGuard(fn: (env: Envelope, to: Session) => boolean): () => void {
    this.guards = [...this.guards, fn];
    return () => {
      this.guards = this.guards.filter((g) => g !== fn);
    };
  }

  /** Do the delivery guards let `env` reach `to`? */
  allowed(env: Envelope, to: Session): boolean {
    for (const g of this.guards) if (!g(env, to)) return false;
    return true;
  }

  /**
   * Route one envelope that a session (or a service) sent.
   *
   * With `ord`, one origin's messages are pipelined: a one-to-one message to a
   * known local user's bare address calls `ord.admit()` as soon as its archive
   * append is asked for — appends take their seqs and settle in call order —
   * and waits for `ord.after` before anything goes out, so the origin can
   * start its next message while this one's record is being written and its
   * messages still leave, are stored and complete in the order sent
   * [RFC6120 10.1]. Every other envelope waits for `ord.after` first and is
   * then routed as without it.
   */
  async route(input: Envelope, origin?: Session, ord?: Ordered): Promise<void> {
    input.timestamp ??= Date.now();
    // No filter registered: no fold; filters that answer at once (blocking with
    // both lists cached): no extra await per stanza either.
    let env: Envelope | null = input;
    if (this.broker.hooks.has('route:filter')) {
      const folded = this.broker.hooks.foldNow('route:filter', input, origin);
      env = folded instanceof Promise ? await folded : folded;
    }
    if (!env) return;
    if (env.kind === 'message' && this.broker.hooks.has('message:route'))
      this.broker.hooks.emit('message:route', env, origin);
    this.broker.metrics.routed(env.kind);
    if (ord && env.kind !== 'message') await ord.after;
    if (env.to.domain !== this.broker.domain) {
      if (ord && env.kind === 'message') await ord.after;
      // A service domain of this node (broker/hosts.ts): its module answers.
      const host = this.broker.hosts.get(env.to.domain);
      if (host) return host(env, origin);
      // Another domain: federation when an adapter offers it (broker/remote.ts), else [RFC6120 8.3.3.16].
      const remote = this.broker.remote.current;
      if (remote) {
        // Store, then send: a local user's message to a remote contact is in the user's archive as well.
        if (env.kind === 'message' && env.from.domain === this.broker.domain && isArchivable(env))
          await this.broker.archive.appendChat(env);
        return remote.send(env);
      }
      return this.bounce(env, 'remote-server-not-found');
    }
    switch (env.kind) {
      case 'message':
        if (ord) return this.orderedMessage(env, ord);
        return this.message(env);
      case 'presence':
        return this.broker.presence.handle(env);
      case 'iq':
        return this.iq(env);
    }
  }

  /** Every place a user is online, cluster-wide. */
  async targets(user: Address): Promise<Target[]> {
    const bare = user.bare().toString();
    const registry = this.broker.cluster.registry;
    return this.toTargets(registry.lookupNow?.(bare) ?? (await registry.lookup(bare)), bare, false);
  }

  /**
   * {@link messageTargets} without a promise when the registry has the answer
   * at hand; undefined when it must be asked (then use messageTargets).
   */
  private messageTargetsNow(user: Address): Target[] | undefined {
    const bare = user.bare().toString();
    const entries = this.broker.cluster.registry.lookupNow?.(bare);
    return entries && this.toTargets(entries, bare, true);
  }

  /** Registry entries as targets; with `forMessages`, only those that get messages to the bare address. */
  private toTargets(
    entries: readonly SessionEntry[],
    bare: string,
    forMessages: boolean,
  ): Target[] {
    const self = this.broker.cluster.bus.nodeId;
    const out: Target[] = [];
    for (const e of entries) {
      let t: Target | undefined;
      if (e.node === self) {
        const local = this.broker.sessions.getByUser(bare, e.resource);
        if (local)
          t = {
            node: self,
            resource: e.resource,
            priority: local.priority,
            available: local.available,
            local,
          };
      } else {
        t = { node: e.node, resource: e.resource, priority: e.priority, available: e.available };
      }
      if (t && (!forMessages || (t.available && t.priority >= 0))) out.push(t);
    }
    return out;
  }

  /** Hand an envelope to one target; the envelope's `to` is rewritten to the target's full address only for remote hops. */
  deliverTo(t: Target, env: Envelope): Promise<void> | undefined {
    if (t.local) {
      if (this.guards.length !== 0 && !this.allowed(env, t.local)) return undefined;
      // Synchronous for a local session: no promise per delivery.
      t.local.deliver(env);
      this.broker.metrics.delivered(env);
      if (env.kind === 'message' && this.broker.hooks.has('message:delivered'))
        this.broker.hooks.emit('message:delivered', env, t.local);
      if (env.timestamp !== undefined && !env.delay)
        this.broker.metrics.deliveryLatency(Date.now() - env.timestamp);
      return undefined;
    }
    return this.toNode(t.node, [t.resource], env);
  }

  /**
   * One envelope to sessions of one other node, in one bus message. When the
   * bus cannot take it (Redis away, the node gone before it was reaped), a
   * storable message takes the offline path instead of being lost
   * (docs/cluster.md "Failures"); anything else is dropped, as for a session
   * that closed.
   */
  private toNode(
    node: string,
    resources: string[],
    env: Envelope,
    allTargets?: string[],
  ): Promise<void> {
    const payload: RemoteDelivery = { resources, env: toRecord(env) };
    const keep =
      this.handed.enabled &&
      env.kind === 'message' &&
      isStorableMessage(env) &&
      env.type !== 'headline';
    return this.broker.cluster.bus.send(node, 'deliver', payload).then(
      () => {
        if (keep)
          this.handed.add(node, { env, resources, all: allTargets ?? resources, at: Date.now() });
      },
      (err) => {
        this.broker.log.debug({ err: (err as Error)?.message, node }, 'cross-node delivery failed');
        if (env.kind === 'message' && isStorableMessage(env) && env.type !== 'headline') {
          const copy = { ...env, to: env.to.bare() };
          const had = allTargets?.filter((r) => !resources.includes(r));
          if (had?.length) deliveredElsewhere.set(copy, new Set(had));
          return this.undeliverable(copy);
        }
      },
    );
  }

  /** Deliver to a full address, if that session exists. */
  async deliverFull(to: Address, env: Envelope): Promise<boolean> {
    const t = (await this.targets(to)).find((x) => x.resource === to.resource);
    if (!t) return false;
    await this.deliverTo(t, env);
    return true;
  }

  /** Sessions that get messages to the bare address: available, priority >= 0 [RFC6121 8.5.2.1.1]. */
  async messageTargets(user: Address): Promise<Target[]> {
    const bare = user.bare().toString();
    const registry = this.broker.cluster.registry;
    return this.toTargets(registry.lookupNow?.(bare) ?? (await registry.lookup(bare)), bare, true);
  }

  /** Answer an envelope with an error, unless it is an error itself [RFC6120 8.3.1]. */
  async bounce(env: Envelope, condition: ErrorCondition, text?: string): Promise<void> {
    const reply = this.errorFor(env, condition, text);
    if (!reply) return;
    if (reply.to.domain !== this.broker.domain) {
      // The sender is on another server: the error goes back over federation [RFC6120 8.3.1].
      if (!this.broker.hosts.get(reply.to.domain)) this.broker.remote.current?.send(reply);
      return;
    }
    if (!reply.to.local) return;
    if (reply.to.isBare) {
      for (const t of await this.messageTargets(reply.to)) await this.deliverTo(t, reply);
    } else {
      await this.deliverFull(reply.to, reply);
    }
  }

  /** The error answer to an envelope, undefined for an error or an IQ result (never answered) [RFC6120 8.3.1]. */
  errorFor(env: Envelope, condition: ErrorCondition, text?: string): Envelope | undefined {
    if (env.type === 'error') return undefined; // never answer an error with an error
    if (env.kind === 'iq' && env.type === 'result') return undefined;
    const err = new BrokerError(condition, text);
    return {
      kind: env.kind,
      type: 'error',
      from: env.to,
      to: env.from,
      id: env.id,
      body: env.body,
      extensions: env.kind === 'iq' ? env.extensions : [],
      error: { condition: err.condition, type: err.type, text },
    };
  }

  /** {@link message} for a pipelined origin (see {@link route}). */
  private async orderedMessage(env: Envelope, ord: Ordered): Promise<void> {
    // The common case: stored, to a bare address of a user known to exist.
    if (!(env.to.local && env.to.isBare && isArchivable(env) && this.broker.knownUser(env.to))) {
      await ord.after;
      return this.message(env);
    }
    const stored = this.broker.archive.appendChat(env);
    ord.admit();
    try {
      await stored;
    } finally {
      await ord.after;
    }
    return this.afterStored(env, env.type ?? 'normal', true, true);
  }

  private async message(env: Envelope): Promise<void> {
    const type = env.type ?? 'normal';
    if (!env.to.local) {
      const handled = await this.broker.hooks.run('message:host', env);
      if (!handled) await this.bounce(env, 'service-unavailable');
      return;
    }
    if (type === 'error') {
      if (!env.to.isBare) await this.deliverFull(env.to, env);
      return;
    }
    if (!(this.broker.knownUser(env.to) || (await this.broker.userExists(env.to)))) {
      return this.bounce(env, 'service-unavailable'); // [RFC6121 8.5.2.2.1]
    }
    const storable = isStorableMessage(env);
    // [XEP-0334 4.1] no-permanent-store: delivered or queued offline, never archived
    const archived = storable && isArchivable(env);
    if (!env.to.isBare) {
      const t = (await this.targets(env.to)).find((x) => x.resource === env.to.resource);
      if (t) {
        if (archived) {
          await this.broker.archive.appendChat(env);
          this.broker.hooks.emit('message:stored', env);
        }
        return this.deliverTo(t, env);
      }
      // [RFC6121 8.5.3.2.1] no such resource: chat/normal as if to the bare JID; groupchat errors; headline dropped.
      if (type === 'groupchat') return this.bounce(env, 'service-unavailable');
      if (type === 'headline') return;
    }
    if (type === 'groupchat') return this.bounce(env, 'service-unavailable'); // [RFC6121 8.5.2.1.1]
    if (archived) await this.broker.archive.appendChat(env); // store, then sync
    return this.afterStored(env, type, storable, archived);
  }

  /** A message to a bare address, archived if archivable: to every available device, else offline if storable. */
  private async afterStored(
    env: Envelope,
    type: string,
    storable: boolean,
    archived: boolean,
  ): Promise<void> {
    if (archived) this.broker.hooks.emit('message:stored', env);
    const targets = this.messageTargetsNow(env.to) ?? (await this.messageTargets(env.to));
    if (targets.length > 0) {
      // Every available device gets every message (multi-device principle); one bus message per other node.
      let remote: Map<string, string[]> | undefined;
      for (const t of targets) {
        if (t.local) this.deliverTo(t, env);
        else {
          remote ??= new Map();
          const list = remote.get(t.node);
          if (list) list.push(t.resource);
          else remote.set(t.node, [t.resource]);
        }
      }
      if (remote) {
        const all = targets.length > 1 ? targets.map((t) => t.resource) : undefined;
        await Promise.all(
          [...remote].map(([node, resources]) => this.toNode(node, resources, env, all)),
        );
      }
      return;
    }
    if (type === 'headline' || !storable) return; // [RFC6121 8.5.2.2.1] headline / chat states: dropped
    return this.undeliverable(env);
  }

  /**
   * A storable message handed to a session that is gone (it closed while the
   * message was being stored, or it ended with the message unacknowledged):
   * to the user's other devices that did not have it, else the offline path
   * ({@link undeliverable}). Nothing is dropped silently. `hadIt` says
   * whether another device already got it; by default, one addressed to the
   * bare JID went to every available device, one to the gone full JID to
   * none [RFC6121 8.5.3.2.1].
   */
  stranded(env: Envelope, gone: Session, hadIt?: (s: Session) => boolean): Promise<void> {
    return this.broker.hooks.track(this.strandedNow(env, gone, hadIt)); // the node stops only once it is stored
  }

  private async strandedNow(
    env: Envelope,
    gone: Session,
    hadIt?: (s: Session) => boolean,
  ): Promise<void> {
    const bare = gone.address.bare();
    const moved: Envelope = { ...env, to: bare };
    const others = (await this.messageTargets(bare)).filter((t) => t.local && t.local !== gone);
    if (others.length === 0) return this.undeliverable(moved);
    const had = hadIt ?? (() => env.to.isBare);
    for (const t of others) if (!had(t.local!)) t.local!.deliver(moved);
  }

  /**
   * A storable message no session takes: whatever module handles
   * 'message:offline' (the offline module) keeps it for later; with none
   * loaded, offline storage is off and the sender gets service-unavailable
   * [RFC6121 8.5.2.1.1, 8.5.2.2.1]. Adapters and modules that find a message
   * stranded (a connection that closed under it, a stream-management session
   * that timed out) hand it here, never to storage directly.
   */
  undeliverable(env: Envelope): Promise<void> {
    return this.broker.hooks.track(this.undeliverableNow(env)); // the node stops only once it is stored
  }

  private async undeliverableNow(env: Envelope): Promise<void> {
    const outcome = await this.broker.hooks.run('message:offline', env);
    if (outcome === 'queued') return;
    if (outcome === 'full') return this.bounce(env, 'service-unavailable', 'offline storage full'); // [XEP-0160 4]
    return this.bounce(env, 'service-unavailable'); // [RFC6121 8.5.2.2.1] no offline storage
  }

  private async iq(env: Envelope): Promise<void> {
    if (env.to.local && !env.to.isBare) {
      // IQ to a full JID: the server delivers it or answers for the absent entity [RFC6121 8.5.3.1]
      if (await this.deliverFull(env.to, env)) return;
    }
    // IQs to the server and to accounts are answered by the adapter's keyed handlers before they get here.
    await this.bounce(env, 'service-unavailable'); // [RFC6120 8.4]
  }
}
