/**
 * The operator's operations, protocol-neutral: what the CLI (through the
 * admin socket, bin/admin.ts), the admin page (adapters/http/admin.ts,
 * through the same socket dispatch) and XEP-0133 ad-hoc commands
 * (adapters/xmpp/modules/adhoc.ts) run. One function per operation, so the
 * three front ends cannot drift apart.
 */
import { Address } from './address.ts';
import type { Broker } from './broker.ts';
import type { Envelope } from './envelope.ts';
import { BrokerError, closeReason } from './errors.ts';
import type { Session } from './session.ts';
import { purgeUploads, uploadService } from './upload.ts';

// ---- who is an admin (config `admins`; reloadable) ----

const adminLists = new WeakMap<Broker, Set<string>>();

/**
 * The accounts allowed to administer this node (config key `admins`: `alice`
 * or `alice@domain`); an entry that is not an account name of the domain is
 * ignored with a warning. Replaces the previous list (`parley reload`).
 */
export function setAdmins(broker: Broker, names: readonly string[]): void {
  const set = new Set<string>();
  for (const name of names) {
    const local = accountLocalpart(broker, name);
    if (local) set.add(local);
    else
      broker.log.warn(
        { admin: name },
        `admins: ${name} is not an account name of ${broker.domain}; ignored`,
      );
  }
  adminLists.set(broker, set);
}

/** True when `who` (a JID or a localpart) is one of the configured admins. */
export function isAdmin(broker: Broker, who: Address | string): boolean {
  const local =
    typeof who === 'string'
      ? accountLocalpart(broker, who)
      : who.domain === broker.domain
        ? who.local
        : undefined;
  return local !== undefined && local !== '' && (adminLists.get(broker)?.has(local) ?? false);
}

/** How many admins are configured (the admin page says so when none are). */
export function adminCount(broker: Broker): number {
  return adminLists.get(broker)?.size ?? 0;
}

/** The local part of `name` when it is an account name of this domain (`alice`, `alice@domain`), else undefined. */
export function accountLocalpart(broker: Broker, name: string): string | undefined {
  try {
    const a = name.includes('@') ? Address.parse(name) : broker.accounts.address(name);
    return a.domain === broker.domain && a.local && !a.resource ? a.local : undefined;
  } catch {
    return undefined;
  }
}

// ---- accounts ----

/** A username or a bare JID of this domain → the account's address; item-not-found when it does not exist. */
export async function existingUser(broker: Broker, username: string): Promise<Address> {
  const local = accountLocalpart(broker, username);
  if (local === undefined || !(await broker.accounts.exists(local)))
    throw new BrokerError('item-not-found', `no user ${username}`);
  return broker.accounts.address(local);
}

/** A username or a bare JID of this domain → its localpart; jid-malformed otherwise. */
export function usernameOf(broker: Broker, username: string): string {
  const local = accountLocalpart(broker, username);
  if (local === undefined)
    throw new BrokerError('jid-malformed', `not an account of ${broker.domain}: ${username}`);
  return local;
}

export async function addUser(broker: Broker, username: string, password: string): Promise<void> {
  await broker.accounts.create(usernameOf(broker, username), password);
}

/** The one removal path: sessions, rosters, requests, queues and the account:removed hook. */
export async function removeUser(broker: Broker, username: string): Promise<void> {
  await broker.removeAccount(usernameOf(broker, username));
}

export async function setPassword(
  broker: Broker,
  username: string,
  password: string,
): Promise<void> {
  await broker.accounts.setPassword(usernameOf(broker, username), password);
}

export function listUsers(broker: Broker): Promise<string[]> {
  return broker.accounts.list();
}

export async function userInfo(broker: Broker, username: string) {
  const user = await existingUser(broker, username);
  const account = await broker.accounts.get(user.local);
  const roster = await broker.roster.get(user.toString());
  const last = await broker.logins.get(user.local);
  return {
    user: user.toString(),
    created: account?.created,
    rosterSize: roster.items.length,
    sessions: broker.sessions.sessionsOf(user).map((s) => sessionView(broker, s)),
    offline: await broker.offline.count(user),
    lastLogin: last ?? null,
  };
}

/** An account's roster [XEP-0133 4.8 "Get User Roster"]. */
export async function userRoster(broker: Broker, username: string) {
  const user = await existingUser(broker, username);
  const roster = await broker.roster.get(user.toString());
  return {
    user: user.toString(),
    items: roster.items.map((i) => ({
      jid: i.jid,
      ...(i.name !== undefined && { name: i.name }),
      subscription: i.subscription,
      groups: i.groups,
      ...(i.ask && { ask: true }),
    })),
  };
}

// ---- sessions ----

export function sessionView(broker: Broker, s: Session) {
  return {
    jid: s.address.toString(),
    user: s.address.bare().toString(),
    resource: s.address.resource,
    protocol: s.protocol,
    transport: s.transport,
    address: s.remoteAddress ?? null,
    since: broker.sessions.since(s) ?? null,
    available: s.available,
    priority: s.priority,
  };
}

/** Sessions of this node, of one account (username or bare JID) when `user` is given. */
export function listSessions(broker: Broker, user?: string) {
  return broker.sessions
    .all()
    .filter(
      (s) => user === undefined || s.address.local === user || s.address.bare().toString() === user,
    )
    .map((s) => sessionView(broker, s));
}

/** End one session (a full JID) or every session of an account (a bare JID or a username). */
export async function kick(broker: Broker, jid: string, reason?: string) {
  let addr: Address;
  try {
    addr = jid.includes('@') ? Address.parse(jid) : broker.accounts.address(jid);
  } catch {
    throw new BrokerError('jid-malformed', `not a JID: ${jid}`);
  }
  if (addr.domain !== broker.domain)
    throw new BrokerError('item-not-found', `${jid} is not of ${broker.domain}`);
  const sessions = addr.resource
    ? [broker.sessions.get(addr)].filter((s): s is Session => s !== undefined)
    : broker.sessions.sessionsOf(addr);
  if (sessions.length === 0) throw new BrokerError('item-not-found', `no session of ${jid}`);
  // XMPP: a <policy-violation/> stream error with the text [RFC6120 4.9.3.18]; MQTT: the connection closed.
  const why = closeReason('policy-violation', reason ?? 'kicked by the administrator');
  for (const s of sessions) {
    await broker.sessions.unbind(s, why);
    s.close(why);
  }
  return { kicked: sessions.map((s) => s.address.toString()) };
}

// ---- messages ----

export function messageView(env: Envelope) {
  return {
    from: env.from.toString(),
    to: env.to.toString(),
    type: env.type ?? 'normal',
    ...(env.id !== undefined && { id: env.id }),
    ...(env.subject !== undefined && { subject: env.subject }),
    ...(env.body !== undefined && { body: env.body }),
    ...(env.timestamp !== undefined && { timestamp: env.timestamp }),
  };
}

/**
 * A message from the server's domain [XEP-0133 4.23 "Send Announcement to
 * Online Users"]: a headline to every session online now; with `allUsers`,
 * users not online get a normal message through their offline queue
 * [XEP-0160] (a headline is never stored, RFC6121 8.5.2.1.1).
 */
export async function announce(
  broker: Broker,
  text: string,
  subject: string | undefined,
  allUsers: boolean,
) {
  const from = Address.parse(broker.domain);
  const make = (to: Address, type: string): Envelope => ({
    kind: 'message',
    type,
    from,
    to,
    body: text,
    ...(subject !== undefined && { subject }),
    extensions: [],
    timestamp: Date.now(),
  });
  let sessions = 0;
  for (const s of broker.sessions.all()) {
    await s.deliver(make(s.address, 'headline'));
    sessions++;
  }
  let queued = 0;
  let full = 0;
  if (allUsers) {
    for (const username of await broker.accounts.list()) {
      const user = broker.accounts.address(username);
      if (broker.sessions.sessionsOf(user).length > 0) continue;
      if (await broker.offline.enqueue(make(user, 'normal'))) queued++;
      else full++;
    }
  }
  return { sessions, queued, queueFull: full };
}

export async function offlineShow(broker: Broker, username: string, limit = 100) {
  const user = await existingUser(broker, username);
  const envs = await broker.offline.peek(user, limit);
  return {
    user: user.toString(),
    count: await broker.offline.count(user),
    messages: envs.map(messageView),
  };
}

/**
 * Retention on demand [XEP-0313 does not say how long a server keeps
 * messages]: every message archived before `before` (ms) leaves every
 * archive, or, with `user`, that account's archive only (the other party
 * keeps its copy while it archives it, as with account removal).
 */
export async function purgeArchive(broker: Broker, before: number, user?: string) {
  if (user === undefined) return { removed: await broker.archive.prune(before) };
  const addr = await existingUser(broker, user);
  return { removed: await broker.archive.pruneUser(addr, before), user: addr.toString() };
}

/**
 * The archive's retention policy now rather than at the module's next timer
 * (`modules.archive.maxAgeDays`, `maxPerUser`; 0 = no bound): messages
 * archived longer ago than the age leave every archive, then each archive
 * keeps its newest `maxPerUser`.
 */
export async function applyRetention(
  broker: Broker,
  policy: { maxAgeDays: number; maxPerUser: number },
) {
  const aged =
    policy.maxAgeDays > 0
      ? await broker.archive.prune(Date.now() - policy.maxAgeDays * 86_400_000)
      : 0;
  const trimmed = policy.maxPerUser > 0 ? await broker.archive.trim(policy.maxPerUser) : 0;
  return { aged, trimmed, ...policy };
}

/**
 * `parley upload purge` (docs/upload.md): with neither bound, what the
 * expiry timer would delete (the running node's options decide); else every
 * file and slot created before `before` and/or of one account.
 */
export async function purgeUploadFiles(
  broker: Broker,
  before: number | undefined,
  username: string | undefined,
): Promise<{ removed: number; bytes: number }> {
  if (before === undefined && username === undefined) {
    const svc = uploadService(broker);
    // offline the store has no upload options: the expiry rule needs the running node's
    if (!svc)
      throw new BrokerError(
        'service-unavailable',
        'the expiry purge needs a running node with uploads on; give --before or --user to purge without one',
      );
    const r = await svc.purge();
    return { removed: r.files, bytes: r.bytes };
  }
  const owner = username === undefined ? undefined : broker.accounts.address(username).toString();
  const r = await purgeUploads(broker, (v) => before === undefined || v.created < before, owner);
  return { removed: r.files, bytes: r.bytes };
}

// ---- the node ----

/** A node's state and counters for `parley status` (the broker's counts, CounterMetrics.snapshot). */
export async function nodeStatus(broker: Broker) {
  const counts = broker.metrics.snapshot();
  const pick = (prefix: string) => {
    const out: Record<string, number> = Object.create(null);
    for (const [k, v] of Object.entries(counts))
      if (k.startsWith(prefix)) out[k.slice(prefix.length)] = v;
    return out;
  };
  const byProtocol: Record<string, number> = Object.create(null);
  for (const s of broker.sessions.all()) byProtocol[s.protocol] = (byProtocol[s.protocol] ?? 0) + 1;
  const mem = process.memoryUsage();
  return {
    version: broker.version,
    domain: broker.domain,
    node: broker.cluster.bus.nodeId,
    pid: process.pid,
    uptimeMs: Date.now() - broker.startedAt,
    sessions: broker.sessions.count(),
    sessionsByProtocol: { ...byProtocol },
    users: {
      accounts: (await broker.accounts.list()).length,
      online: broker.sessions.users().length,
    },
    memory: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed },
    connections: { ...pick('connections.') },
    logins: { ...pick('login.') },
    messages: {
      routed: { ...pick('routed.') },
      delivered: { ...pick('delivered.') },
      offlineQueued: counts['offline.queued'] ?? 0,
      archived: counts.archived ?? 0,
    },
    traffic: { ...pick('traffic.') },
    /** every counter, by its dotted name (what /metrics shows, without the histograms) */
    metrics: counts,
  };
}
