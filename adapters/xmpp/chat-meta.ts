import { escapeXML, type Element } from '@xmpp/xml';
import type { ChatMeta, Envelope, MarkerType } from '../../broker/index.ts';
import {
  NS_CORRECT,
  NS_HINTS,
  NS_MARKERS,
  NS_MODERATE,
  NS_RECEIPTS,
  NS_RETRACT,
  NS_SID,
} from './ns.ts';

/**
 * The conversation elements of a message ↔ the core's protocol-neutral
 * {@link ChatMeta} (docs/conversations.md). Receipts, markers, retractions
 * and corrections are taken off the stanza and written back from the meta,
 * so an MQTT device's `{"displayed": "…"}` reaches XMPP clients as the same
 * element a client would send; origin-ids and hints stay on the stanza as
 * sent and are only read.
 */

const MARKERS = new Set<string>(['received', 'displayed', 'acknowledged']);
const HINT_RANK = { store: 1, 'no-permanent-store': 2, 'no-store': 3 } as const;

/**
 * Reads one child of a client's message into `env.chat`. Returns true when
 * the child is consumed (written back by {@link chatMetaXml}), false when it
 * stays on the stanza as it is.
 */
export function readChatChild(env: Envelope, c: Element): boolean {
  const ns = c.attrs.xmlns as string | undefined;
  const id = c.attrs.id as string | undefined;
  switch (ns) {
    case NS_RECEIPTS:
      if (c.name === 'request') return !!(meta(env).request = true); // [XEP-0184 5.1]
      if (c.name === 'received' && id) return !!(meta(env).receipt = id); // [XEP-0184 5.2]
      return false;
    case NS_MARKERS:
      if (c.name === 'markable') return !!(meta(env).markable = true); // [XEP-0333 3]
      if (MARKERS.has(c.name) && id)
        return !!(meta(env).marker = { type: c.name as MarkerType, id }); // [XEP-0333 3]
      return false;
    case NS_RETRACT:
      if (c.name === 'retract' && id) return !!(meta(env).retract = id); // [XEP-0424 3]
      // Only the archive says a message was retracted: a client's tombstone is dropped.
      return c.name === 'retracted';
    case NS_CORRECT:
      if (c.name === 'replace' && id) return !!(meta(env).replace = id); // [XEP-0308 3]
      return false;
    case NS_SID:
      if (c.name === 'origin-id' && id) meta(env).originId = id; // [XEP-0359 4] kept on the stanza too
      return false;
    case NS_HINTS:
      if (c.name in HINT_RANK) {
        // [XEP-0334 4] several hints: the most restrictive wins
        const hint = c.name as keyof typeof HINT_RANK;
        const m = meta(env);
        if (m.hint === undefined || HINT_RANK[hint] > HINT_RANK[m.hint]) m.hint = hint;
      }
      return false;
    default:
      return false;
  }
}

function meta(env: Envelope): ChatMeta {
  return (env.chat ??= {});
}

const attr = (name: string, v: string | undefined) =>
  v === undefined ? '' : ` ${name}='${escapeXML(v)}'`;

/** The elements {@link readChatChild} consumed, written back; a tombstone's `<retracted/>` [XEP-0424 5]. */
export function chatMetaXml(c: ChatMeta): string {
  let s = '';
  if (c.request) s += `<request xmlns='${NS_RECEIPTS}'/>`;
  if (c.receipt !== undefined) s += `<received xmlns='${NS_RECEIPTS}'${attr('id', c.receipt)}/>`;
  if (c.markable) s += `<markable xmlns='${NS_MARKERS}'/>`;
  if (c.marker) s += `<${c.marker.type} xmlns='${NS_MARKERS}'${attr('id', c.marker.id)}/>`;
  if (c.retract !== undefined) s += `<retract xmlns='${NS_RETRACT}'${attr('id', c.retract)}/>`;
  if (c.replace !== undefined) s += `<replace xmlns='${NS_CORRECT}'${attr('id', c.replace)}/>`;
  if (c.retracted) {
    const r = c.retracted;
    s += `<retracted xmlns='${NS_RETRACT}' stamp='${new Date(r.stamp).toISOString()}'>`;
    // [XEP-0425 4] a moderator's retraction says who and why
    if (r.by !== undefined) s += `<moderated xmlns='${NS_MODERATE}'${attr('by', r.by)}/>`;
    if (r.reason) s += `<reason>${escapeXML(r.reason)}</reason>`;
    s += '</retracted>';
    // The tombstone keeps no payload but the id clients know the message by [XEP-0359].
    if (c.originId !== undefined) s += `<origin-id xmlns='${NS_SID}'${attr('id', c.originId)}/>`;
  }
  return s;
}

/**
 * Puts the elements {@link readChatChild} took off a message back among its
 * payloads, for code that relays payloads as they came (rooms keep a
 * message's payloads opaque: markers, receipts and corrections in a room
 * reach the occupants as sent).
 */
export function restoreChatMeta(env: Envelope): void {
  if (env.chat === undefined) return;
  const { retracted: _dropped, ...rest } = env.chat;
  const xml = chatMetaXml(rest);
  if (xml) env.extensions = [...env.extensions, xml];
  delete env.chat;
}
