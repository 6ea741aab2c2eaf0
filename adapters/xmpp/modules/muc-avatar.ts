import { createHash } from 'node:crypto';
import { escapeXMLText, type Element } from '@xmpp/xml';
import { BrokerError, type Room, type RoomService } from '../../../broker/index.ts';
import { NS_VCARD, NS_VCARD_UPDATE } from '../ns.ts';

/**
 * Room avatars (docs/groupchat.md#room-avatars), as Prosody's vcard_muc does
 * them: a vcard-temp [XEP-0054] on the room JID that anyone who may see the
 * room reads and only owners set; its photo's SHA-1 [XEP-0153] goes to
 * occupants in a presence from the room's bare JID (at each join and at each
 * change) and into the room's disco#info as `muc#roominfo_avatarhash`
 * (what Conversations and Gajim read). The core keeps the vCard (opaque) and
 * the hash with the room, so both survive a restart of a persistent room.
 */

const BASE64 = /^[A-Za-z0-9+/\s]*={0,2}\s*$/;

/** The SHA-1 (hex) of a vCard's PHOTO/BINVAL, '' when it has none [XEP-0153 3.1]; bad base64: bad-request. */
export function photoHash(vcard: Element): string {
  const binval = vcard.getChild('PHOTO')?.getChild('BINVAL');
  if (!binval) return '';
  const b64 = binval.getText();
  if (!BASE64.test(b64)) throw new BrokerError('bad-request', 'PHOTO/BINVAL is not base64'); // [XEP-0054 PHOTO]
  const bytes = Buffer.from(b64.replace(/\s+/g, ''), 'base64');
  return bytes.length ? createHash('sha1').update(bytes).digest('hex') : '';
}

/** vCard get on the room JID: anyone who may see the room [XEP-0054 3.1]; none set: an empty vCard. */
export async function roomVcard(svc: RoomService, room: Room, user: string): Promise<string> {
  if (!room.mayRead(user) && !room.occupantsOf(user).length)
    throw new BrokerError('forbidden', 'members only'); // members-only rooms: unreadable to others by every route
  const p = await svc.profile(room);
  return p?.data ?? `<vCard xmlns='${NS_VCARD}'/>`;
}

/**
 * vCard set on the room JID: owners only (forbidden), at most `maxBytes` of
 * XML (not-acceptable). An empty vCard removes the avatar.
 */
export async function setRoomVcard(
  svc: RoomService,
  room: Room,
  user: string,
  vcard: Element,
  maxBytes: number,
): Promise<void> {
  if (room.affiliation(user) !== 'owner')
    throw new BrokerError('forbidden', "only owners set the room's vCard"); // [XEP-0054 3.2] as Prosody's vcard_muc
  const data = vcard.toString();
  if (Buffer.byteLength(data) > maxBytes)
    throw new BrokerError('not-acceptable', `vCard larger than ${maxBytes} bytes`);
  const empty = vcard.children.length === 0;
  await svc.setProfile(room, { user }, empty ? undefined : { data, hash: photoHash(vcard) });
}

/** The XEP-0153 update element with the room's current hash (empty photo = no avatar). */
export function avatarUpdate(room: Room): string {
  return `<x xmlns='${NS_VCARD_UPDATE}'><photo>${escapeXMLText(room.avatarHash ?? '')}</photo></x>`;
}
