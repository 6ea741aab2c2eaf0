/**
 * Test helpers for the core: a Broker over MemoryStorage and the single-node
 * cluster, and fake Sessions that record what the core hands them.
 */
import assert from 'node:assert/strict';
import { LocalBus, LocalRegistry } from '../../cluster/local.ts';
import type { Cluster, SessionRegistry } from '../../cluster/types.ts';
import { MemoryStorage } from '../../storage/memory.ts';
import type { Storage } from '../../storage/types.ts';
import { Address } from '../address.ts';
import { Broker, type BrokerLimits } from '../broker.ts';
import type { Envelope } from '../envelope.ts';
import type { CloseReason } from '../errors.ts';
import offline from '../modules/offline.ts';
import type { RosterItem } from '../roster.ts';
import type { Session } from '../session.ts';

export const DOMAIN = 'localhost';

let sessionCounter = 0;

/** A Session that records deliveries (a shallow copy at delivery time, so later mutation shows). */
export class FakeSession implements Session {
  readonly id = `fake-${++sessionCounter}`;
  readonly address: Address;
  readonly protocol = 'xmpp' as const;
  readonly transport = 'memory';
  priority = 0;
  available = false;
  presence?: Envelope;
  interested = false;
  directed = new Set<string>();
  readonly delivered: Envelope[] = [];
  readonly pushes: { item: RosterItem; ver: string }[] = [];
  closedWith?: CloseReason;
  /** called inside deliver(), before recording */
  onDeliver?: (env: Envelope) => void;

  constructor(address: Address) {
    this.address = address;
  }

  deliver(env: Envelope): void {
    this.onDeliver?.(env);
    this.delivered.push({ ...env });
  }

  rosterPush(item: RosterItem, ver: string): void {
    this.pushes.push({ item, ver });
  }

  close(reason: CloseReason): void {
    this.closedWith = reason;
  }

  /** Deliveries of one kind (and type: 'available' means no type). */
  got(kind: Envelope['kind'], type?: string): Envelope[] {
    return this.delivered.filter(
      (e) =>
        e.kind === kind &&
        (type === undefined || (type === 'available' ? e.type === undefined : e.type === type)),
    );
  }

  clear(): void {
    this.delivered.length = 0;
    this.pushes.length = 0;
  }
}

export async function makeBroker(
  limits: Partial<BrokerLimits> = {},
  users = ['alice', 'bob', 'carol'],
  storage: Storage = new MemoryStorage(),
  registry: SessionRegistry = new LocalRegistry(),
  cluster: Cluster = { bus: new LocalBus('n1'), registry },
): Promise<Broker> {
  const broker = new Broker({
    domain: DOMAIN,
    storage,
    cluster,
    modules: [{ def: offline }],
    limits: { scramIterations: 16, ...limits },
  });
  await broker.start();
  for (const u of users) await broker.accounts.create(u, `${u}-pw`);
  return broker;
}

export const jid = (s: string): Address => Address.parse(s);

/** Bind a fake session for user/resource; optionally send initial presence. */
export async function online(
  broker: Broker,
  user: string,
  resource: string,
  opts: { available?: boolean; priority?: number; interested?: boolean } = {},
): Promise<FakeSession> {
  const full = broker.sessions.reserve(jid(`${user}@${DOMAIN}`), resource);
  const s = new FakeSession(full);
  s.interested = opts.interested ?? false;
  await broker.sessions.bind(s);
  if (opts.available ?? true) await presence(broker, s, { priority: opts.priority });
  return s;
}

/** The session sends a presence stanza (broadcast when `to` is absent). */
export async function presence(
  broker: Broker,
  s: Session,
  opts: { type?: string; to?: string; priority?: number; show?: string } = {},
): Promise<void> {
  const env: Envelope = {
    kind: 'presence',
    from: s.address,
    to: opts.to ? jid(opts.to) : s.address,
    extensions: [],
  };
  if (opts.type) env.type = opts.type;
  if (opts.priority !== undefined) env.priority = opts.priority;
  if (opts.show) env.show = opts.show;
  await broker.presence.fromSession(s, env);
}

let msgCounter = 0;

/** The session sends a message; returns the envelope as routed. */
export async function message(
  broker: Broker,
  from: Session,
  to: string,
  opts: { type?: string; body?: string | null; id?: string } = {},
): Promise<Envelope> {
  const env: Envelope = {
    kind: 'message',
    type: opts.type ?? 'chat',
    from: from.address,
    to: jid(to),
    id: opts.id ?? `m${++msgCounter}`,
    extensions: [],
  };
  if (opts.body !== null) env.body = opts.body ?? `hello ${msgCounter}`;
  await broker.router.route(env, from);
  return env;
}

/** Poll until `check` stops throwing (for work the core does fire-and-forget). */
export async function eventually(check: () => void | Promise<void>, timeout = 1000): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** Let queued microtasks and timers of fire-and-forget work run. */
export function settle(ms = 20): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The error condition of an error envelope. */
export function errorOf(env: Envelope | undefined): string | undefined {
  assert.ok(env, 'expected an envelope');
  assert.equal(env.type, 'error');
  return env.error?.condition;
}
