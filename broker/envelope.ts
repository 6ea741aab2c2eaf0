import type { Address } from './address.ts';
import type { ErrorCondition, ErrorType } from './errors.ts';

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
  /** milliseconds since the epoch when the broker accepted it */
  timestamp?: number;
  /** set when delivered from storage: original time and who delayed it [XEP-0203] */
  delay?: { stamp: number; from: string; reason?: string };
  /** for type=error */
  error?: { condition: ErrorCondition; type: ErrorType; text?: string };
}

/** Plain JSON form for storage and the cluster bus. */
export interface EnvelopeRecord extends Omit<Envelope, 'from' | 'to'> {
  from: string;
  to: string;
}

export function toRecord(env: Envelope): EnvelopeRecord {
  return { ...env, from: env.from.toString(), to: env.to.toString() };
}

export function fromRecord(rec: EnvelopeRecord, parse: (s: string) => Address): Envelope {
  return { ...rec, from: parse(rec.from), to: parse(rec.to) };
}

/** Message types that carry conversation content and go to the timeline/offline queue. */
export function isStorableMessage(env: Envelope): boolean {
  if (env.kind !== 'message') return false;
  const type = env.type ?? 'normal';
  if (type !== 'chat' && type !== 'normal') return false;
  // Chat states and receipts alone are not stored [XEP-0160 3], [XEP-0085 5.6]
  return env.body !== undefined || env.subject !== undefined;
}
