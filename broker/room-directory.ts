import type { Broker } from './broker.ts';
import type { RoomRecord } from './room.ts';
import type { RoomLocator } from './room-home.ts';
import type { Room, RoomService } from './rooms.ts';

/**
 * The rooms of the whole cluster, for read-only listings (the service's
 * disco#items [XEP-0045 6.3], `parley room list`; docs/cluster.md, "Rooms").
 * Each node knows the live state of the rooms it homes only, so a listing
 * asks every other live node for the rooms it homes ('room-dir', answered by
 * 'room-dir-reply'), waits at most `timeoutMs` (a node that does not answer
 * in time is left out rather than delaying the answer), and adds the
 * persistent rooms from the shared store that no node homes now. On one node
 * it is the node's own rooms.
 */

/** A room's summary for operators and listings. */
export interface RoomSummary {
  room: string;
  name: string;
  occupants: number;
  devices: number;
  persistent: boolean;
  public: boolean;
  membersOnly: boolean;
  lastSeq: number;
  messagesSinceStart: number;
  /** the node homing it now; absent: none (a persistent room, from the store) */
  node?: string;
}

/** One room's summary as its home sees it. */
export function roomSummary(r: Room, node?: string): RoomSummary {
  return {
    room: r.jid.toString(),
    name: r.config.name,
    occupants: r.occupants.size,
    devices: r.deviceCount(),
    persistent: r.config.persistent,
    public: r.config.public,
    membersOnly: r.config.membersOnly,
    lastSeq: r.lastSeq,
    messagesSinceStart: r.messages,
    ...(node !== undefined && { node }),
  };
}

interface DirReply {
  id: number;
  rooms: RoomSummary[];
}

/** ms a listing waits for the other nodes */
export const DIRECTORY_TIMEOUT_MS = 1500;
/** ms one listing of the public rooms answers the service's disco#items */
const CACHE_MS = 2000;

export class RoomDirectory {
  private readonly pending = new Map<number, (rooms: RoomSummary[]) => void>();
  private nextId = 1;
  private stopped = false;
  private cached?: { at: number; rooms: Promise<RoomSummary[]> };

  constructor(
    private readonly broker: Broker,
    private readonly svc: RoomService,
    private readonly locator: RoomLocator & { nodes(): string[] },
    private readonly timeoutMs = DIRECTORY_TIMEOUT_MS,
  ) {
    broker.cluster.bus.onMessage((msg) => {
      if (this.stopped) return;
      if (msg.type === 'room-dir') {
        const { id } = msg.payload as { id: number };
        this.broker.cluster.bus
          .send(msg.from, 'room-dir-reply', { id, rooms: this.homed() } satisfies DirReply)
          .catch(() => {});
      } else if (msg.type === 'room-dir-reply') {
        const r = msg.payload as DirReply;
        this.pending.get(r.id)?.(r.rooms);
      }
    });
  }

  stop(): void {
    this.stopped = true;
    for (const done of this.pending.values()) done([]);
    this.pending.clear();
  }

  /** The rooms this node homes (live here). */
  private homed(): RoomSummary[] {
    const self = this.locator.self;
    return this.svc
      .list()
      .filter((r) => this.locator.home(r.local) === self)
      .map((r) => roomSummary(r, self));
  }

  /**
   * Every room of the cluster: those the live nodes home (answered in time),
   * then the persistent ones no node answered for (`seqs`: with their last
   * seq, one store read each; else 0).
   */
  async list(seqs = false): Promise<RoomSummary[]> {
    const others = this.others();
    if (!others.length) return this.svc.list().map((r) => roomSummary(r));
    const [stored, ...answers] = await Promise.all([
      this.stored(seqs),
      ...others.map((n) => this.ask(n)),
    ]);
    const byRoom = new Map<string, RoomSummary>();
    for (const list of [this.homed(), ...answers]) for (const s of list) byRoom.set(s.room, s);
    for (const s of stored) if (!byRoom.has(s.room)) byRoom.set(s.room, s);
    return [...byRoom.values()].sort((a, b) => (a.room < b.room ? -1 : a.room > b.room ? 1 : 0));
  }

  /**
   * The public rooms of the cluster, as the service's items list them
   * [XEP-0045 6.3]. Anyone may ask, so one listing serves every request for
   * `CACHE_MS` (a burst of disco#items costs one round of the nodes and one
   * read of the store).
   */
  publicRooms(): Promise<RoomSummary[]> {
    if (!this.others().length)
      return Promise.resolve(this.svc.publicRooms().map((r) => roomSummary(r)));
    const now = Date.now();
    if (!this.cached || now - this.cached.at > CACHE_MS)
      this.cached = { at: now, rooms: this.list().then((l) => l.filter((s) => s.public)) };
    const p = this.cached.rooms;
    p.catch(() => (this.cached = undefined));
    return p;
  }

  /** The other live nodes (none on one node). */
  private others(): string[] {
    return this.locator.nodes().filter((n) => n !== this.locator.self);
  }

  /** One node's rooms, or none when it does not answer in time. */
  private ask(node: string): Promise<RoomSummary[]> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done([]), this.timeoutMs);
      const done = (rooms: RoomSummary[]) => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(rooms);
      };
      this.pending.set(id, done);
      this.broker.cluster.bus.send(node, 'room-dir', { id }).catch(() => done([]));
    });
  }

  /** The persistent rooms in the shared store (a room no node homes now has no occupant). */
  private async stored(seqs: boolean): Promise<RoomSummary[]> {
    const recs = await this.broker.storage
      .kv<RoomRecord>('rooms')
      .entries('')
      .catch(() => [] as [string, RoomRecord][]);
    const timeline = this.broker.storage.archive('rooms');
    return Promise.all(
      recs.map(async ([local, rec]): Promise<RoomSummary> => {
        const config = { ...this.svc.opts.defaults, ...rec.config };
        const room = `${local}@${this.svc.host}`;
        const last = seqs ? await timeline.lastSeq(`room:${room}`).catch(() => 0) : 0;
        return {
          room,
          name: config.name,
          occupants: 0,
          devices: 0,
          persistent: true,
          public: config.public,
          membersOnly: config.membersOnly,
          lastSeq: Math.max(rec.firstSeq, last),
          messagesSinceStart: 0,
        };
      }),
    );
  }
}
