// The rooms' model (docs/groupchat.md): configuration, occupants, devices, events and the Room state
// object. The service that mutates it is broker/rooms.ts; everything here is re-exported from there.
import { Address } from './address.ts';
import { BROADCAST_ROLES } from './room-presence.ts';
import type { Session } from './session.ts';

export type Affiliation = 'owner' | 'admin' | 'member' | 'outcast' | 'none';
export type Role = 'moderator' | 'participant' | 'visitor' | 'none';
export const AFFILIATIONS: readonly Affiliation[] = ['owner', 'admin', 'member', 'outcast', 'none'];
export const ROLES: readonly Role[] = ['moderator', 'participant', 'visitor', 'none'];
export const AFF_RANK: Record<Affiliation, number> = {
  outcast: -1,
  none: 0,
  member: 1,
  admin: 2,
  owner: 3,
};

export interface RoomConfig {
  /** natural-language name */
  name: string;
  /** description, the group's remark */
  description: string;
  /** kept when empty, saved across restarts */
  persistent: boolean;
  /** listed in the service's items */
  public: boolean;
  /** only members (and admins, owners) may enter */
  membersOnly: boolean;
  /** visitors (no affiliation) have no voice */
  moderated: boolean;
  /** '' = none */
  password: string;
  /** 0 = unlimited */
  maxOccupants: number;
  /** who sees occupants' real addresses */
  whois: 'moderators' | 'anyone';
  /** participants may invite (moderators always may) */
  allowInvites: boolean;
  /** occupants may send each other private messages */
  allowPrivateMessages: boolean;
  /** participants may change the subject (moderators always may) */
  changeSubject: boolean;
  /** messages sent to a joining occupant by default */
  historyLength: number;
  /** the timeline is served to members (XEP-0313 on the room, MQTT history) */
  archive: boolean;
  /** roles whose presence the other occupants see [XEP-0045 15.5.3] (broker/room-presence.ts) */
  presenceBroadcast: Role[];
}

/** Presence of one device in a room: protocol fields and, for XMPP, opaque payloads (caps, avatar hash). */
export interface DevicePresence {
  show?: string;
  status?: string;
  extensions?: string[];
}

export interface Device {
  /** full address */
  address: Address;
  /** full address as a string (map key) */
  key: string;
  user: string;
  resource: string;
  presence: DevicePresence;
  /** MQTT: the device wants its own messages back */
  echo?: boolean;
}

export interface Occupant {
  nick: string;
  /** bare address */
  user: string;
  role: Role;
  devices: Map<string, Device>;
}

/** One message of a room's timeline. */
export interface RoomMessage {
  /** room seq: strictly increasing, the room's stanza id */
  seq: number;
  nick: string;
  /** sender's bare address */
  user: string;
  /** the sender's id for it (XMPP id / origin-id) */
  id?: string;
  body?: string;
  subject?: string;
  /** XMPP payloads kept as sent (opaque to the core) */
  extensions?: string[];
  timestamp: number;
  /** the sending device (live messages only; not stored) */
  origin?: string;
}

/**
 * Reasons in room events are XEP-0045 status codes, which every client
 * library knows; the MQTT renderer names them (docs/mqtt-mapping.md).
 * 100 non-anonymous, 110 self, 170 logged, 201 created, 210 nick assigned,
 * 301 banned, 303 nick changed, 307 kicked, 321 affiliation change, 322
 * members-only, 332 shutdown, 104 config changed.
 */
export type Reason = 100 | 104 | 110 | 170 | 201 | 210 | 301 | 303 | 307 | 321 | 322 | 332;

export type RoomEvent =
  | {
      kind: 'presence';
      room: Room;
      nick: string;
      user: string;
      affiliation: Affiliation;
      role: Role;
      available: boolean;
      presence?: DevicePresence;
      reasons: Reason[];
      /** the device this is about, if one */
      about?: string;
      /** devices that get it as their own presence (XEP-0045 status 110) */
      self: ReadonlySet<string>;
      /** the real address shown where the room's whois allows: the device's full address */
      jid: string;
      newNick?: string;
      actor?: string;
      reason?: string;
      destroy?: { reason?: string; alternate?: string };
    }
  | { kind: 'message'; room: Room; msg: RoomMessage; history?: boolean }
  | { kind: 'subject'; room: Room; subject?: RoomSubject }
  | {
      kind: 'private';
      room: Room;
      nick: string;
      user: string;
      body?: string;
      id?: string;
      extensions: string[];
      type?: string;
    }
  | { kind: 'status'; room: Room; reasons: Reason[] }
  /** the room's avatar is set or changed: renderers show `room.avatarHash` */
  | { kind: 'avatar'; room: Room }
  /** a visitor asks for voice [XEP-0045 7.13]; sent to the moderators' devices */
  | { kind: 'voice-request'; room: Room; nick: string; user: string; jid: string };

/** Renders room events for one protocol's devices; must not block (deliver is non-blocking). */
export type RoomRenderer = (session: Session, device: Device, ev: RoomEvent) => void;

/** Does this device show occupants' presence at all? (MQTT: only when subscribed to the room's presence topic.) */
export type PresenceInterest = (session: Session, device: Device, room: Room) => boolean;

export interface RoomSubject {
  text: string;
  nick: string;
  at: number;
}

/** What a persistent room keeps in the `rooms` store. */
export interface RoomRecord {
  config: RoomConfig;
  affiliations: [string, Affiliation][];
  nicks: [string, string][];
  subject?: RoomSubject;
  creator: string;
  createdAt: number;
  /** seqs up to this belong to an earlier room of the same name */
  firstSeq: number;
  /** hash of the room's avatar ('' = a profile without a photo); absent = no profile set */
  avatarHash?: string;
}

/** A room's profile (the XMPP adapter's vcard-temp payload, opaque to the core), kept in the `roomprofiles` store. */
export interface RoomProfile {
  data: string;
  hash: string;
}

export interface RoomsOptions {
  /** domain of room addresses */
  host: string;
  /** rooms one user may have created that still exist; 0 = unlimited */
  maxRoomsPerUser: number;
  /** cap on a room's max occupants; 0 = unlimited */
  maxOccupants: number;
  nickMaxBytes: number;
  subjectMaxBytes: number;
  descriptionMaxBytes: number;
  nameMaxBytes: number;
  passwordMaxBytes: number;
  /** cap on a room's historyLength and on what one join or query returns */
  maxHistory: number;
  /** deliveries per slice; the event loop gets a turn between slices */
  fanoutSlice: number;
  /** seconds between two voice requests of one user in one room */
  voiceRequestInterval: number;
  /** config of new rooms */
  defaults: RoomConfig;
}

export const defaultRoomConfig: RoomConfig = {
  name: '',
  description: '',
  persistent: false,
  public: true,
  membersOnly: false,
  moderated: false,
  password: '',
  maxOccupants: 0,
  whois: 'moderators',
  allowInvites: false,
  allowPrivateMessages: true,
  changeSubject: false,
  historyLength: 20,
  archive: true,
  presenceBroadcast: [...BROADCAST_ROLES],
};

/** The timeline record of a room message. */
export type TimelineValue = Omit<RoomMessage, 'seq'>;

export interface Job {
  ev: RoomEvent;
  recipients: Device[];
  i: number;
  /** resolves before delivery starts (history loaded) */
  ready?: Promise<RoomEvent[]>;
  /** several events to the same recipients, in order */
  events?: RoomEvent[];
  /** builds `events` when the job reaches the head of the queue (a join's view of the room) */
  lazy?: () => RoomEvent[];
}

/** One room; mutate only through {@link RoomService}. */
export class Room {
  readonly local: string;
  readonly jid: Address;
  readonly conversation: string;
  config: RoomConfig;
  readonly affiliations = new Map<string, Affiliation>();
  /** registered nicks: bare address → nick */
  readonly nicks = new Map<string, string>();
  readonly occupants = new Map<string, Occupant>();
  /** full address → nick */
  readonly byDevice = new Map<string, string>();
  subject?: RoomSubject;
  /** hash of the room's avatar ('' = a profile without a photo); undefined = none set */
  avatarHash?: string;
  creator: string;
  createdAt: number;
  firstSeq = 0;
  lastSeq = 0;
  gone = false;
  /** message count since start, for the admin page's rate */
  messages = 0;
  readonly queue: Job[] = [];
  pumping = false;
  /** user → time of its last voice request (ms), for the request interval */
  readonly voiceRequests = new Map<string, number>();

  constructor(local: string, host: string, config: RoomConfig, creator: string, createdAt: number) {
    this.local = local;
    this.jid = Address.of(local, host);
    this.conversation = `room:${this.jid.toString()}`;
    this.config = config;
    this.creator = creator;
    this.createdAt = createdAt;
  }

  affiliation(user: string): Affiliation {
    return this.affiliations.get(user) ?? 'none';
  }

  /** The default role of an affiliation [XEP-0045 5.1.2]. */
  defaultRole(aff: Affiliation): Role {
    if (aff === 'owner' || aff === 'admin') return 'moderator';
    if (aff === 'outcast') return 'none';
    if (this.config.moderated && aff === 'none') return 'visitor';
    return 'participant';
  }

  occupantOf(device: string): Occupant | undefined {
    const nick = this.byDevice.get(device);
    return nick === undefined ? undefined : this.occupants.get(nick);
  }

  /** Occupants whose user is `user`. */
  occupantsOf(user: string): Occupant[] {
    return [...this.occupants.values()].filter((o) => o.user === user);
  }

  deviceCount(): number {
    return this.byDevice.size;
  }

  /** Every device of every occupant, in join order. */
  devices(): Device[] {
    const out: Device[] = [];
    for (const o of this.occupants.values()) for (const d of o.devices.values()) out.push(d);
    return out;
  }

  /** May this user read the room (history, MAM, occupant list) without being in it? */
  mayRead(user: string): boolean {
    const aff = this.affiliation(user);
    if (aff === 'outcast') return false;
    if (this.config.membersOnly) return aff !== 'none';
    return true;
  }

  record(): RoomRecord {
    return {
      config: this.config,
      affiliations: [...this.affiliations],
      nicks: [...this.nicks],
      subject: this.subject,
      creator: this.creator,
      createdAt: this.createdAt,
      firstSeq: this.firstSeq,
      avatarHash: this.avatarHash,
    };
  }
}

export interface JoinRequest {
  device: Address;
  nick: string;
  password?: string;
  presence?: DevicePresence;
  /** history wanted on join [XEP-0045 7.2.14]; absent = the room's default */
  history?: { maxstanzas?: number; maxchars?: number; seconds?: number; since?: number };
  /** the device wants its own messages back (MQTT) */
  echo?: boolean;
}

export interface JoinResult {
  room: Room;
  occupant: Occupant;
  created: boolean;
  /** true when the device was already in the room under this nick (a presence update) */
  update: boolean;
}

export interface HistoryQuery {
  afterSeq?: number;
  beforeSeq?: number;
  start?: number;
  end?: number;
  limit?: number;
  reverse?: boolean;
}

/** Who asks for a moderation change: a user of the room, or the operator (admin socket). */
export type Actor = { user: string } | 'operator';
