import type { Cluster, SessionEntry } from '../cluster/types.ts';
import type { KeyValueStore, Storage } from '../storage/types.ts';
import { removeAccount } from './account-removal.ts';
import { AccountService, AuthThrottle, type AccountRecord } from './accounts.ts';
import { Address } from './address.ts';
import { ArchiveService, type ArchivePrefs } from './archive.ts';
import type { Envelope, EnvelopeRecord } from './envelope.ts';
import { closeReason, type CloseReason } from './errors.ts';
import { joinCluster, pushRosterToOtherNodes } from './cluster-events.ts';
import { HookBus, type HookSignatures } from './hooks.ts';
import { HostRegistry } from './hosts.ts';
import { RemoteDomains } from './remote.ts';
import { silentLogger, type Logger } from './logger.ts';
import { CounterMetrics, type Metrics } from './metrics.ts';
import { LoadedModule, orderModules, resolveOptions, type ModuleDefinition } from './module.ts';
import { OfflineQueue } from './offline.ts';
import { PresenceService } from './presence.ts';
import { RosterService } from './roster.ts';
import { Router } from './router.ts';
import type { Session } from './session.ts';
import { SessionManager } from './session-manager.ts';

/** Every core hook, typed: [arguments, result]. */
export interface BrokerHooks extends HookSignatures {
  /** fold: return the (possibly rewritten) envelope, or null to drop it */
  'route:filter': [[env: Envelope | null, origin: Session | undefined], Envelope | null];
  /** a message to the server's own address; true when handled */
  'message:host': [[env: Envelope], boolean];
  /**
   * Message lifecycle (protocol-neutral; docs/extending.md). Before routing:
   * a message a session (or a service) hands to the router, before any
   * check; `origin` is the sending session, when there is one.
   */
  'message:route': [[env: Envelope, origin: Session | undefined], void];
  /** a message was handed to one local session (each delivery; not replays from storage) */
  'message:delivered': [[env: Envelope, session: Session], void];
  /**
   * No session takes a storable message: 'queued' when a module stored it
   * for later, 'full' when it would but may not; no answer (no module)
   * bounces it with service-unavailable [RFC6121 8.5.2.1.1, 8.5.2.2.1].
   */
  'message:offline': [[env: Envelope], 'queued' | 'full'];
  /** a message was appended to the timeline: `env.seq` is set (and, with an archive module, its archive id) */
  'message:stored': [[env: Envelope], void];
  'session:bound': [[session: Session], void];
  /**
   * The session now takes messages to its bare address: initial available
   * presence, or an MQTT device that subscribed to its chat topic (the
   * offline module hands over what waited).
   */
  'session:available': [[session: Session], void];
  'session:unbound': [[session: Session, reason: CloseReason], void];
  /**
   * A session broadcast available presence (initial or an update), after
   * contacts and the user's resources got it; `presence` is what was sent
   * (PEP reads entity capabilities from it).
   */
  'presence:available': [[session: Session, presence: Envelope], void];
  /**
   * fold: an available presence a session sends (broadcast or directed),
   * before it goes anywhere; a handler returns it rewritten (Prosody's
   * `pre-presence`: the XEP-0153 avatar hash is put in here).
   */
  'presence:outgoing': [[presence: Envelope, session: Session], Envelope];
  /**
   * An account was removed (its localpart); fired by the one removal path
   * (broker/account-removal.ts) after the core's stores are clean, every
   * handler awaited. Whatever keeps per-user state outside the core's stores
   * registers here.
   */
  'account:removed': [[username: string], void];
  /**
   * Cluster: a node was found dead and its sessions purged (fired on every
   * node, docs/cluster.md); state a node keeps in memory about sessions of
   * other nodes (room occupants) drops them here.
   */
  'node:down': [[node: string, sessions: SessionEntry[]], void];
  /**
   * This node drains and has sent its clients to other nodes; it stops once
   * every handler settled (stream management waits here, bounded, for its
   * sessions to be resumed on another node [XEP-0198 5]).
   */
  'drain:redirected': [[], void];
  /** this node was declared dead while cut off and hears it once the link heals (its state elsewhere was purged) */
  'node:reaped-self': [[], void];
}

/** An account's last login (the session bound), kept by the broker. */
export interface LastLogin {
  /** ms since the epoch */
  at: number;
  protocol: string;
  transport: string;
  resource: string;
  /** the client's address, when the transport knows it */
  address?: string;
}

export interface BrokerOptions {
  domain: string;
  storage: Storage;
  cluster: Cluster;
  log?: Logger;
  metrics?: Metrics;
  /** loaded modules and their options */
  modules?: { def: ModuleDefinition<any>; options?: Record<string, unknown> }[];
  limits?: Partial<BrokerLimits>;
  /** the software's version, reported to clients (XEP-0092, /healthz); bin/ reads it from package.json */
  version?: string;
}

/** Core limits; each is a config option with this default (docs/configuration.md). */
export interface BrokerLimits {
  /** queued offline messages per user before further ones bounce [XEP-0160] */
  offlineMaxPerUser: number;
  /** characters of stored JSON queued offline per user before further messages bounce [XEP-0160] */
  offlineMaxBytesPerUser: number;
  /** roster items per user, on every path that creates one (roster set, subscribe, approval, pre-approval) [RFC6121 2.3.3] */
  rosterMaxItems: number;
  /** unanswered inbound subscription requests kept per user; more are refused with resource-constraint */
  maxPendingSubscriptions: number;
  /** addresses one session may have sent directed presence to; more are refused with resource-constraint [RFC6121 4.6] */
  maxDirectedPresences: number;
  /** sessions per account */
  maxSessionsPerUser: number;
  /** 'replace' kicks the old session on a resource conflict; 'reject' refuses the new one */
  resourceConflict: 'replace' | 'reject';
  /** PBKDF2 iterations for new SCRAM keys */
  scramIterations: number;
  /** failed logins from one address (any account) inside the window before failures are answered slowly */
  authFreeFailures: number;
  /** failed logins against one account (from any address) inside the window before failures are answered slowly */
  authFreeFailuresPerAccount: number;
  authFailureWindowMs: number;
  authMaxDelayMs: number;
  /** password checks in flight from one address; more are refused at once */
  authMaxInFlightPerAddress: number;
  /** password checks in flight for one account; more are refused at once */
  authMaxInFlightPerAccount: number;
}

export const defaultLimits: BrokerLimits = {
  offlineMaxPerUser: 1000,
  offlineMaxBytesPerUser: 16 * 1024 * 1024,
  rosterMaxItems: 1000,
  maxPendingSubscriptions: 1000,
  maxDirectedPresences: 1000,
  maxSessionsPerUser: 10,
  resourceConflict: 'replace',
  scramIterations: 4096,
  authFreeFailures: 3,
  authFreeFailuresPerAccount: 3,
  authFailureWindowMs: 60_000,
  authMaxDelayMs: 5_000,
  authMaxInFlightPerAddress: 32,
  authMaxInFlightPerAccount: 8,
};

/** Owns hooks, modules, router and services; `start()`/`stop()`. */
export class Broker {
  readonly domain: string;
  readonly storage: Storage;
  readonly cluster: Cluster;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly limits: BrokerLimits;
  readonly hooks: HookBus<BrokerHooks>;
  readonly accounts: AccountService;
  readonly throttle: AuthThrottle;
  readonly sessions: SessionManager;
  readonly router: Router;
  readonly roster: RosterService;
  readonly presence: PresenceService;
  readonly archive: ArchiveService;
  readonly offline: OfflineQueue;
  /** service domains served in this node (`conference.{domain}`), see broker/hosts.ts */
  readonly hosts: HostRegistry;
  /** where stanzas to other domains go, when an adapter federates (broker/remote.ts) */
  readonly remote = new RemoteDomains();
  /**
   * Each account's last login (`parley user info`). A store of its own, not a
   * field of the account record: a login must never rewrite the record that
   * holds the SCRAM keys (it could race a password change and undo it).
   */
  readonly logins: KeyValueStore<LastLogin>;
  readonly startedAt = Date.now();
  /** the software's version (BrokerOptions.version) */
  readonly version: string;
  /** the option objects the services read their limits from, changed in place by setLimits */
  private readonly limitViews: ReturnType<typeof limitViews>;
  private readonly moduleDefs: { def: ModuleDefinition<any>; options?: Record<string, unknown> }[];
  private readonly loaded: LoadedModule[] = [];
  private running = false;

  constructor(opts: BrokerOptions) {
    this.domain = Address.of('', opts.domain).domain;
    this.version = opts.version ?? '0.0.0-dev';
    this.storage = opts.storage;
    this.cluster = opts.cluster;
    this.log = opts.log ?? silentLogger;
    this.metrics = opts.metrics ?? new CounterMetrics();
    this.limits = { ...defaultLimits, ...opts.limits };
    this.limitViews = limitViews(this.limits);
    this.logins = this.storage.kv<LastLogin>('last-login');
    this.hooks = new HookBus<BrokerHooks>(this.log, (hook, err) =>
      this.metrics.error('hook', `${hook}: ${(err as Error)?.message ?? err}`),
    );
    this.accounts = new AccountService(
      this.storage.kv<AccountRecord>('accounts'),
      this.domain,
      this.limits.scramIterations,
    );
    this.throttle = new AuthThrottle(this.limitViews.throttle);
    this.sessions = new SessionManager(
      this.cluster.registry,
      this.cluster.bus.nodeId,
      this.limitViews.sessions,
      this.log,
      {
        bound: (s) => {
          // Not awaited: the login does not wait for it; the write queue keeps its order with a later removal's delete.
          this.logins
            .put(s.address.local, {
              at: Date.now(),
              protocol: s.protocol,
              transport: s.transport,
              resource: s.address.resource,
              ...(s.remoteAddress && { address: s.remoteAddress }),
            })
            .catch((err) => this.log.warn({ err }, 'last login not recorded'));
          this.hooks.emit('session:bound', s);
        },
        unbound: (s, r) => {
          // A session resumed on another node goes on there: its contacts never saw it go [XEP-0198 5].
          if (r.kind !== 'session-moved')
            this.presence
              .sessionEnded(s)
              .catch((err) => this.log.error({ err }, 'unavailable broadcast failed'));
          this.hooks.emit('session:unbound', s, r);
        },
        unbinding: (done) => void this.hooks.track(done).catch(() => {}),
      },
    );
    this.router = new Router(this);
    this.roster = new RosterService(
      this.storage.kv('roster'),
      this.limitViews.roster,
      (user, item, ver) => {
        for (const s of this.sessions.sessionsOf(Address.parse(user)))
          if (s.interested) s.rosterPush?.(item, ver);
        pushRosterToOtherNodes(this, user, item, ver).catch((err) =>
          this.log.warn({ err }, 'roster push to other nodes failed'),
        );
      },
    );
    this.presence = new PresenceService(
      this,
      this.storage.kv<EnvelopeRecord>('pending-subscriptions'),
    );
    this.archive = new ArchiveService(
      this.storage.archive<EnvelopeRecord>('chat'),
      () => this.metrics.archived(),
      this.storage.kv<ArchivePrefs>('archive-prefs'),
      async (user, contact) => (await this.roster.item(user, contact)) !== undefined,
    );
    this.offline = new OfflineQueue(
      this.storage.queue<EnvelopeRecord>('offline'),
      this.limits.offlineMaxPerUser,
      this.domain,
      this.limits.offlineMaxBytesPerUser,
    );
    this.hosts = new HostRegistry(this.domain);
    this.moduleDefs = opts.modules ?? [];
    joinCluster(this);
  }

  /** True when the address is an account of this domain. */
  /** True when the account is known to exist without a store read (cached); false means "ask userExists". */
  knownUser(addr: Address): boolean {
    return addr.domain === this.domain && !!addr.local && this.accounts.isKnown(addr.local);
  }

  async userExists(addr: Address): Promise<boolean> {
    return addr.domain === this.domain && !!addr.local && (await this.accounts.exists(addr.local));
  }

  /**
   * Remove an account and every trace of it (broker/account-removal.ts, the
   * one removal path); throws item-not-found for an unknown account.
   */
  removeAccount(username: string): Promise<void> {
    return removeAccount(this, username);
  }

  /**
   * New limits on a running broker (`parley reload`): every service reads
   * them from the next check on; nothing already admitted is undone (a queue
   * over a lowered bound keeps its messages and takes no more).
   */
  setLimits(next: BrokerLimits): void {
    Object.assign(this.limits, next);
    const v = limitViews(this.limits);
    Object.assign(this.limitViews.throttle, v.throttle);
    Object.assign(this.limitViews.sessions, v.sessions);
    Object.assign(this.limitViews.roster, v.roster);
    this.offline.setLimits(this.limits.offlineMaxPerUser, this.limits.offlineMaxBytesPerUser);
    this.accounts.setIterations(this.limits.scramIterations);
  }

  /** Loaded module names and definitions (for disco and the compliance table). */
  modules(): ModuleDefinition<any>[] {
    return this.loaded.map((m) => m.def);
  }

  async start(): Promise<void> {
    if (this.running) return;
    await this.storage.open();
    await this.cluster.bus.start();
    const byName = new Map(this.moduleDefs.map((m) => [m.def.name, m]));
    // Every option is checked before any module runs, so a bad one starts nothing.
    const plan = orderModules(this.moduleDefs.map((m) => m.def)).map((def) => ({
      def,
      options: resolveOptions(def, byName.get(def.name)?.options),
    }));
    try {
      for (const { def, options } of plan) {
        const lm = new LoadedModule(def);
        this.loaded.push(lm);
        await def.setup(lm.context(this, options, this.log.child({ module: def.name })));
      }
    } catch (err) {
      // Undo what the modules set up so far, then fail the start.
      while (this.loaded.length) await this.loaded.pop()!.unload();
      await this.cluster.bus.stop();
      await this.storage.close();
      throw err;
    }
    this.running = true;
    this.log.info(
      {
        domain: this.domain,
        node: this.cluster.bus.nodeId,
        modules: this.loaded.map((m) => m.def.name),
      },
      'broker started',
    );
  }

  /** Wait (up to 10 s) for the work hooks.track follows: stored offline messages, ended sessions. */
  private async settled(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), 10_000)));
    if ((await Promise.race([this.hooks.settled(), late])) === 'late')
      this.log.warn('stopping with work still in flight after 10 s');
    clearTimeout(timer);
  }

  /** Close every session (system-shutdown), wait for their leftovers, unload modules, close backends. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const s of this.sessions.all()) {
      await this.sessions.unbind(s, closeReason('system-shutdown'));
      s.close(closeReason('system-shutdown'));
    }
    // Empty before leaving: what the ended sessions left unacknowledged, and what
    // reached this node for them meanwhile, is in offline storage first; then off the
    // bus (senders take their own offline path), and what arrived just before is stored too.
    await this.settled();
    await this.cluster.bus.stop();
    await this.settled();
    while (this.loaded.length) await this.loaded.pop()!.unload();
    await this.storage.close();
    this.log.info('broker stopped');
  }
}

/** The limits as the option objects the services are built with (and setLimits updates in place). */
function limitViews(l: BrokerLimits) {
  return {
    throttle: {
      freeFailures: l.authFreeFailures,
      freeFailuresPerAccount: l.authFreeFailuresPerAccount,
      windowMs: l.authFailureWindowMs,
      maxDelayMs: l.authMaxDelayMs,
      maxInFlightPerAddress: l.authMaxInFlightPerAddress,
      maxInFlightPerAccount: l.authMaxInFlightPerAccount,
    },
    sessions: { resourceConflict: l.resourceConflict, maxSessionsPerUser: l.maxSessionsPerUser },
    roster: { maxItems: l.rosterMaxItems },
  };
}
