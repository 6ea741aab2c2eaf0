/**
 * Where a room lives in a cluster (docs/cluster.md, "Rooms"): the seam
 * (`RoomLocator`) and the home choice, kept apart from the bus traffic of
 * broker/room-cluster.ts.
 */

import { Address } from './address.ts';
import type { Device, Room, RoomEvent } from './rooms.ts';

/** Where a room's live state is (the seam): one node on a single node, a hash over the live nodes in a cluster. */
export interface RoomLocator {
  readonly self: string;
  /** the node id of the room's home */
  home(local: string): string;
}

/**
 * Rendezvous (highest random weight) hashing: the home of a room is the
 * live node with the highest hash of (node, room). Every node that sees the
 * same live nodes picks the same home, and a node going away moves only its
 * own rooms.
 */
export function rendezvous(local: string, nodes: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestW = -1;
  for (const n of nodes) {
    const w = weight(n, local);
    if (w > bestW || (w === bestW && best !== undefined && n < best)) {
      best = n;
      bestW = w;
    }
  }
  return best;
}

/** FNV-1a over "node\0room", then a final avalanche (murmur3's fmix32). */
function weight(node: string, local: string): number {
  let h = 0x811c9dc5;
  const s = `${node}\u0000${local}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A device of this node as the room events of a home elsewhere name it (its session renders them). */
export function remoteDevice(key: string, echo?: boolean): Device {
  const address = Address.parse(key);
  return {
    address,
    key,
    user: address.bare().toString(),
    resource: address.resource,
    presence: {},
    echo,
  };
}

/**
 * The room went away for a device of this node (its home died or moved): its
 * own unavailable presence with 332, as for a service shutting down
 * [XEP-0045 7.2.11].
 */
export function roomGone(room: Room, nick: string, d: Device): RoomEvent {
  return {
    kind: 'presence',
    room,
    nick,
    user: d.user,
    affiliation: 'none',
    role: 'none',
    available: false,
    reasons: [332],
    about: d.key,
    self: new Set([d.key]),
    jid: d.key,
  };
}
