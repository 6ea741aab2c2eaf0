/**
 * What crosses the bus for rooms (docs/cluster.md, "Rooms"), kept apart
 * from the traffic itself (broker/room-cluster.ts): the requests a device's
 * node sends to a room's home and how the home runs the protocol-neutral
 * ones, and the events a home sends back and how a node rebuilds them.
 */
import { Address } from './address.ts';
import type { EnvelopeRecord } from './envelope.ts';
import { BrokerError, type ErrorCondition } from './errors.ts';
import { remoteDevice } from './room-home.ts';
import {
  Room,
  type Device,
  type DevicePresence,
  type Role,
  type RoomConfig,
  type RoomEvent,
  type RoomService,
} from './rooms.ts';

/** A protocol-neutral request about a room, from a device (MQTT's operations; XMPP sends its stanza). */
export type RoomOp =
  | { t: 'stanza'; env: EnvelopeRecord }
  | { t: 'join'; nick: string; password?: string; echo?: boolean; presence?: DevicePresence }
  | { t: 'post'; body?: string; subject?: string; id?: string }
  | { t: 'leave'; status?: string }
  | { t: 'nick'; nick?: string; echo?: boolean }
  /** would the room admit the device under this nick (an MQTT SUBACK)? Changes nothing */
  | { t: 'admit'; nick: string; password?: string }
  /** the device's session ended */
  | { t: 'gone' };

export interface RoomCmd {
  room: string;
  /** the device's full address */
  device: string;
  /** set when the sender waits for a 'room-reply' */
  id?: number;
  op: RoomOp;
  /** the device's node, when a node passed the request on (absent: the sender) */
  origin?: string;
  /** how often it was passed on: once, it runs wherever it lands (except on a draining node, which passes it on again) */
  hops?: number;
}

export interface RoomReply {
  id: number;
  error?: { condition: ErrorCondition; text?: string };
}

/** A target device of a 'room-ev', with what its renderer needs of it. */
export interface EvTarget {
  key: string;
  /** its occupant's nick and role (the viewer's role decides what a presence shows) */
  nick?: string;
  role?: Role;
  echo?: boolean;
}

export interface RoomEv {
  room: { local: string; config: RoomConfig; avatarHash?: string };
  ev: Record<string, unknown>;
  to: EvTarget[];
}

/** A room a device of this node is in (or asked to enter) whose home is another node. */
export interface Visit {
  home: string;
  /** the device's nick there, once the home said it is in */
  nick?: string;
  config?: RoomConfig;
}

/**
 * Run a protocol-neutral request at the room's home, with the room
 * service's own calls (as on one node).
 */
export async function runOp(
  svc: RoomService,
  local: string,
  device: string,
  op: Exclude<RoomOp, { t: 'stanza' }>,
): Promise<void> {
  const room = svc.get(local);
  switch (op.t) {
    case 'join':
      await svc.join(local, {
        device: Address.parse(device),
        nick: op.nick,
        password: op.password,
        echo: op.echo,
        presence: op.presence ?? {},
      });
      return;
    case 'post':
      if (!room) throw new BrokerError('item-not-found', 'no such room');
      await svc.post(room, device, { body: op.body, subject: op.subject, id: op.id });
      return;
    case 'leave':
      if (room) svc.leave(room, device, op.status);
      return;
    case 'gone':
      if (room) svc.leave(room, device);
      return;
    case 'admit':
      if (room?.occupantOf(device)) return;
      svc.admit(room, Address.parse(device).bare().toString(), op.nick, op.password); // [XEP-0045 7.2.5-7.2.9]
      return;
    case 'nick': {
      const occ = room?.occupantOf(device);
      if (!room || !occ) return;
      if (op.nick !== undefined && op.nick !== occ.nick)
        await svc.changeNick(room, device, op.nick); // [XEP-0045 7.6]
      if (op.echo !== undefined) occ.devices.get(device)!.echo = op.echo;
      return;
    }
  }
}

/**
 * A home's event as the node of its target devices rebuilds it: a room with
 * those devices' occupants (their nicks and roles decide what renderers
 * show them) and the event on it.
 */
export function decodeEv(
  p: RoomEv,
  host: string,
): { room: Room; devices: Device[]; ev: RoomEvent } {
  const room = new Room(p.room.local, host, p.room.config, '', 0);
  room.avatarHash = p.room.avatarHash;
  const devices: Device[] = [];
  for (const t of p.to) {
    const d = remoteDevice(t.key, t.echo);
    devices.push(d);
    if (t.nick === undefined) continue;
    let occ = room.occupants.get(t.nick);
    if (!occ) {
      occ = { nick: t.nick, user: d.user, role: t.role ?? 'none', devices: new Map() };
      room.occupants.set(t.nick, occ);
    }
    occ.devices.set(t.key, d);
    room.byDevice.set(t.key, t.nick);
  }
  const raw = p.ev;
  const ev = (
    raw.kind === 'presence'
      ? { ...raw, room, self: new Set(raw.self as string[]) }
      : { ...raw, room }
  ) as RoomEvent;
  return { room, devices, ev };
}
