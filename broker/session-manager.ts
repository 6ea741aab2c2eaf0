import { randomBytes } from 'node:crypto';
import type { SessionRegistry } from '../cluster/types.ts';
import { Address } from './address.ts';
import { BrokerError, closeReason, type CloseReason } from './errors.ts';
import type { Logger } from './logger.ts';
import type { Session } from './session.ts';

export interface SessionManagerOptions {
  /** What happens when a resource is bound twice [RFC6120 7.7.2.2] */
  resourceConflict: 'replace' | 'reject';
  /** sessions one account may have at once */
  maxSessionsPerUser: number;
}

export interface SessionEvents {
  bound(session: Session): void;
  unbound(session: Session, reason: CloseReason): void;
  /** an unbind under way (its callers may not wait for it; a stopping node does) */
  unbinding?(done: Promise<void>): void;
}

/**
 * Bind/unbind, resource conflicts and the local view of who is online.
 * The cluster registry is kept in step for other nodes.
 */
export class SessionManager {
  private readonly local = new Map<string, Map<string, Session>>();
  private readonly byId = new Map<string, Session>();
  /** bind time of each local session, by session id */
  private readonly boundAt = new Map<string, number>();
  private readonly registry: SessionRegistry;
  private readonly nodeId: string;
  private readonly opts: SessionManagerOptions;
  private readonly log: Logger;
  private readonly events: SessionEvents;

  constructor(
    registry: SessionRegistry,
    nodeId: string,
    opts: SessionManagerOptions,
    log: Logger,
    events: SessionEvents,
  ) {
    this.registry = registry;
    this.nodeId = nodeId;
    this.opts = opts;
    this.log = log;
    this.events = events;
  }

  /** A fresh server-generated resource [RFC6120 7.6]. */
  static generateResource(): string {
    return `parley-${randomBytes(6).toString('hex')}`;
  }

  /**
   * Pick the resource for a new session of `user` and reserve it. Throws
   * BrokerError('conflict') when the policy refuses, or 'resource-constraint'
   * when the account has too many sessions.
   */
  reserve(user: Address, requested: string | undefined): Address {
    const sessions = this.local.get(user.toString());
    const resource =
      requested && requested.length > 0 ? requested : SessionManager.generateResource();
    const full = user.withResource(resource); // throws jid-malformed on a bad resource
    const existing = sessions?.get(full.resource);
    if (existing && this.opts.resourceConflict === 'reject')
      throw new BrokerError('conflict', 'resource in use');
    const count = sessions ? sessions.size - (existing ? 1 : 0) : 0;
    if (count >= this.opts.maxSessionsPerUser) {
      throw new BrokerError('resource-constraint', 'too many sessions for this account');
    }
    return full;
  }

  /** Register a session under its (reserved) full address; replaces a conflicting one. */
  async bind(session: Session): Promise<void> {
    const user = session.address.bare().toString();
    const old = this.local.get(user)?.get(session.address.resource);
    if (old && old !== session) {
      // [RFC6120 7.7.2.2] the old session is terminated with a conflict error.
      await this.unbind(old, closeReason('resource-conflict', 'replaced by new connection'));
      old.close(closeReason('resource-conflict', 'replaced by new connection'));
    }
    // Looked up after the await: unbinding the last session removes the user's map.
    let sessions = this.local.get(user);
    if (!sessions) this.local.set(user, (sessions = new Map()));
    sessions.set(session.address.resource, session);
    this.byId.set(session.id, session);
    this.boundAt.set(session.id, Date.now());
    await this.registry.put(this.entry(session));
    this.log.debug(
      { jid: session.address.toString(), protocol: session.protocol },
      'session bound',
    );
    this.events.bound(session);
  }

  /** Remove a session; idempotent. */
  unbind(session: Session, reason: CloseReason): Promise<void> {
    const done = this.unbindNow(session, reason);
    this.events.unbinding?.(done);
    return done;
  }

  private async unbindNow(session: Session, reason: CloseReason): Promise<void> {
    const user = session.address.bare().toString();
    const sessions = this.local.get(user);
    if (!sessions || sessions.get(session.address.resource) !== session) return;
    sessions.delete(session.address.resource);
    if (sessions.size === 0) this.local.delete(user);
    this.byId.delete(session.id);
    this.boundAt.delete(session.id);
    await this.registry.remove(user, session.address.resource, session.id);
    this.log.debug({ jid: session.address.toString(), reason: reason.kind }, 'session unbound');
    this.events.unbound(session, reason);
  }

  /**
   * `next` takes `old`'s place under the same full address (a resumed
   * stream [XEP-0198 5]): no unbind, no bind event, so contacts see no
   * presence change. `next` must already carry old's address and state.
   */
  async replace(old: Session, next: Session): Promise<void> {
    const user = old.address.bare().toString();
    const sessions = this.local.get(user);
    if (!sessions || sessions.get(old.address.resource) !== old)
      throw new BrokerError('item-not-found', 'session to resume is gone');
    sessions.set(old.address.resource, next);
    this.byId.delete(old.id);
    this.byId.set(next.id, next);
    this.boundAt.set(next.id, this.boundAt.get(old.id) ?? Date.now()); // the same session, on a new stream
    this.boundAt.delete(old.id);
    await this.registry.remove(user, old.address.resource, old.id);
    await this.registry.put(this.entry(next));
    this.log.debug({ jid: next.address.toString() }, 'session resumed on a new stream');
  }

  /** Keep the cluster registry in step after priority/availability changes. */
  async update(session: Session): Promise<void> {
    if (this.byId.get(session.id) === session) await this.registry.put(this.entry(session));
  }

  /** Local sessions of a bare user. */
  sessionsOf(user: Address): Session[] {
    return [...(this.local.get(user.bare().toString())?.values() ?? [])];
  }

  /** The local session with this full address. */
  get(full: Address): Session | undefined {
    return this.local.get(full.bare().toString())?.get(full.resource);
  }

  /** The local session of a bare user (its string form) and a resource, without building an address. */
  getByUser(user: string, resource: string): Session | undefined {
    return this.local.get(user)?.get(resource);
  }

  all(): Session[] {
    return [...this.byId.values()];
  }

  /** When a local session was bound (ms since the epoch), for `parley session list`. */
  since(session: Session): number | undefined {
    return this.boundAt.get(session.id);
  }

  count(): number {
    return this.byId.size;
  }

  /** Users with at least one local session. */
  users(): string[] {
    return [...this.local.keys()];
  }

  private entry(session: Session) {
    return {
      user: session.address.bare().toString(),
      resource: session.address.resource,
      node: this.nodeId,
      sessionId: session.id,
      protocol: session.protocol,
      priority: session.priority,
      available: session.available,
      since: this.boundAt.get(session.id),
    };
  }
}
