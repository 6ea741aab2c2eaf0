import type { Role, Room } from './room.ts';

/**
 * Presence broadcast per role (docs/groupchat.md, "Presence broadcast"):
 * a room's `presenceBroadcast` lists the roles whose presence the other
 * occupants see [XEP-0045 15.5.3, muc#roomconfig_presencebroadcast]. An
 * occupant whose role is not listed is seen by its own devices only (its
 * self-presence, status 110, always goes out); messages reach everyone
 * whatever the list. The rule is Prosody's mod_muc: a presence about an
 * occupant goes to the others when its role (after the change) is listed, or
 * as unavailable when only its role before the change was (it leaves their
 * view); otherwise to nobody else, so a join into a room that shows nobody's
 * presence builds no event per occupant.
 */

/** The roles a room may list (`none` is no occupant's role in a room). */
export const BROADCAST_ROLES: readonly Role[] = ['moderator', 'participant', 'visitor'];

/** Does the room show occupants of this role to the others? */
export function shownRole(room: Room, role: Role): boolean {
  return room.config.presenceBroadcast.includes(role);
}

/**
 * What the other occupants get of a presence about an occupant whose role
 * goes from `prev` to `role` ('none' when it leaves): the presence as it is,
 * an unavailable one (it was shown and is not any more), or nothing.
 */
export function othersSee(
  room: Room,
  role: Role,
  prev: Role,
): 'presence' | 'unavailable' | 'nothing' {
  if (role !== 'none' && shownRole(room, role)) return 'presence';
  if (prev !== 'none' && shownRole(room, prev)) return 'unavailable';
  return 'nothing';
}

/** A config value as a role list: the listed roles in canonical order, or undefined when one is not a role. */
export function broadcastRoles(v: unknown): Role[] | undefined {
  if (!Array.isArray(v)) return undefined;
  if (!v.every((r) => typeof r === 'string' && (BROADCAST_ROLES as string[]).includes(r)))
    return undefined;
  return BROADCAST_ROLES.filter((r) => v.includes(r));
}
