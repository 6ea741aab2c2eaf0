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
  const rec: EnvelopeRecord = { kind: env.kind, from: env.from.toString(), to: env.to.toString(), extensions: env.extensions };
  copyOptional(env, rec);
  return rec;
}

export function fromRecord(rec: EnvelopeRecord, parse: (s: string) => Address): Envelope {
  const env: Envelope = { kind: rec.kind, from: parse(rec.from), to: parse(rec.to), extensions: rec.extensions };
  copyOptional(rec, env);
  return env;
}

/** The optional fields of an envelope or record, those that are set. */
function copyOptional(src: Omit<Envelope, 'from' | 'to'>, dst: Omit<Envelope, 'from' | 'to'>): void {
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
}

/** Message types that carry conversation content and go to the timeline/offline queue. */
export function isStorableMessage(env: Envelope): boolean {
  if (env.kind !== 'message') return false;
  const type = env.type ?? 'normal';
  if (type !== 'chat' && type !== 'normal') return false;
  // Chat states and receipts alone are not stored [XEP-0160 3], [XEP-0085 5.6]
  return env.body !== undefined || env.subject !== undefined;
}
