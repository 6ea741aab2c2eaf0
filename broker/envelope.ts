import type { Address } from './address.ts';
import type { AppCondition, ErrorCondition, ErrorType } from './errors.ts';

export type EnvelopeKind = 'message' | 'presence' | 'iq';

/**
 * One routed unit. The core reads the fields it understands; everything else
 * an adapter received travels in `extensions` as opaque serialised XML strings
 * (so XMPP clients get their payloads back byte for byte) and is ignored by
 * protocols that cannot carry it.
 */
export interface Envelope {
  kind: EnvelopeKind;
  /** message: chat|normal|groupchat|headline|error; presence: unavailable|subscribe|…|error; iq: get|set|result|error */
  type?: string;
  from: Address;
  to: Address;
  id?: string;
  body?: string;
  subject?: string;
  thread?: string;
  /** presence fields */
  show?: string;
  status?: string;
  priority?: number;
  /** opaque children, serialised (XMPP fidelity) */
  extensions: string[];
  /** per-conversation sequence number, assigned when appended to the timeline */
  seq?: number;
  /**
   * Set when appended to users' own archives: the archive id and the bare
   * JIDs whose archive lists it (a recipient among them is told the id,
   * XEP-0359 stanza-id / MQTT archiveId).
   */
  archive?: { id: string; owners: string[] };
  /** milliseconds since the epoch when the broker accepted it */
  timestamp?: number;
  /** set when delivered from storage: original time and who delayed it [XEP-0203] */
  delay?: { stamp: number; from: string; reason?: string };
  /** for type=error */
  error?: { condition: ErrorCondition; type: ErrorType; text?: string; app?: AppCondition };
  /** what a message says about the conversation, read off the wire by its adapter (docs/conversations.md) */
  chat?: ChatMeta;
}

/** A chat marker [XEP-0333]. */
export type MarkerType = 'received' | 'displayed' | 'acknowledged';

/**
 * Conversation meaning, protocol-neutral: the XMPP adapter reads it from
 * (and writes it back as) the XEP elements named here, the MQTT adapter from
 * and to JSON keys on `chat/` (docs/mqtt-mapping.md). Ids name the other
 * message by its sender's id (the `id` attribute, or its XEP-0359 origin-id).
 */
export interface ChatMeta {
  /** [XEP-0184] the sender asks for a delivery receipt */
  request?: boolean;
  /** [XEP-0184] a delivery receipt for the message with this id */
  receipt?: string;
  /** [XEP-0333] the sender asks for chat markers */
  markable?: boolean;
  /** [XEP-0333] a chat marker for the message with this id */
  marker?: { type: MarkerType; id: string };
  /** [XEP-0424] retraction of the sender's own message with this id */
  retract?: string;
  /** [XEP-0308] correction of the sender's last message with this id: the body is the new text */
  replace?: string;
  /** [XEP-0359] the sender's origin-id (kept on the wire as well) */
  originId?: string;
  /** [XEP-0334] the storage hint (kept on the wire as well) */
  hint?: 'store' | 'no-store' | 'no-permanent-store';
  /** a tombstone in the archive [XEP-0424]: when the message was retracted, and by which moderator [XEP-0425] */
  retracted?: { stamp: number; by?: string; reason?: string };
}

/** Plain JSON form for storage and the cluster bus. */
export interface EnvelopeRecord extends Omit<Envelope, 'from' | 'to'> {
  from: string;
  to: string;
}

/*
 * toRecord and fromRecord copy field by field, adding only the fields that
 * are set, rather than `{ ...env, from, to }`: V8 gives an object-spread copy
 * a hidden class not linked to any other, so every later property added to
 * it (the archive's `seq`) made a new hidden class, two per stored message.
 * Hidden classes live in the old generation and are collected only by full
 * collections (bench/PROFILE-NOTES.md, eleventh round). Added one by one, the
 * fields follow V8's shared transitions: one hidden class per combination.
 * The envelope test builds a `Required<Envelope>`, so a new field fails to
 * compile there until it is added here as well.
 */

export function toRecord(env: Envelope): EnvelopeRecord {
  const rec: EnvelopeRecord = {
    kind: env.kind,
    from: env.from.toString(),
    to: env.to.toString(),
    extensions: env.extensions,
  };
  copyOptional(env, rec);
  return rec;
}

export function fromRecord(rec: EnvelopeRecord, parse: (s: string) => Address): Envelope {
  const env: Envelope = {
    kind: rec.kind,
    from: parse(rec.from),
    to: parse(rec.to),
    extensions: rec.extensions,
  };
  copyOptional(rec, env);
  return env;
}

/** The optional fields of an envelope or record, those that are set. */
function copyOptional(
  src: Omit<Envelope, 'from' | 'to'>,
  dst: Omit<Envelope, 'from' | 'to'>,
): void {
  if (src.type !== undefined) dst.type = src.type;
  if (src.id !== undefined) dst.id = src.id;
  if (src.body !== undefined) dst.body = src.body;
  if (src.subject !== undefined) dst.subject = src.subject;
  if (src.thread !== undefined) dst.thread = src.thread;
  if (src.show !== undefined) dst.show = src.show;
  if (src.status !== undefined) dst.status = src.status;
  if (src.priority !== undefined) dst.priority = src.priority;
  if (src.seq !== undefined) dst.seq = src.seq;
  if (src.archive !== undefined) dst.archive = src.archive;
  if (src.timestamp !== undefined) dst.timestamp = src.timestamp;
  if (src.delay !== undefined) dst.delay = src.delay;
  if (src.error !== undefined) dst.error = src.error;
  if (src.chat !== undefined) dst.chat = src.chat;
}

/**
 * Messages that go to the offline queue (and, unless {@link isArchivable}
 * says otherwise, to the timeline): chat/normal ones with a body or subject,
 * receipts, chat markers, retractions and corrections, as Prosody's mod_mam
 * decides; never chat states alone [XEP-0085 5.6]. XEP-0334 hints win:
 * `no-store` keeps it out of every store, `store` puts it in [XEP-0334 4].
 */
export function isStorableMessage(env: Envelope): boolean {
  if (env.kind !== 'message') return false;
  const type = env.type ?? 'normal';
  if (type !== 'chat' && type !== 'normal') return false;
  const c = env.chat;
  if (c === undefined) return env.body !== undefined || env.subject !== undefined;
  if (c.hint === 'no-store') return false; // [XEP-0334 4.2]
  if (c.hint === 'store') return true; // [XEP-0334 4.4]
  if (env.body !== undefined || env.subject !== undefined) return true;
  return (
    c.receipt !== undefined ||
    c.request === true ||
    c.marker !== undefined ||
    c.markable === true ||
    c.retract !== undefined ||
    c.replace !== undefined
  );
}

/** A storable message that also goes to the timeline (the archive): not one hinted `no-permanent-store` [XEP-0334 4.1]. */
export function isArchivable(env: Envelope): boolean {
  return isStorableMessage(env) && env.chat?.hint !== 'no-permanent-store';
}
