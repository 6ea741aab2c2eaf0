// Over 600 lines (about 1,160), one service on purpose: occupants, affiliations, roles and the per-room timeline share
// one in-memory room state and its ordering (fan-out slices keep each device's copies in room order).
// Already out: the model (room.ts), the presence-broadcast rule (room-presence.ts), the cluster seam
// (room-cluster.ts, room-home.ts), the archive queries (room-archive.ts). Next split: moderation (roles,
// affiliations, configure, destroy: about 250 lines), once the pump and save it calls have a seam of their own.
import type { ArchiveStore, KeyValueStore } from '../storage/types.ts';
import { Address } from './address.ts';
import type { Broker } from './broker.ts';
import { BrokerError } from './errors.ts';
import {
  queryRoomArchive,
  roomArchiveBounds,
  type RoomArchivePage,
  type RoomArchiveQuery,
} from './room-archive.ts';
import { broadcastRoles, othersSee, shownRole } from './room-presence.ts';

/**
 * Rooms (docs/groupchat.md): protocol-neutral groupchat. A room has a
 * config, affiliations, occupants and a subject; its messages are appended to
 * one timeline (read diffusion: conversation `room:<jid>`, one record per
 * message whatever the number of members) whose seq is the room's stanza id.
 * XMPP (XEP-0045) and MQTT (`rooms/`) are two renderers onto it: an occupant
 * is a set of devices (full addresses, any protocol) under one nick, and
 * every event a room emits goes to each device through its protocol's
 * renderer. Fan-out runs in slices so that a large room never holds the
 * event loop, in one queue per room so each device sees the room's order.
 */

export * from './room.ts';
import {
  AFF_RANK,
  Room,
  type Actor,
  type Affiliation,
  type Device,
  type DevicePresence,
  type HistoryQuery,
  type Job,
  type JoinRequest,
  type JoinResult,
  type Occupant,
  type PresenceInterest,
  type Reason,
  type Role,
  type RoomConfig,
  type RoomEvent,
  type RoomMessage,
  type RoomProfile,
  type RoomRecord,
  type RoomRenderer,
  type RoomsOptions,
  type TimelineValue,
} from './room.ts';

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

export class RoomService {
  readonly opts: RoomsOptions;
  private readonly broker: Broker;
  private readonly store: KeyValueStore<RoomRecord>;
  private readonly timeline: ArchiveStore<TimelineValue>;
  private readonly profiles: KeyValueStore<RoomProfile>;
  private readonly rooms = new Map<string, Room>();
  private readonly renderers = new Map<string, RoomRenderer>();
  private readonly interests = new Map<string, PresenceInterest>();
  /** rooms each device is in: full address → room locals */
  private readonly deviceRooms = new Map<string, Set<string>>();
  /** rooms being created or loaded, so two joins do not create one twice */
  private readonly creating = new Map<string, Promise<Room>>();

  constructor(
    broker: Broker,
    store: KeyValueStore<RoomRecord>,
    timeline: ArchiveStore<TimelineValue>,
    opts: RoomsOptions,
    profiles: KeyValueStore<RoomProfile>,
  ) {
    this.broker = broker;
    this.store = store;
    this.timeline = timeline;
    this.profiles = profiles;
    this.opts = opts;
  }

  get host(): string {
    return this.opts.host;
  }

  /** Load every persistent room (at start). */
  async restore(): Promise<number> {
    for (const key of await this.store.keys()) {
      const rec = await this.store.get(key);
      if (!rec) continue;
      this.rooms.set(key, await this.fromRecord(key, rec));
    }
    return this.rooms.size;
  }

  private async fromRecord(key: string, rec: RoomRecord): Promise<Room> {
    const room = new Room(
      key,
      this.host,
      { ...this.opts.defaults, ...rec.config },
      rec.creator,
      rec.createdAt,
    );
    for (const [u, a] of rec.affiliations) room.affiliations.set(u, a);
    for (const [u, n] of rec.nicks) room.nicks.set(u, n);
    room.subject = rec.subject;
    room.avatarHash = rec.avatarHash;
    room.firstSeq = rec.firstSeq;
    room.lastSeq = Math.max(rec.firstSeq, await this.timeline.lastSeq(room.conversation));
    return room;
  }

  /**
   * Cluster (broker/room-cluster.ts): read a room's persistent state again
   * from the shared store, because its home moved to this node and another
   * node may have changed it meanwhile. A room with occupants or queued
   * events here is live here and is kept as it is.
   */
  async reload(local: string): Promise<void> {
    const busy = (r: Room | undefined) => !!r && (r.occupants.size > 0 || r.queue.length > 0);
    if (busy(this.rooms.get(local)) || this.creating.has(local)) return;
    const rec = await this.store.get(local);
    const room = rec && (await this.fromRecord(local, rec));
    if (busy(this.rooms.get(local)) || this.creating.has(local)) return;
    if (room) this.rooms.set(local, room);
    else if (this.rooms.get(local)?.config.persistent) this.rooms.delete(local); // destroyed elsewhere
  }

  /** Cluster: the room's home moved away; every occupant leaves with 332 and rejoins at the new home. */
  evict(room: Room): void {
    for (const occ of [...room.occupants.values()]) this.remove(room, occ, [332]);
  }

  /** A protocol's renderer (`session.protocol` → renderer); returns the remover. */
  setRenderer(protocol: string, r: RoomRenderer, presence?: PresenceInterest): () => void {
    this.renderers.set(protocol, r);
    if (presence) this.interests.set(protocol, presence);
    else this.interests.delete(protocol);
    return () => {
      if (this.renderers.get(protocol) !== r) return;
      this.renderers.delete(protocol);
      this.interests.delete(protocol);
    };
  }

  get(local: string): Room | undefined {
    return this.rooms.get(local);
  }

  /** Find a room by its address (any case the address normalises). */
  byAddress(jid: Address): Room | undefined {
    return jid.domain === this.host ? this.rooms.get(jid.local) : undefined;
  }

  list(): Room[] {
    return [...this.rooms.values()];
  }

  /** Rooms listed in the service's items: public ones [XEP-0045 6.3]. */
  publicRooms(): Room[] {
    return this.list().filter((r) => r.config.public);
  }

  /** Normalise a room name as an address localpart; throws jid-malformed. */
  roomLocal(name: string): string {
    const a = Address.of(name, this.host);
    if (!a.local) throw new BrokerError('jid-malformed', 'empty room name');
    return a.local;
  }

  /** A nick as the core accepts it: NFC, no controls, within the byte limit. */
  checkNick(nick: string): string {
    const n = nick.normalize('NFC');
    if (!n.trim()) throw new BrokerError('jid-malformed', 'empty nick'); // [XEP-0045 7.2.1] the nick is the resourcepart
    if (/[\u0000-\u001f\u007f]/.test(n))
      throw new BrokerError('jid-malformed', 'control character in nick'); // [RFC7622 3.4]
    if (bytes(n) > this.opts.nickMaxBytes)
      throw new BrokerError('not-acceptable', `nick longer than ${this.opts.nickMaxBytes} bytes`);
    return n;
  }

  /** Rooms a user created that still exist. */
  createdBy(user: string): number {
    let n = 0;
    for (const r of this.rooms.values()) if (r.creator === user) n++;
    return n;
  }

  /**
   * Create a room owned by `creator`. Throws conflict when it exists,
   * resource-constraint past maxRoomsPerUser, not-acceptable on a bad config.
   */
  async create(local: string, creator: string, config: Partial<RoomConfig> = {}): Promise<Room> {
    if (this.rooms.has(local) || this.creating.has(local))
      throw new BrokerError('conflict', 'room exists');
    if (
      creator &&
      this.opts.maxRoomsPerUser > 0 &&
      this.createdBy(creator) >= this.opts.maxRoomsPerUser
    ) {
      throw new BrokerError(
        'resource-constraint',
        `at most ${this.opts.maxRoomsPerUser} rooms per user`,
      );
    }
    const cfg = this.validate({ ...this.opts.defaults, ...config });
    const p = (async () => {
      const room = new Room(local, this.host, cfg, creator, Date.now());
      // A new room of an old name does not show the old one's timeline.
      room.firstSeq = room.lastSeq = await this.timeline.lastSeq(room.conversation);
      if (creator) room.affiliations.set(creator, 'owner');
      await this.profiles.delete(local); // an earlier room's of the same name, if any
      this.rooms.set(local, room);
      await this.save(room);
      return room;
    })();
    this.creating.set(local, p);
    try {
      return await p;
    } finally {
      this.creating.delete(local);
    }
  }

  /** Check and normalise a config; throws not-acceptable naming the field [XEP-0045 10.2]. */
  validate(c: RoomConfig): RoomConfig {
    const bad = (field: string, why: string): never => {
      throw new BrokerError('not-acceptable', `${field}: ${why}`);
    };
    for (const k of [
      'persistent',
      'public',
      'membersOnly',
      'moderated',
      'allowInvites',
      'allowPrivateMessages',
      'changeSubject',
      'archive',
    ] as const) {
      if (typeof c[k] !== 'boolean') bad(k, 'expected a boolean');
    }
    for (const k of ['name', 'description', 'password'] as const)
      if (typeof c[k] !== 'string') bad(k, 'expected a string');
    if (bytes(c.name) > this.opts.nameMaxBytes)
      bad('name', `longer than ${this.opts.nameMaxBytes} bytes`);
    if (bytes(c.description) > this.opts.descriptionMaxBytes)
      bad('description', `longer than ${this.opts.descriptionMaxBytes} bytes`);
    if (bytes(c.password) > this.opts.passwordMaxBytes)
      bad('password', `longer than ${this.opts.passwordMaxBytes} bytes`);
    if (!Number.isInteger(c.maxOccupants) || c.maxOccupants < 0)
      bad('maxOccupants', 'expected an integer >= 0 (0 = unlimited)');
    if (
      this.opts.maxOccupants > 0 &&
      (c.maxOccupants === 0 || c.maxOccupants > this.opts.maxOccupants)
    ) {
      if (c.maxOccupants > this.opts.maxOccupants)
        bad('maxOccupants', `at most ${this.opts.maxOccupants}`);
    }
    if (
      !Number.isInteger(c.historyLength) ||
      c.historyLength < 0 ||
      c.historyLength > this.opts.maxHistory
    ) {
      bad('historyLength', `expected an integer from 0 to ${this.opts.maxHistory}`);
    }
    if (c.whois !== 'moderators' && c.whois !== 'anyone')
      bad('whois', "expected 'moderators' or 'anyone'");
    const shown = broadcastRoles(c.presenceBroadcast);
    if (!shown) bad('presenceBroadcast', 'expected roles: moderator, participant, visitor');
    return { ...c, presenceBroadcast: shown! };
  }

  /** The effective occupant limit of a room (the service cap applies when the room says unlimited). */
  limitOf(room: Room): number {
    const own = room.config.maxOccupants;
    const cap = this.opts.maxOccupants;
    if (own === 0) return cap;
    return cap === 0 ? own : Math.min(own, cap);
  }

  private async save(room: Room): Promise<void> {
    if (room.gone) return;
    if (room.config.persistent) await this.store.put(room.local, room.record());
    else await this.store.delete(room.local);
  }

  // ---- occupants ----

  /**
   * Enter a room (creating it when it does not exist and `create` is set), or
   * update the device's presence when it is already in under this nick.
   * Errors follow XEP-0045 7.2: not-authorized (password), registration-required
   * (members-only), forbidden (banned), conflict (nick), service-unavailable (full).
   */
  async join(local: string, req: JoinRequest, create = true): Promise<JoinResult> {
    const user = req.device.bare().toString();
    const key = req.device.toString();
    const nick = this.checkNick(req.nick);
    let room = this.rooms.get(local) ?? (await this.creating.get(local));
    let created = false;
    if (!room) {
      if (!create) throw new BrokerError('item-not-found', 'no such room');
      room = await this.create(local, user);
      created = true;
    }
    const current = room.occupantOf(key);
    if (current && current.nick === nick) {
      // [XEP-0045 7.7] presence update of an occupant
      const d = current.devices.get(key)!;
      d.presence = req.presence ?? {};
      this.broadcastPresence(room, current, { reasons: [], about: key });
      return { room, occupant: current, created: false, update: true };
    }
    if (current) {
      await this.changeNick(room, key, nick);
      return { room, occupant: room.occupantOf(key)!, created: false, update: true };
    }
    this.admit(room, user, nick, req.password);
    const aff = room.affiliation(user);
    const holder = room.occupants.get(nick);
    const device: Device = {
      address: req.device,
      key,
      user,
      resource: req.device.resource,
      presence: req.presence ?? {},
      echo: req.echo,
    };
    let occ = holder;
    if (!occ) {
      occ = { nick, user, role: room.defaultRole(aff), devices: new Map() };
      room.occupants.set(nick, occ);
    }
    occ.devices.set(key, device);
    room.byDevice.set(key, nick);
    let set = this.deviceRooms.get(key);
    if (!set) this.deviceRooms.set(key, (set = new Set()));
    set.add(room.local);
    // The newcomer first gets everyone else's presence [XEP-0045 7.2.3], then its own with the others' copy of it.
    // The occupants are taken now; their presence events are built when the job comes up: in a join storm
    // of a large room the queue would otherwise hold an event of every occupant for every waiting newcomer
    // (10,000 MQTT devices joining: 4 GB).
    const joined = occ;
    // Only occupants whose role the room shows [XEP-0045 15.5.3].
    const present: [Occupant, string][] = [];
    for (const o of room.occupants.values())
      if (o !== joined && shownRole(room, o.role)) present.push([o, o.nick]);
    const intro = (): RoomEvent[] => {
      const out: RoomEvent[] = [];
      // Gone or renamed since: the events that say so follow in the queue, so show it as it was or not at all.
      for (const [o, nick] of present)
        if (o.devices.size > 0 && o.role !== 'none' && o.nick === nick)
          out.push(this.presenceEvent(room, o, { reasons: [] }));
      if (holder && joined.devices.has(key))
        out.push(this.presenceEvent(room, joined, { reasons: [], about: key })); // another device of a present occupant
      return out;
    };
    this.enqueue(room, {
      ev: { kind: 'status', room, reasons: [] }, // unused: `lazy` gives the events
      lazy: intro,
      recipients: [device],
      i: 0,
    });
    const reasons: Reason[] = [];
    if (room.config.whois === 'anyone') reasons.push(100); // [XEP-0045 7.2.4]
    if (room.config.archive) reasons.push(170); // [XEP-0045 7.2.12]
    if (created) reasons.push(201); // [XEP-0045 10.1.1]
    if (!holder)
      this.enqueuePresence(
        room,
        occ,
        this.presenceEvent(room, occ, { reasons, about: key }),
        'none',
        () => room!.devices(),
      );
    // The room's avatar, as Prosody sends it to each new occupant session [XEP-0153 on the room JID].
    if (room.avatarHash !== undefined)
      this.enqueue(room, { ev: { kind: 'avatar', room }, recipients: [device], i: 0 });
    // History up to the last message fanned out before this join, then the subject [XEP-0045 7.2.14, 7.2.15].
    const upTo = room.lastSeq;
    const ready = this.historyFor(room, req.history, upTo).then((msgs) => [
      ...msgs.map((msg): RoomEvent => ({ kind: 'message', room: room!, msg, history: true })),
      { kind: 'subject', room: room!, subject: room!.subject } as RoomEvent,
    ]);
    this.enqueue(room, {
      ev: { kind: 'subject', room, subject: room.subject },
      recipients: [device],
      i: 0,
      ready,
    });
    return { room, occupant: occ, created, update: false };
  }

  /**
   * May `user` enter `room` as `nick` (with this password)? Throws the
   * error a join would get [XEP-0045 7.2.5-7.2.9]; a room that does not
   * exist admits anyone (the join creates it).
   */
  admit(room: Room | undefined, user: string, nickIn: string, password?: string): void {
    const nick = this.checkNick(nickIn);
    if (!room) return;
    const aff = room.affiliation(user);
    if (aff === 'outcast') throw new BrokerError('forbidden', 'you are banned from this room'); // [XEP-0045 7.2.7]
    if (room.config.membersOnly && aff === 'none')
      throw new BrokerError('registration-required', 'members only'); // [XEP-0045 7.2.6]
    const moderatorLike = aff === 'owner' || aff === 'admin';
    if (room.config.password && !moderatorLike && password !== room.config.password) {
      throw new BrokerError('not-authorized', 'password required'); // [XEP-0045 7.2.5]
    }
    const holder = room.occupants.get(nick);
    if (holder && holder.user !== user) throw new BrokerError('conflict', 'nick in use'); // [XEP-0045 7.2.8]
    for (const [u, n] of room.nicks) {
      if (n === nick && u !== user)
        throw new BrokerError('conflict', 'nick reserved by another member'); // [XEP-0045 7.2.8]
    }
    const limit = this.limitOf(room);
    if (!holder && limit > 0 && room.occupants.size >= limit && !moderatorLike) {
      throw new BrokerError('service-unavailable', 'room is full'); // [XEP-0045 7.2.9]
    }
  }

  /** What history a joining device gets: the room's default, narrowed by what it asked for. */
  private async historyFor(
    room: Room,
    h: JoinRequest['history'],
    upTo: number,
  ): Promise<RoomMessage[]> {
    let max = Math.min(room.config.historyLength, this.opts.maxHistory);
    if (h?.maxstanzas !== undefined) max = Math.min(max, Math.max(0, h.maxstanzas));
    if (max === 0 || upTo <= room.firstSeq) return [];
    let start = h?.since;
    if (h?.seconds !== undefined) start = Math.max(start ?? 0, Date.now() - h.seconds * 1000);
    const msgs = await this.history(room, {
      beforeSeq: upTo + 1,
      start,
      limit: max,
      reverse: true,
    });
    msgs.reverse();
    if (h?.maxchars !== undefined) {
      // [XEP-0045 7.2.14] maxchars counts the characters of the messages sent, newest kept
      let total = 0;
      let i = msgs.length;
      while (i > 0) {
        const m = msgs[i - 1];
        const n = (m.body ?? '').length + (m.subject ?? '').length + 100;
        if (total + n > h.maxchars) break;
        total += n;
        i--;
      }
      return msgs.slice(i);
    }
    return msgs;
  }

  /** Messages of the room's timeline (only this room's, never an earlier one's of the same name). */
  async history(room: Room, q: HistoryQuery): Promise<RoomMessage[]> {
    const page = await this.query(room, q);
    return page.messages;
  }

  /** A page of the timeline by seq (XEP-0313 on the room: ids are seqs). */
  async query(
    room: Room,
    q: HistoryQuery,
  ): Promise<{ messages: RoomMessage[]; complete: boolean }> {
    const afterSeq = Math.max(q.afterSeq ?? 0, room.firstSeq);
    const limit = Math.min(q.limit ?? this.opts.maxHistory, this.opts.maxHistory);
    const page = await this.timeline.query(room.conversation, {
      afterSeq,
      beforeSeq: q.beforeSeq,
      start: q.start,
      end: q.end,
      limit,
      reverse: q.reverse,
    });
    return {
      messages: page.records.map((r) => ({ ...r.value, seq: r.seq })),
      complete: page.complete,
    };
  }

  /** XEP-0313 on the room: filters (nick, user, time, ids), RSM paging and the count (broker/room-archive.ts). */
  archive(room: Room, q: RoomArchiveQuery): Promise<RoomArchivePage> {
    // Each named id is one read: no more of them than a page holds (as the user archive's ids)
    if (q.ids !== undefined && q.ids.length > this.opts.maxHistory)
      throw new BrokerError('policy-violation', `at most ${this.opts.maxHistory} ids`);
    return queryRoomArchive(this.timeline, room, {
      ...q,
      limit: Math.min(q.limit, this.opts.maxHistory),
    });
  }

  /** The first and last message of the room's archive [XEP-0313 archive-metadata]. */
  archiveBounds(room: Room): Promise<{ first?: RoomMessage; last?: RoomMessage }> {
    return roomArchiveBounds(this.timeline, room);
  }

  /** Nick change of the occupant a device belongs to: every device of it moves [XEP-0045 7.6]. */
  async changeNick(room: Room, deviceKey: string, newNick: string): Promise<void> {
    const occ = room.occupantOf(deviceKey);
    if (!occ) throw new BrokerError('not-acceptable', 'not in the room');
    const nick = this.checkNick(newNick);
    if (nick === occ.nick) return;
    const holder = room.occupants.get(nick);
    if (holder) throw new BrokerError('conflict', 'nick in use'); // [XEP-0045 7.6.3]
    for (const [u, n] of room.nicks)
      if (n === nick && u !== occ.user)
        throw new BrokerError('conflict', 'nick reserved by another member');
    const recipients = room.devices();
    // [XEP-0045 7.6.2] unavailable with 303 and the new nick, then available under the new nick
    const leaving = this.presenceEvent(room, occ, {
      reasons: [303],
      available: false,
      newNick: nick,
    });
    room.occupants.delete(occ.nick);
    occ.nick = nick;
    room.occupants.set(nick, occ);
    for (const k of occ.devices.keys()) room.byDevice.set(k, nick);
    this.enqueuePresence(room, occ, leaving, occ.role, () => recipients);
    this.enqueuePresence(
      room,
      occ,
      this.presenceEvent(room, occ, { reasons: [] }),
      occ.role,
      () => recipients,
    );
  }

  /** A device leaves (unavailable presence, MQTT unsubscribe, session end); idempotent. */
  leave(room: Room, deviceKey: string, status?: string): void {
    const occ = room.occupantOf(deviceKey);
    if (!occ) return;
    const device = occ.devices.get(deviceKey)!;
    if (status !== undefined) device.presence = { status };
    this.dropDevice(room, occ, deviceKey);
    if (occ.devices.size > 0) {
      // Another device keeps the nick: only this one learns it left [XEP-0045 7.14, multi-session].
      const ev = this.presenceEvent(room, occ, {
        reasons: [],
        available: false,
        about: deviceKey,
        presence: device.presence,
      });
      this.enqueue(room, { ev, recipients: [device], i: 0 });
      return;
    }
    room.occupants.delete(occ.nick);
    const ev = this.presenceEvent(room, occ, {
      reasons: [],
      available: false,
      about: deviceKey,
      presence: device.presence,
    });
    this.enqueuePresence(room, occ, ev, occ.role, () => [...room.devices(), device], [device]);
    this.maybeDispose(room);
  }

  /** Remove a device from every room it is in (its session ended). */
  leaveAll(deviceKey: string): void {
    const set = this.deviceRooms.get(deviceKey);
    if (!set) return;
    for (const local of [...set]) {
      const room = this.rooms.get(local);
      if (room) this.leave(room, deviceKey);
    }
    this.deviceRooms.delete(deviceKey);
  }

  /** Rooms a device is in. */
  roomsOfDevice(deviceKey: string): Room[] {
    const out: Room[] = [];
    for (const local of this.deviceRooms.get(deviceKey) ?? []) {
      const r = this.rooms.get(local);
      if (r) out.push(r);
    }
    return out;
  }

  private dropDevice(room: Room, occ: Occupant, key: string): void {
    occ.devices.delete(key);
    room.byDevice.delete(key);
    const set = this.deviceRooms.get(key);
    set?.delete(room.local);
    if (set?.size === 0) this.deviceRooms.delete(key);
  }

  /** A temporary room goes away when its last occupant leaves. */
  private maybeDispose(room: Room): void {
    if (room.occupants.size > 0 || room.config.persistent || room.gone) return;
    room.gone = true;
    this.rooms.delete(room.local);
    if (room.avatarHash !== undefined)
      this.profiles.delete(room.local).catch((err: unknown) => {
        this.broker.log.error({ err, room: room.jid.toString() }, 'room profile removal failed');
      });
  }

  // ---- messages ----

  /**
   * A groupchat message from a device: appended to the room's timeline
   * (seq = the room's stanza id), then fanned out. Throws not-acceptable when
   * the device is not in the room [XEP-0045 7.4], forbidden for a visitor of
   * a moderated room or a subject change not allowed [XEP-0045 7.4, 8.1].
   */
  async post(
    room: Room,
    deviceKey: string,
    m: { body?: string; subject?: string; id?: string; extensions?: string[] },
  ): Promise<RoomMessage> {
    const occ = room.occupantOf(deviceKey);
    if (!occ) throw new BrokerError('not-acceptable', 'you are not in this room'); // [XEP-0045 7.4]
    if (occ.role === 'visitor' || occ.role === 'none')
      throw new BrokerError('forbidden', 'you have no voice in this room'); // [XEP-0045 7.4]
    if (m.subject !== undefined) {
      if (occ.role !== 'moderator' && !room.config.changeSubject)
        throw new BrokerError('forbidden', 'only moderators may change the subject'); // [XEP-0045 8.1]
      if (bytes(m.subject) > this.opts.subjectMaxBytes)
        throw new BrokerError(
          'not-acceptable',
          `subject longer than ${this.opts.subjectMaxBytes} bytes`,
        );
    }
    const timestamp = Date.now();
    const value: TimelineValue = { nick: occ.nick, user: occ.user, timestamp };
    if (m.id !== undefined) value.id = m.id;
    if (m.body !== undefined) value.body = m.body;
    if (m.subject !== undefined) value.subject = m.subject;
    if (m.extensions?.length) value.extensions = m.extensions;
    const rec = await this.timeline.append({
      conversation: room.conversation,
      timestamp,
      owners: [room.jid.toString()],
      with: occ.user,
      id: m.id ?? `${timestamp}`,
      value,
    });
    const msg: RoomMessage = { ...value, seq: rec.seq, origin: deviceKey };
    // Appends settle in call order, so fan-outs are queued in seq order.
    room.lastSeq = Math.max(room.lastSeq, rec.seq);
    room.messages++;
    this.broker.metrics.archived();
    if (m.subject !== undefined) {
      room.subject = { text: m.subject, nick: occ.nick, at: timestamp };
      await this.save(room);
    }
    if (!room.gone)
      this.enqueue(room, { ev: { kind: 'message', room, msg }, recipients: room.devices(), i: 0 });
    return msg;
  }

  /** Content that is not stored (chat states, markers): relayed in the room's order, without a seq. */
  relay(room: Room, deviceKey: string, m: { id?: string; extensions: string[] }): void {
    const occ = room.occupantOf(deviceKey);
    if (!occ) throw new BrokerError('not-acceptable', 'you are not in this room'); // [XEP-0045 7.4]
    const msg: RoomMessage = {
      seq: 0,
      nick: occ.nick,
      user: occ.user,
      id: m.id,
      extensions: m.extensions,
      timestamp: Date.now(),
    };
    this.enqueue(room, { ev: { kind: 'message', room, msg }, recipients: room.devices(), i: 0 });
  }

  /** A private message between occupants [XEP-0045 7.5]. */
  privateMessage(
    room: Room,
    deviceKey: string,
    toNick: string,
    m: { body?: string; id?: string; extensions: string[]; type?: string },
  ): void {
    const occ = room.occupantOf(deviceKey);
    if (!occ) throw new BrokerError('not-acceptable', 'you are not in this room'); // [XEP-0045 7.5]
    if (!room.config.allowPrivateMessages && occ.role !== 'moderator')
      throw new BrokerError('forbidden', 'private messages are off in this room');
    const target = room.occupants.get(toNick);
    if (!target) throw new BrokerError('item-not-found', 'no such occupant'); // [XEP-0045 7.5]
    this.enqueue(room, {
      ev: {
        kind: 'private',
        room,
        nick: occ.nick,
        user: occ.user,
        body: m.body,
        id: m.id,
        extensions: m.extensions,
        type: m.type,
      },
      recipients: [...target.devices.values()],
      i: 0,
    });
  }

  // ---- moderation ----

  private actorAffiliation(room: Room, actor: Actor): Affiliation {
    return actor === 'operator' ? 'owner' : room.affiliation(actor.user);
  }

  private actorRole(room: Room, actor: Actor, deviceKey?: string): Role {
    if (actor === 'operator') return 'moderator';
    const occ = deviceKey ? room.occupantOf(deviceKey) : room.occupantsOf(actor.user)[0];
    return occ?.role ?? 'none';
  }

  /**
   * Change an occupant's role [XEP-0045 8.2-8.6, 9.6]: kick (none), voice
   * (participant/visitor), moderator. Non-moderators get forbidden; kicking
   * or demoting someone of higher affiliation, not-allowed.
   */
  setRole(
    room: Room,
    actor: Actor,
    nick: string,
    role: Role,
    reason?: string,
    actorDevice?: string,
  ): void {
    const myRole = this.actorRole(room, actor, actorDevice);
    const myAff = this.actorAffiliation(room, actor);
    if (myRole !== 'moderator')
      throw new BrokerError('forbidden', 'only moderators may change roles'); // [XEP-0045 8.2]
    const target = room.occupants.get(nick);
    if (!target) throw new BrokerError('item-not-found', 'no such occupant'); // [XEP-0045 8.2] not in the room
    const targetAff = room.affiliation(target.user);
    if (role === 'moderator' || target.role === 'moderator') {
      // [XEP-0045 9.6, 9.7] granting or revoking moderator is an admin's
      if (AFF_RANK[myAff] < AFF_RANK.admin)
        throw new BrokerError('not-allowed', 'only admins may grant or revoke moderator');
    }
    if (
      AFF_RANK[targetAff] >= AFF_RANK.admin &&
      AFF_RANK[targetAff] >= AFF_RANK[myAff] &&
      role !== 'moderator' &&
      actor !== 'operator'
    ) {
      throw new BrokerError('not-allowed', 'cannot change the role of an admin or owner'); // [XEP-0045 8.2]
    }
    const actorNick = actor === 'operator' ? undefined : room.occupantsOf(actor.user)[0]?.nick;
    if (role === 'none') {
      this.remove(room, target, [307], reason, actorNick); // [XEP-0045 8.2] kicked
      return;
    }
    const prev = target.role;
    target.role = role;
    this.broadcastPresence(room, target, { reasons: [], reason, actor: actorNick }, prev);
  }

  /**
   * A visitor of a moderated room asks for voice [XEP-0045 7.13]: the request
   * goes to the moderators' devices (a moderator approves with a role
   * change, {@link setRole}). Errors as ejabberd: not-acceptable when not in
   * the room, not-allowed when the occupant has voice, resource-constraint
   * within `voiceRequestInterval` of the user's last request.
   */
  requestVoice(room: Room, deviceKey: string): void {
    const occ = room.occupantOf(deviceKey);
    if (!occ) throw new BrokerError('not-acceptable', 'you are not in this room'); // [XEP-0045 7.4]
    if (occ.role !== 'visitor') throw new BrokerError('not-allowed', 'only visitors request voice'); // [XEP-0045 7.13]
    const now = Date.now();
    const window = this.opts.voiceRequestInterval * 1000;
    for (const [u, t] of room.voiceRequests) if (now - t >= window) room.voiceRequests.delete(u);
    if (room.voiceRequests.has(occ.user))
      throw new BrokerError(
        'resource-constraint',
        `one voice request per ${this.opts.voiceRequestInterval} s`,
      );
    room.voiceRequests.set(occ.user, now);
    const moderators: Device[] = [];
    for (const o of room.occupants.values())
      if (o.role === 'moderator') moderators.push(...o.devices.values());
    this.enqueue(room, {
      ev: { kind: 'voice-request', room, nick: occ.nick, user: occ.user, jid: deviceKey },
      recipients: moderators,
      i: 0,
    });
  }

  /** Take an occupant out with a reason code (kick 307, ban 301, 321, 322, 332). */
  private remove(
    room: Room,
    occ: Occupant,
    reasons: Reason[],
    reason?: string,
    actor?: string,
    destroy?: { reason?: string; alternate?: string },
  ): void {
    const recipients = room.devices();
    const prev = occ.role;
    occ.role = 'none';
    const ev = this.presenceEvent(room, occ, { reasons, available: false, reason, actor, destroy });
    const own = [...occ.devices.values()];
    for (const key of [...occ.devices.keys()]) this.dropDevice(room, occ, key);
    room.occupants.delete(occ.nick);
    this.enqueuePresence(room, occ, ev, prev, () => recipients, own);
    this.maybeDispose(room);
  }

  /**
   * Change a user's affiliation [XEP-0045 9.1-9.5, 10.3-10.8]: admins set
   * member/none/outcast below admin, owners anything; the last owner stays
   * (conflict). Present occupants get the new affiliation (and role) or
   * leave (301 banned, 321 not a member of a members-only room).
   */
  async setAffiliation(
    room: Room,
    actor: Actor,
    user: string,
    aff: Affiliation,
    reason?: string,
  ): Promise<void> {
    const myAff = this.actorAffiliation(room, actor);
    const old = room.affiliation(user);
    if (AFF_RANK[myAff] < AFF_RANK.admin)
      throw new BrokerError('forbidden', 'only admins and owners may change affiliations'); // [XEP-0045 9.1]
    if (myAff === 'admin' && (AFF_RANK[old] >= AFF_RANK.admin || AFF_RANK[aff] >= AFF_RANK.admin)) {
      throw new BrokerError('not-allowed', 'admins may not change admins or owners'); // [XEP-0045 9.x, 10.x]
    }
    if (old === 'owner' && aff !== 'owner') {
      const owners = [...room.affiliations.values()].filter((a) => a === 'owner').length;
      if (owners <= 1) throw new BrokerError('conflict', 'a room keeps at least one owner'); // [XEP-0045 10.9]
    }
    if (actor !== 'operator' && actor.user === user && aff === 'outcast')
      throw new BrokerError('conflict', 'cannot ban yourself');
    if (aff === 'none') room.affiliations.delete(user);
    else room.affiliations.set(user, aff);
    await this.save(room);
    const actorNick = actor === 'operator' ? undefined : room.occupantsOf(actor.user)[0]?.nick;
    for (const occ of room.occupantsOf(user)) {
      if (aff === 'outcast')
        this.remove(room, occ, [301], reason, actorNick); // [XEP-0045 9.1]
      else if (room.config.membersOnly && aff === 'none')
        this.remove(room, occ, [321], reason, actorNick); // [XEP-0045 9.4]
      else {
        const prev = occ.role;
        occ.role = room.defaultRole(aff);
        this.broadcastPresence(room, occ, { reasons: [], reason, actor: actorNick }, prev);
      }
    }
  }

  /**
   * A new config from an owner [XEP-0045 10.2]. Going members-only takes out
   * non-members (322) [XEP-0045 9.4]; a change announces 104 [XEP-0045 10.2.1].
   */
  async configure(room: Room, actor: Actor, change: Partial<RoomConfig>): Promise<void> {
    if (this.actorAffiliation(room, actor) !== 'owner')
      throw new BrokerError('forbidden', 'only owners may configure the room'); // [XEP-0045 10.2]
    const next = this.validate({ ...room.config, ...change });
    const wasMembersOnly = room.config.membersOnly;
    const wasModerated = room.config.moderated;
    const wasShown = room.config.presenceBroadcast;
    room.config = next;
    await this.save(room);
    this.presenceBroadcastChanged(room, wasShown);
    if (next.membersOnly && !wasMembersOnly) {
      for (const occ of [...room.occupants.values()])
        if (room.affiliation(occ.user) === 'none') this.remove(room, occ, [322]);
    }
    if (next.moderated !== wasModerated) {
      for (const occ of room.occupants.values()) {
        const role = room.defaultRole(room.affiliation(occ.user));
        if (occ.role !== 'moderator' && role !== occ.role) {
          const prev = occ.role;
          occ.role = role;
          this.broadcastPresence(room, occ, { reasons: [] }, prev);
        }
      }
    }
    if (!room.gone)
      this.enqueue(room, {
        ev: { kind: 'status', room, reasons: [104] },
        recipients: room.devices(),
        i: 0,
      });
    this.maybeDispose(room);
  }

  /** The room's profile (vcard-temp XML for XMPP), when one was set. */
  async profile(room: Room): Promise<RoomProfile | undefined> {
    if (room.avatarHash === undefined) return undefined;
    return this.profiles.get(room.local);
  }

  /**
   * Set the room's profile and avatar hash (owners only [XEP-0054 3.2 on a
   * room, as Prosody's vcard_muc]); every occupant's devices are told the new
   * hash. `undefined` data removes it.
   */
  async setProfile(room: Room, actor: Actor, p: RoomProfile | undefined): Promise<void> {
    if (this.actorAffiliation(room, actor) !== 'owner')
      throw new BrokerError('forbidden', "only owners set the room's profile");
    if (p) await this.profiles.put(room.local, p);
    else await this.profiles.delete(room.local);
    room.avatarHash = p?.hash;
    await this.save(room);
    if (!room.gone)
      this.enqueue(room, { ev: { kind: 'avatar', room }, recipients: room.devices(), i: 0 });
  }

  /** Register (reserve) a nick for a user [XEP-0045 7.10]; members-only rooms make the user a member. */
  async registerNick(room: Room, user: string, nick: string): Promise<void> {
    const n = this.checkNick(nick);
    for (const [u, other] of room.nicks)
      if (other === n && u !== user)
        throw new BrokerError('conflict', 'nick reserved by another member'); // [XEP-0045 7.10]
    const aff = room.affiliation(user);
    if (aff === 'outcast') throw new BrokerError('forbidden', 'banned');
    if (room.config.membersOnly && aff === 'none')
      throw new BrokerError('registration-required', 'members only: an admin must add you');
    room.nicks.set(user, n);
    if (aff === 'none') room.affiliations.set(user, 'member');
    await this.save(room);
  }

  /** Destroy a room [XEP-0045 10.9]: everyone leaves with the reason and alternate venue. */
  async destroy(room: Room, actor: Actor, reason?: string, alternate?: string): Promise<void> {
    if (this.actorAffiliation(room, actor) !== 'owner')
      throw new BrokerError('forbidden', 'only owners may destroy the room'); // [XEP-0045 10.9]
    const destroy = { reason, alternate };
    for (const occ of [...room.occupants.values()])
      this.remove(room, occ, [], undefined, undefined, destroy);
    room.gone = true;
    this.rooms.delete(room.local);
    await this.store.delete(room.local);
    await this.profiles.delete(room.local);
  }

  /** An account was removed: its affiliations, nicks and occupancies go. */
  async removeUser(user: string): Promise<void> {
    for (const room of this.list()) {
      for (const occ of room.occupantsOf(user)) this.remove(room, occ, [321]);
      const had = room.affiliations.delete(user) || room.nicks.delete(user);
      room.nicks.delete(user);
      if (room.creator === user) room.creator = '';
      if (had) await this.save(room);
    }
  }

  /** Stop: every occupant leaves with 332 (system shutdown) [XEP-0045 7.2.11]. */
  shutdown(): void {
    for (const room of this.list()) {
      for (const occ of [...room.occupants.values()]) this.remove(room, occ, [332]);
    }
  }

  // ---- events ----

  presenceEvent(
    room: Room,
    occ: Occupant,
    o: {
      reasons: Reason[];
      available?: boolean;
      about?: string;
      presence?: DevicePresence;
      newNick?: string;
      reason?: string;
      actor?: string;
      destroy?: { reason?: string; alternate?: string };
    },
  ): RoomEvent {
    const available = o.available ?? true;
    const first = occ.devices.values().next().value as Device | undefined;
    const presence = o.presence ?? (o.about ? occ.devices.get(o.about)?.presence : first?.presence);
    return {
      kind: 'presence',
      room,
      nick: occ.nick,
      user: occ.user,
      affiliation: room.affiliation(occ.user),
      role: available ? occ.role : 'none',
      available,
      presence,
      reasons: o.reasons,
      about: o.about,
      self: o.about ? new Set([o.about]) : new Set(occ.devices.keys()),
      jid: o.about ?? first?.key ?? occ.user,
      newNick: o.newNick,
      reason: o.reason,
      actor: o.actor,
      destroy: o.destroy,
    };
  }

  private broadcastPresence(
    room: Room,
    occ: Occupant,
    o: { reasons: Reason[]; about?: string; reason?: string; actor?: string },
    prev: Role = occ.role,
  ): void {
    this.enqueuePresence(room, occ, this.presenceEvent(room, occ, o), prev, () => room.devices());
  }

  /**
   * Queue a presence about `occ` (its role before the change: `prev`): its
   * own devices (and `own`, a device that just left it) always get it; the
   * others as the room's presence broadcast says [XEP-0045 15.5.3]
   * (broker/room-presence.ts). `everyone` is only called when others get
   * something, so a join into a room that shows nobody costs no scan.
   */
  private enqueuePresence(
    room: Room,
    occ: Occupant,
    ev: RoomEvent,
    prev: Role,
    everyone: () => Device[],
    own: Device[] = [],
  ): void {
    if (ev.kind !== 'presence') return;
    const mine = [...occ.devices.values(), ...own];
    const see = othersSee(room, ev.available ? occ.role : 'none', prev);
    if (see === 'presence' || (see === 'unavailable' && !ev.available)) {
      this.enqueue(room, { ev, recipients: everyone(), i: 0 });
      return;
    }
    this.enqueue(room, { ev, recipients: mine, i: 0 });
    if (see === 'nothing') return;
    // Shown before, not now: the others see it leave [as Prosody's mod_muc]
    const keys = new Set(mine.map((d) => d.key));
    const others = everyone().filter((d) => !keys.has(d.key));
    const gone = this.presenceEvent(room, occ, { reasons: ev.reasons, available: false });
    this.enqueue(room, { ev: gone, recipients: others, i: 0 });
  }

  /**
   * The roles shown changed [XEP-0045 15.5.3]: occupants of a role no longer
   * shown leave the others' view (unavailable), those of a role now shown
   * enter it, as Prosody does on a muc#roomconfig_presencebroadcast change.
   */
  private presenceBroadcastChanged(room: Room, was: Role[]): void {
    let all: Device[] | undefined;
    for (const occ of room.occupants.values()) {
      const before = was.includes(occ.role);
      const now = shownRole(room, occ.role);
      if (before === now) continue;
      all ??= room.devices();
      const others = all.filter((d) => !occ.devices.has(d.key));
      const ev = this.presenceEvent(room, occ, { reasons: [], available: now });
      this.enqueue(room, { ev, recipients: others, i: 0 });
    }
  }

  /**
   * Queue an event for its recipients (taken now: a device that joins later
   * does not get it, and gets it in its history instead) and start the pump.
   */
  private enqueue(room: Room, job: Job): void {
    room.queue.push(job);
    if (!room.pumping) this.pump(room);
  }

  /**
   * Deliver the room's queued events in order, at most `fanoutSlice`
   * deliveries per turn of the event loop (setImmediate between slices): a
   * 10,000-occupant room does not hold the loop for the whole fan-out, and
   * each device gets the room's events in the room's order.
   */
  private pump(room: Room): void {
    room.pumping = true;
    let budget = this.opts.fanoutSlice;
    while (room.queue.length) {
      const job = room.queue[0];
      if (job.ready) {
        const ready = job.ready;
        job.ready = undefined;
        ready.then(
          (events) => {
            job.events = events;
            this.pump(room);
          },
          (err) => {
            this.broker.log.error({ err, room: room.jid.toString() }, 'room history failed');
            job.events = [job.ev];
            this.pump(room);
          },
        );
        return;
      }
      if (job.lazy) {
        // A join's view of the room, built only for a device that shows presence at all
        job.events = this.wantsPresence(room, job.recipients[0]) ? job.lazy() : [];
        job.lazy = undefined;
      }
      while (job.i < job.recipients.length && budget > 0) {
        const d = job.recipients[job.i++];
        for (const ev of job.events ?? [job.ev]) this.deliver(d, ev);
        budget--;
      }
      if (job.i < job.recipients.length) {
        setImmediate(() => this.pump(room));
        return;
      }
      room.queue.shift();
      if (budget <= 0 && room.queue.length) {
        setImmediate(() => this.pump(room));
        return;
      }
    }
    room.pumping = false;
  }

  private wantsPresence(room: Room, d: Device | undefined): boolean {
    if (!d) return false;
    const s = this.broker.sessions.getByUser(d.user, d.resource);
    if (!s) return !!this.remoteSink; // a device of another node: its node's renderer decides
    const wants = this.interests.get(s.protocol);
    return !wants || wants(s, d, room);
  }

  private deliver(d: Device, ev: RoomEvent): void {
    if (!this.renderLocal(d, ev)) this.remoteSink?.(d, ev);
  }

  /**
   * Cluster: where events for devices without a session on this node go
   * (broker/room-cluster.ts sends them to the device's node); unset on one node.
   */
  remoteSink?: (d: Device, ev: RoomEvent) => void;

  /** Render an event to a device of this node with its protocol's renderer; false when it has no session here. */
  renderLocal(d: Device, ev: RoomEvent): boolean {
    const s = this.broker.sessions.getByUser(d.user, d.resource);
    if (!s) return false;
    const r = this.renderers.get(s.protocol);
    if (!r) return true;
    try {
      r(s, d, ev);
    } catch (err) {
      this.broker.log.error({ err, room: ev.room.jid.toString() }, 'room event rendering failed');
    }
    return true;
  }

  /** Settles when every queued event of the room has been handed out (tests, operators). */
  async drained(room: Room): Promise<void> {
    while (room.queue.length || room.pumping) await new Promise((r) => setImmediate(r));
  }
}

const services = new WeakMap<Broker, RoomService>();

/** The room service of a broker, when the `rooms` module is loaded. */
export function roomService(broker: Broker): RoomService | undefined {
  return services.get(broker);
}

/** For the `rooms` module only. */
export function setRoomService(broker: Broker, s: RoomService | undefined): void {
  if (s) services.set(broker, s);
  else services.delete(broker);
}
