import type { Logger } from '../../broker/index.ts';
import type { SessionEraser } from './options.ts';

/**
 * Bounds on what persistent sessions (clean session 0) keep while their
 * client is away (issue 20, item 12):
 *
 * - `maxOfflineQueuePerClient`: aedes stores every QoS 1/2 message for every
 *   persistent subscription (`outgoingEnqueueCombi`, before fan-out) until the
 *   client acknowledges it. For a client that is not connected, past the
 *   bound a new message is not stored for it: dropped and counted, the oldest
 *   kept, as Mosquitto does with `max_queued_messages`. A connected client is
 *   not cut here (its fan-out queue is bounded by `maxQueuedMessages`, and
 *   skipping the store would make aedes drop the connection); its stored
 *   messages count, so once it leaves nothing more is stored past the bound.
 * - `maxPersistentSessionsPerUser`: client ids with a persistent session per
 *   account. One more is refused at CONNECT (auth.ts answers 0x05).
 *
 * A CONNECT with clean session 1 discards the stored session [MQTT-3.1.2-6]:
 * aedes removes its subscriptions but answers the queue's removal through
 * `outgoingClearMessageId`, which a clean client never reaches with a
 * durable store (persistence.ts answers it without the store), so the
 * queue came back at the next clean-session-0 connection. Here the queue is
 * cleared with the subscriptions.
 */

type Fn = (...args: unknown[]) => Promise<unknown>;
type Sub = { clientId: string };

export interface StoredSessionLimits {
  maxOfflineQueuePerClient: number;
  maxPersistentSessionsPerUser: number;
}

export interface StoredSessionEvents {
  /** a QoS 1/2 message was not stored for an offline client; `first` for the first of an episode */
  dropped(clientId: string, first: boolean): void;
}

/** The account part of an internal client id `{user}/{client id}` (context.ts). */
function userOf(id: string): string {
  const slash = id.indexOf('/');
  return slash === -1 ? '' : id.slice(0, slash);
}

export class StoredSessions {
  /** stored QoS 1/2 messages per client id, counted on first use */
  private readonly queued = new Map<string, number>();
  private readonly counting = new Map<string, Promise<void>>();
  /** client ids dropping messages now (one log line per episode) */
  private readonly dropping = new Set<string>();
  /** persistent client ids per account */
  private readonly byUser = new Map<string, Set<string>>();
  private readonly limits: StoredSessionLimits;
  private readonly store?: SessionEraser;
  private readonly connected: (id: string) => boolean;
  private readonly events: StoredSessionEvents;
  private readonly log: Logger;
  private p?: Record<string, Fn>;

  constructor(
    limits: StoredSessionLimits,
    store: SessionEraser | undefined,
    connected: (id: string) => boolean,
    events: StoredSessionEvents,
    log: Logger,
  ) {
    this.limits = limits;
    this.store = store;
    this.connected = connected;
    this.events = events;
    this.log = log;
  }

  /** The persistent sessions already stored (once at start). */
  async load(): Promise<void> {
    for (const id of (await this.store?.sessionIds?.()) ?? []) this.add(id);
  }

  /** Wrap the aedes persistence's queue and clean-up calls (before aedes uses it). */
  install(persistence: object): void {
    const p = persistence as Record<string, Fn>;
    this.p = p;
    const enqueue = p.outgoingEnqueueCombi.bind(p);
    const clear = p.outgoingClearMessageId.bind(p);
    const clean = p.cleanSubscriptions.bind(p);
    p.outgoingEnqueueCombi = async (subs: unknown, packet: unknown) => {
      const list = (subs as Sub[] | undefined) ?? [];
      if (list.length === 0) return enqueue(subs, packet);
      await Promise.all(list.map((s) => this.counted(s.clientId)));
      const keep: Sub[] = [];
      for (const s of list) {
        const n = this.queued.get(s.clientId) ?? 0;
        if (n >= this.limits.maxOfflineQueuePerClient && !this.connected(s.clientId)) {
          // [MQTT-3.1.2-5] the session keeps what it stored; past the bound new messages are dropped (Mosquitto's max_queued_messages)
          this.events.dropped(s.clientId, !this.dropping.has(s.clientId));
          this.dropping.add(s.clientId);
          continue;
        }
        this.queued.set(s.clientId, n + 1);
        keep.push(s);
      }
      return enqueue(keep, packet);
    };
    p.outgoingClearMessageId = async (client: unknown, packet: unknown) => {
      const found = await clear(client, packet);
      const id = (client as { id: string }).id;
      const n = this.queued.get(id);
      if (found !== undefined && n !== undefined) {
        this.queued.set(id, Math.max(0, n - 1));
        if (n - 1 < this.limits.maxOfflineQueuePerClient) this.dropping.delete(id);
      }
      return found;
    };
    // aedes calls it for a clean-session CONNECT (after authentication), the eraser for a removed account.
    p.cleanSubscriptions = async (client: unknown) => {
      await clean(client);
      await this.discard((client as { id: string }).id);
    };
  }

  /**
   * A CONNECT with clean session 0 for `id` (authenticated): false when the
   * account already has maxPersistentSessionsPerUser other persistent
   * sessions. Counted from here on.
   */
  admit(id: string): boolean {
    const ids = this.byUser.get(userOf(id));
    if (ids?.has(id)) return true;
    if ((ids?.size ?? 0) >= this.limits.maxPersistentSessionsPerUser) return false;
    this.add(id);
    return true;
  }

  /** Every trace of an account's sessions is gone (account removal). */
  forgetUser(user: string): void {
    for (const id of this.byUser.get(user) ?? []) this.forgetId(id);
    this.byUser.delete(user);
  }

  /** The session of `id` ends [MQTT-3.1.2-6]: its stored queue goes with its subscriptions. */
  private async discard(id: string): Promise<void> {
    this.forgetId(id);
    const ids = this.byUser.get(userOf(id));
    ids?.delete(id);
    if (ids?.size === 0) this.byUser.delete(userOf(id));
    if (this.store?.clearQueue) await this.store.clearQueue(id);
  }

  private forgetId(id: string): void {
    this.queued.delete(id);
    this.counting.delete(id);
    this.dropping.delete(id);
  }

  private add(id: string): void {
    const user = userOf(id);
    let ids = this.byUser.get(user);
    if (!ids) this.byUser.set(user, (ids = new Set()));
    ids.add(id);
  }

  /** Count a client's stored queue once (through the persistence, which answers at once for a client with nothing stored). */
  private counted(id: string): Promise<void> {
    if (this.queued.has(id)) return Promise.resolve();
    let c = this.counting.get(id);
    if (!c) {
      c = (async () => {
        let n = 0;
        try {
          const stream = (
            this.p!.outgoingStream as unknown as (c: { id: string }) => AsyncIterable<unknown>
          )({ id });
          for await (const _ of stream) n++;
        } catch (err) {
          this.log.warn({ err, client: id }, 'mqtt: could not count a stored queue');
        }
        if (this.counting.get(id) === c) this.queued.set(id, (this.queued.get(id) ?? 0) + n);
        this.counting.delete(id);
      })();
      this.counting.set(id, c);
    }
    return c;
  }
}
