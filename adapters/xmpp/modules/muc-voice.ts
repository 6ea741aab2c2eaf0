import { escapeXML, escapeXMLText, type Element } from '@xmpp/xml';
import {
  Address,
  BrokerError,
  type Envelope,
  type Room,
  type RoomEvent,
  type RoomService,
} from '../../../broker/index.ts';
import { NS_DATA, NS_MUC_REQUEST } from '../ns.ts';

/**
 * Voice requests [XEP-0045 7.13, 8.6]: a visitor of a moderated room submits
 * the muc#request form to the room; each moderator's device gets it as a
 * message with the form to approve; a moderator that submits it back with
 * `muc#request_allow` true grants voice (a role change to participant, the
 * same as muc#admin's [XEP-0045 8.3]). Rules (who may ask, how often) are
 * the core's: RoomService.requestVoice.
 */

/** A submitted XEP-0004 form's fields: var → first value. */
function values(x: Element): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of x.getChildren('field')) {
    const v = f.attrs.var;
    if (typeof v === 'string') m.set(v, f.getChildText('value') ?? '');
  }
  return m;
}

/** Is this message's data form a muc#request form? */
export function isVoiceForm(x: Element | undefined): x is Element {
  return !!x && values(x).get('FORM_TYPE') === NS_MUC_REQUEST;
}

const field = (type: string, v: string, label: string, value: string): string =>
  `<field type='${type}' var='${v}' label='${escapeXML(label)}'><value>${escapeXMLText(value)}</value></field>`;

/** The approval form a moderator gets [XEP-0045 8.6, example 123]. */
export function voiceRequestMessage(
  ev: Extract<RoomEvent, { kind: 'voice-request' }>,
  to: Address,
): Envelope {
  const form =
    `<x xmlns='${NS_DATA}' type='form'><title>Voice request</title>` +
    `<instructions>To approve this request for voice, select the "Grant voice to this person?" checkbox and click OK. To skip this request, click the cancel button.</instructions>` +
    `<field var='FORM_TYPE' type='hidden'><value>${NS_MUC_REQUEST}</value></field>` +
    field('list-single', 'muc#role', 'Requested role', 'participant') +
    field('jid-single', 'muc#jid', 'User ID', ev.jid) +
    field('text-single', 'muc#roomnick', 'Room Nickname', ev.nick) +
    field('boolean', 'muc#request_allow', 'Grant voice to this person?', 'false') +
    '</x>';
  return {
    kind: 'message',
    type: 'normal',
    from: ev.room.jid,
    to,
    body: `${ev.nick} asks for voice in ${ev.room.jid.toString()}`,
    extensions: [form],
  };
}

/**
 * A muc#request form submitted to the room: from a visitor, a request
 * [XEP-0045 7.13]; with `muc#request_allow`, a moderator's answer [XEP-0045 8.6].
 */
export function handleVoiceForm(svc: RoomService, room: Room, env: Envelope, x: Element): void {
  if (x.attrs.type === 'cancel') return; // a moderator skips the request
  if (x.attrs.type !== 'submit') throw new BrokerError('bad-request', "form type must be 'submit'");
  const f = values(x);
  const role = f.get('muc#role');
  if (role !== undefined && role !== 'participant')
    throw new BrokerError('bad-request', 'muc#role: only participant may be requested'); // [XEP-0045 7.13]
  const device = env.from.toString();
  const allow = f.get('muc#request_allow');
  if (allow === undefined) return svc.requestVoice(room, device);
  if (allow !== 'true' && allow !== '1') {
    if (allow !== 'false' && allow !== '0')
      throw new BrokerError('bad-request', 'muc#request_allow: not a boolean'); // [XEP-0004 3.3]
    return; // denied: nothing changes [XEP-0045 8.6]
  }
  const nick = f.get('muc#roomnick');
  if (!nick) throw new BrokerError('bad-request', 'muc#roomnick is required'); // [XEP-0045 8.6]
  const target = room.occupants.get(nick);
  const jid = f.get('muc#jid');
  if (target && jid) {
    const a = Address.tryParse(jid);
    if (!a) throw new BrokerError('jid-malformed', 'muc#jid');
    if (a.bare().toString() !== target.user)
      throw new BrokerError('item-not-found', 'that occupant has left'); // the nick now belongs to someone else
  }
  svc.setRole(room, { user: env.from.bare().toString() }, nick, 'participant', undefined, device); // [XEP-0045 8.6] forbidden unless a moderator
}
