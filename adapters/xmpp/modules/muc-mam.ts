import { escapeXML, type Element } from '@xmpp/xml';
import {
  Address,
  BrokerError,
  type Room,
  type RoomArchiveQuery,
  type RoomService,
} from '../../../broker/index.ts';
import { NS_DATA, NS_MAM } from '../ns.ts';
import { dateTime, parseRsm } from './mam-query.ts';

/**
 * XEP-0313 queries on a room JID (docs/groupchat.md, "MUC MAM"): the form
 * (with, start, end, after-id, before-id) and the RSM set (max, after,
 * before, empty before = last page) [XEP-0059], parsed into the core's
 * room archive query. Ids are room seqs.
 */

const FIELDS = new Set(['FORM_TYPE', 'with', 'start', 'end', 'before-id', 'after-id', 'ids']);
/** What a room's archive supports beyond urn:xmpp:mam:2: before-id, after-id, ids, flip-page, metadata [XEP-0313 filter]. */
export const NS_MAM_EXTENDED = 'urn:xmpp:mam:2#extended';
const NS_VALIDATE = 'http://jabber.org/protocol/xdata-validate';
/** Page size when the client names none. */
const DEFAULT_MAX = 50;

/** A room seq named by the client; anything else cannot be in the archive [XEP-0313 6.1.2]. */
function seq(v: string, what: string): number {
  if (!/^[1-9]\d{0,14}$/.test(v.trim()))
    throw new BrokerError('item-not-found', `${what}: no such id`);
  return Number(v.trim());
}

/**
 * May `user` filter by real JIDs? Only where it may see them: a
 * non-anonymous room, or its admins and owners, or one of its moderators
 * [XEP-0045 7.2.4]. Otherwise a `with` on a real JID would tell who is behind
 * a nick.
 */
function seesRealJids(room: Room, user: string): boolean {
  if (room.config.whois === 'anyone') return true;
  const aff = room.affiliation(user);
  if (aff === 'owner' || aff === 'admin') return true;
  return room.occupantsOf(user).some((o) => o.role === 'moderator');
}

export function parseRoomMamQuery(
  query: Element,
  room: Room,
  user: string,
): { q: RoomArchiveQuery; flip: boolean } {
  const q: RoomArchiveQuery = { limit: DEFAULT_MAX };
  const form = query.getChild('x', NS_DATA);
  if (form) {
    if (form.attrs.type !== undefined && form.attrs.type !== 'submit')
      throw new BrokerError('bad-request', 'the form must be of type submit');
    for (const f of form.getChildren('field')) {
      const name = f.attrs.var as string | undefined;
      if (name === undefined || !FIELDS.has(name))
        throw new BrokerError('feature-not-implemented', `unknown field ${name ?? '(no var)'}`); // [XEP-0313 query-form]
      if (name === 'ids') {
        // [XEP-0313 query-limit-id] list-multi of archive ids: room seqs here
        const values = f.getChildren('value').map((v) => v.getText());
        q.ids = values.filter((v) => v.trim() !== '').map((v) => seq(v, 'ids'));
        continue;
      }
      const value = f.getChildText('value') ?? '';
      if (value === '') continue;
      switch (name) {
        case 'FORM_TYPE':
          if (value !== NS_MAM) throw new BrokerError('bad-request', `FORM_TYPE must be ${NS_MAM}`);
          break;
        case 'with': {
          const jid = Address.tryParse(value);
          if (!jid) throw new BrokerError('jid-malformed', 'with: not a JID');
          if (jid.bare().equals(room.jid)) {
            // [XEP-0313 filter-jid] in a MUC archive, an occupant JID room@service/nick: that nick's messages
            if (jid.resource) q.nick = jid.resource;
          } else {
            if (!seesRealJids(room, user))
              throw new BrokerError('forbidden', 'real JIDs are not shown in this room'); // [XEP-0045 7.2.4]
            q.user = jid.bare().toString();
          }
          break;
        }
        case 'start':
          q.start = dateTime(value, 'start');
          break;
        case 'end':
          q.end = dateTime(value, 'end');
          break;
        case 'after-id':
          q.afterId = seq(value, 'after-id');
          break;
        case 'before-id':
          q.beforeId = seq(value, 'before-id');
          break;
      }
    }
  }
  // [XEP-0059 2] the RSM ids of a room archive are its seqs
  const rsm = parseRsm(query);
  if (rsm.max !== undefined) q.limit = rsm.max;
  if (rsm.after !== undefined) q.after = seq(rsm.after, 'after');
  if (rsm.before !== undefined)
    q.before = rsm.before.trim() === '' ? 'last' : seq(rsm.before, 'before'); // [XEP-0059 2.5]
  return { q, flip: query.getChild('flip-page') !== undefined }; // [XEP-0313 query-paging-flip]
}

/** The query form of a room's archive [XEP-0313 query-form], the #extended fields included. */
export function roomMamForm(): string {
  const f = (v: string, type: string) => `<field var='${v}' type='${type}'/>`;
  return (
    `<query xmlns='${NS_MAM}'><x xmlns='${NS_DATA}' type='form'>` +
    `<field var='FORM_TYPE' type='hidden'><value>${NS_MAM}</value></field>` +
    f('with', 'jid-single') +
    f('start', 'text-single') +
    f('end', 'text-single') +
    f('after-id', 'text-single') +
    f('before-id', 'text-single') +
    // [XEP-0313 query-form] the ids list is open: no options, an XEP-0122 validate
    `<field var='ids' type='list-multi'><validate xmlns='${NS_VALIDATE}' datatype='xs:string'><open/></validate></field>` +
    '</x></query>'
  );
}

/** The first and last message of a room's archive, ids as seqs [XEP-0313 archive-metadata]. */
export async function roomMamMetadata(svc: RoomService, room: Room): Promise<string> {
  const { first, last } = await svc.archiveBounds(room);
  const end = (name: string, m: { seq: number; timestamp: number } | undefined) =>
    m
      ? `<${name} id='${m.seq}' timestamp='${escapeXML(new Date(m.timestamp).toISOString())}'/>`
      : '';
  return `<metadata xmlns='${NS_MAM}'>${end('start', first)}${end('end', last)}</metadata>`;
}
