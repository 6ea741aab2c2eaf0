import type { ErrorCondition } from './errors.ts';

/**
 * Rooms across nodes: requests held while a room's home cannot be reached
 * (docs/cluster.md, "Rooms", "The home cannot be reached"). A request whose
 * send to the home surely reached no node (`undelivered` on the bus error:
 * the home is killed and not yet reaped, or Redis is away) is held, and so is
 * every later request for that room from this node, in the order they came.
 * At each retry (the live nodes changed, a node was declared dead or came
 * back, the bus reconnected, or a second passed) they are sent again, in
 * order, to the room's home as this node then sees it; what fails again the
 * same way stays held. Each is held for at most `holdMs` (then its sender
 * gets service-unavailable, as without the hold) and at most `max` are held
 * on this node (past it: resource-constraint). A request is run at most once:
 * only a send known to have reached nobody is held.
 *
 * A device that was in the room and told it went away (332, its home died)
 * is no longer an occupant at the next home: its held requests wait until it
 * rejoins (its join goes first, then they follow in their order), within
 * their hold time.
 */

/** One held request of a device about a room. */
export interface Held {
  room: string;
  device: string;
  /** a join (or presence update) to the room: it lets a device's waiting requests go */
  join: boolean;
  /** when it bounces (ms since the epoch) */
  expires: number;
  /** its order on this node */
  seq: number;
  /** send (or run) it at the room's home as this node now sees it; rejects with the bus error */
  dispatch(): Promise<void>;
  /** the sender gets this error (the hold timed out or is full) */
  fail(condition: ErrorCondition, text: string): void;
}

interface RoomHeld {
  items: Held[];
  /** the home a send last failed to reach */
  home: string;
  /** the last send failed: wait for the next retry */
  blocked: boolean;
  /** a send is on its way */
  busy: boolean;
  /** devices told the room went away (332): their requests wait for their rejoin */
  waiting: Set<string>;
}

/** The bus said the message reached no node (cluster/types.ts, `ClusterBus.send`). */
export function undelivered(err: unknown): boolean {
  return (err as { undelivered?: unknown } | undefined)?.undelivered === true;
}

export class RoomHold {
  private readonly rooms = new Map<string, RoomHeld>();
  private count = 0;
  private nextSeq = 1;
  private lastRetry = 0;

  /**
   * @param holdMs how long a request may be held (0: never held)
   * @param max most requests held on this node
   * @param homeOf the room's home as this node sees it now
   * @param moved a room's home changed while its requests were held: the devices of this node told it went away
   */
  constructor(
    readonly holdMs: number,
    readonly max: number,
    private readonly homeOf: (room: string) => string,
    private readonly moved: (room: string, from: string) => void,
  ) {}

  /** Requests held now. */
  get size(): number {
    return this.count;
  }

  /** Is anything held for this room (then new requests queue behind it)? */
  holds(room: string): boolean {
    return this.rooms.has(room);
  }

  /** A fresh order number for a request (taken when it comes, before its first send). */
  seq(): number {
    return this.nextSeq++;
  }

  /**
   * Hold a request: its first send reached nobody (`home` is where it went),
   * or the room already holds others. False when holding is off.
   */
  add(h: Held, home?: string): boolean {
    if (this.holdMs <= 0) return false;
    let r = this.rooms.get(h.room);
    if (!r) {
      if (home === undefined) return false;
      r = { items: [], home, blocked: true, busy: false, waiting: new Set() };
      this.rooms.set(h.room, r);
    }
    if (home !== undefined) r.blocked = true;
    if (this.count >= this.max) {
      h.fail('resource-constraint', 'too many requests wait for their rooms here'); // [RFC6120 8.3.3.18]
      this.dropIfEmpty(h.room, r);
      return true;
    }
    this.count++;
    // a send that failed may come back after later ones were held: in order of arrival
    let i = r.items.length;
    while (i > 0 && r.items[i - 1].seq > h.seq) i--;
    r.items.splice(i, 0, h);
    if (!r.blocked) this.pump(h.room, r);
    return true;
  }

  /** A device of this node was told the room went away (332): its held requests there wait for its rejoin. */
  evicted(room: string, device: string): void {
    const r = this.rooms.get(room);
    if (r?.items.some((h) => h.device === device && !h.join)) r.waiting.add(device);
  }

  /** The device's session ended: its held requests go nowhere. */
  forget(device: string): void {
    for (const [room, r] of this.rooms) {
      const before = r.items.length;
      r.items = r.items.filter((h) => h.device !== device);
      this.count -= before - r.items.length;
      r.waiting.delete(device);
      this.dropIfEmpty(room, r);
    }
  }

  /** Send what is held again (something changed, or `everyMs` passed since the last retry). */
  retry(everyMs = 0): void {
    const now = Date.now();
    if (!this.rooms.size || now - this.lastRetry < everyMs) return;
    this.lastRetry = now;
    for (const [room, r] of this.rooms) {
      r.blocked = false;
      this.pump(room, r);
    }
  }

  /** Bounce what was held too long: the sender gets the error it gets without the hold. */
  expire(now = Date.now()): void {
    for (const [room, r] of this.rooms) {
      const out = r.items.filter((h) => h.expires <= now);
      if (!out.length) continue;
      r.items = r.items.filter((h) => h.expires > now);
      this.count -= out.length;
      for (const h of out) h.fail('service-unavailable', "the room's node cannot be reached");
      for (const d of r.waiting) if (!r.items.some((h) => h.device === d)) r.waiting.delete(d);
      this.dropIfEmpty(room, r);
    }
  }

  /** Bounce everything (the module stops). */
  clear(): void {
    for (const r of this.rooms.values())
      for (const h of r.items) h.fail('service-unavailable', 'groupchat stopped');
    this.rooms.clear();
    this.count = 0;
  }

  private dropIfEmpty(room: string, r: RoomHeld): void {
    if (!r.items.length && !r.busy && this.rooms.get(room) === r) this.rooms.delete(room);
  }

  /**
   * Send the room's held requests, in order, except those of devices that
   * wait for their rejoin (a rejoin lets the device's earlier requests follow
   * it). What reaches nobody again is held again, in its place.
   */
  private pump(room: string, r: RoomHeld): void {
    if (r.busy || r.blocked || !r.items.length) return;
    const home = this.homeOf(room);
    if (home !== r.home) {
      this.moved(room, r.home); // marks the waiting devices (evicted)
      r.home = home;
    }
    // A waiting device's join goes first, then its requests held before it.
    for (const d of [...r.waiting]) {
      const j = r.items.findIndex((h) => h.device === d && h.join);
      if (j < 0) continue;
      r.waiting.delete(d);
      const before = r.items.slice(0, j).filter((h) => h.device === d);
      r.items = [
        ...r.items.slice(0, j).filter((h) => h.device !== d),
        r.items[j],
        ...before,
        ...r.items.slice(j + 1),
      ];
      for (const h of r.items) h.seq = this.nextSeq++;
    }
    const go = r.items.filter((h) => !r.waiting.has(h.device));
    if (!go.length) return;
    r.items = r.items.filter((h) => r.waiting.has(h.device));
    this.count -= go.length;
    r.busy = true;
    // one turn: the bus sends them as one frame, in this order
    const sent = go.map((h) => h.dispatch());
    void Promise.allSettled(sent).then((results) => {
      r.busy = false;
      const again: Held[] = [];
      results.forEach((res, i) => {
        if (res.status === 'fulfilled') return;
        if (undelivered(res.reason)) again.push(go[i]);
        else go[i].fail('service-unavailable', (res.reason as Error)?.message ?? 'failed');
      });
      if (again.length) {
        r.blocked = true;
        r.items = [...again, ...r.items].sort((a, b) => a.seq - b.seq);
        this.count += again.length;
      }
      this.dropIfEmpty(room, r);
      if (!r.blocked) this.pump(room, r); // what came meanwhile
    });
  }
}
