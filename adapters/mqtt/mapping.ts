import { randomFillSync } from 'node:crypto';
import {
  BrokerError,
  SHOW_VALUES,
  SUBSCRIPTION_TYPES,
  type Address,
  type ChatMeta,
  type Envelope,
} from '../../broker/index.ts';

/**
 * MQTT payloads ↔ core envelopes, for the two topic trees the core owns.
 * The formats are the contract with device developers: docs/mqtt-mapping.md
 * shows each one; change both together.
 */

const utf8 = new TextDecoder('utf-8', { fatal: true });

function text(payload: Buffer): string {
  try {
    return utf8.decode(payload);
  } catch {
    throw new BrokerError('bad-request', 'payload is not UTF-8 text');
  }
}

/** Parse a JSON object payload, or undefined when the text is not one. */
function jsonObject(s: string): Record<string, unknown> | undefined {
  if (!s.trimStart().startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(s);
    return v && typeof v === 'object' && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function optString(o: Record<string, unknown>, key: string, max = 4096): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > max)
    throw new BrokerError('bad-request', `"${key}" must be a string of at most ${max} characters`);
  return v;
}

/** Random bytes for message ids, drawn 8 at a time from a refilled pool: one CSPRNG call per 512 ids, not per message. */
const idPool = Buffer.alloc(4096);
let idOffset = idPool.length;

/** 16 random hex digits, unpredictable like `randomBytes(8)`. */
function randomId(): string {
  if (idOffset === idPool.length) {
    randomFillSync(idPool);
    idOffset = 0;
  }
  idOffset += 8;
  return idPool.toString('hex', idOffset - 8, idOffset);
}

const MARKER_KEYS = ['received', 'displayed', 'acknowledged'] as const;

/**
 * A PUBLISH on `chat/{user}` as a one-to-one message: the payload is the
 * body as UTF-8 text, or a JSON object `{ "body": "…", "id"?, "type"?,
 * "thread"?, "subject"?, "markable"? }`, or one about another message:
 * a chat marker `{ "displayed" | "received" | "acknowledged": "<id>" }`
 * [XEP-0333], a retraction `{ "retract": "<id>" }` [XEP-0424], a correction
 * `{ "replace": "<id>", "body": "…" }` [XEP-0308] (docs/mqtt-mapping.md).
 * Throws BrokerError('bad-request').
 */
export function chatEnvelope(from: Address, to: Address, payload: Buffer): Envelope {
  const s = text(payload);
  const o = jsonObject(s);
  let body: string | undefined = s;
  let id: string | undefined;
  let type = 'chat';
  let thread: string | undefined;
  let subject: string | undefined;
  let chat: ChatMeta | undefined;
  if (o) {
    chat = chatMetaOf(o);
    const about = chat !== undefined && (chat.marker !== undefined || chat.retract !== undefined);
    if (o.body === undefined && about) body = undefined;
    else if (typeof o.body !== 'string')
      throw new BrokerError('bad-request', 'a JSON payload needs a string "body"');
    else body = o.body;
    id = optString(o, 'id', 256);
    thread = optString(o, 'thread', 256);
    subject = optString(o, 'subject');
    const t = optString(o, 'type', 16);
    if (t !== undefined && t !== 'chat' && t !== 'normal')
      throw new BrokerError('bad-request', '"type" must be "chat" or "normal"');
    type = t ?? type;
  }
  if (body !== undefined && body.length === 0)
    throw new BrokerError('bad-request', 'empty message');
  const env: Envelope = {
    kind: 'message',
    type,
    from,
    to,
    id: id ?? `mqtt-${randomId()}`,
    extensions: [],
  };
  if (body !== undefined) env.body = body;
  if (thread !== undefined) env.thread = thread;
  if (subject !== undefined) env.subject = subject;
  if (chat !== undefined) env.chat = chat;
  return env;
}

/** The conversation keys of a JSON payload (at most one marker, one retraction or one correction). */
function chatMetaOf(o: Record<string, unknown>): ChatMeta | undefined {
  const c: ChatMeta = {};
  let about = 0;
  for (const type of MARKER_KEYS) {
    const id = optString(o, type, 256);
    if (id !== undefined) {
      c.marker = { type, id };
      about++;
    }
  }
  const retract = optString(o, 'retract', 256);
  if (retract !== undefined) {
    c.retract = retract;
    about++;
  }
  const replace = optString(o, 'replace', 256);
  if (replace !== undefined) {
    if (typeof o.body !== 'string')
      throw new BrokerError('bad-request', 'a correction ("replace") needs the new "body"');
    c.replace = replace;
    about++;
  }
  if (about > 1)
    throw new BrokerError(
      'bad-request',
      'at most one of "received", "displayed", "acknowledged", "retract", "replace"',
    );
  if (c.marker !== undefined && o.body !== undefined)
    throw new BrokerError('bad-request', 'a chat marker has no "body"');
  if (o.markable !== undefined) {
    if (typeof o.markable !== 'boolean')
      throw new BrokerError('bad-request', '"markable" must be a boolean');
    if (o.markable) c.markable = true;
  }
  return Object.keys(c).length > 0 ? c : undefined;
}

/** Does a message carry something a device is shown: a body, a subject, or a marker, receipt, retraction or correction? */
export function showable(env: Envelope): boolean {
  if (env.body !== undefined || env.subject !== undefined) return true;
  const c = env.chat;
  return (
    c !== undefined &&
    (c.marker !== undefined ||
      c.receipt !== undefined ||
      c.retract !== undefined ||
      c.retracted !== undefined)
  );
}

/** The JSON a device gets on `chat/{me}` for a message (or for an error about one it sent). */
export function chatJson(env: Envelope): string {
  if (env.type === 'error') {
    // An answer to something this device sent: `from` is who it was for.
    return JSON.stringify({
      type: 'error',
      from: env.from.bare().toString(),
      id: env.id,
      error: { condition: env.error?.condition ?? 'undefined-condition', text: env.error?.text },
    });
  }
  const out: Record<string, unknown> = {
    from: env.from.bare().toString(),
    id: env.id,
    seq: env.seq,
    timestamp: env.timestamp,
    body: env.body,
  };
  if (env.type && env.type !== 'chat') out.type = env.type;
  if (env.subject !== undefined) out.subject = env.subject;
  if (env.thread !== undefined) out.thread = env.thread;
  const c = env.chat;
  if (c !== undefined) {
    if (c.markable) out.markable = true;
    if (c.marker) out[c.marker.type] = c.marker.id; // [XEP-0333]
    if (c.receipt !== undefined) out.receipt = c.receipt; // [XEP-0184]
    if (c.retract !== undefined) out.retract = c.retract; // [XEP-0424]
    if (c.replace !== undefined) out.replace = c.replace; // [XEP-0308]
    if (c.retracted)
      out.retracted = {
        timestamp: c.retracted.stamp,
        ...(c.retracted.by !== undefined ? { by: c.retracted.by } : {}),
      };
  }
  if (env.delay) out.delayed = true; // came from the offline queue [XEP-0203]
  // The id in the recipient's own archive: a device asks history/request/{me} for what came after it.
  if (env.archive !== undefined && env.archive.owners.includes(env.to.bare().toString()))
    out.archiveId = env.archive.id;
  return JSON.stringify(out);
}

/** What a device asked for by publishing on `presence/{me}`. */
export type PresenceCommand =
  | { kind: 'available'; show?: string; status?: string; priority?: number }
  | { kind: 'unavailable'; status?: string }
  | { kind: 'subscription'; type: string; to: string };

/**
 * Parse a PUBLISH on `presence/{me}`: text `online`, `offline`, `away`,
 * `chat`, `dnd`, `xa` (empty = online), or JSON `{ "available"?, "show"?,
 * "status"?, "priority"? }`, or a subscription answer/request
 * `{ "type": "subscribed", "to": "bob" }`. Throws BrokerError('bad-request').
 */
export function parsePresence(payload: Buffer): PresenceCommand {
  const s = text(payload).trim();
  const o = jsonObject(s);
  if (!o) {
    const word = s.toLowerCase();
    if (word === '' || word === 'online' || word === 'available') return { kind: 'available' };
    if (word === 'offline' || word === 'unavailable') return { kind: 'unavailable' };
    if (SHOW_VALUES.has(word)) return { kind: 'available', show: word };
    throw new BrokerError(
      'bad-request',
      'presence must be online, offline, away, chat, dnd, xa or a JSON object',
    );
  }
  const type = optString(o, 'type', 16);
  if (type !== undefined) {
    if (!SUBSCRIPTION_TYPES.has(type))
      throw new BrokerError(
        'bad-request',
        '"type" must be subscribe, subscribed, unsubscribe or unsubscribed',
      );
    const to = optString(o, 'to', 3071);
    if (!to) throw new BrokerError('bad-request', 'a subscription needs "to"');
    return { kind: 'subscription', type, to };
  }
  const status = optString(o, 'status');
  if (o.available === false) return { kind: 'unavailable', status };
  const show = optString(o, 'show', 8);
  if (show !== undefined && !SHOW_VALUES.has(show))
    throw new BrokerError('bad-request', '"show" must be away, chat, dnd or xa');
  const p = o.priority;
  if (p !== undefined && (typeof p !== 'number' || !Number.isInteger(p)))
    throw new BrokerError('bad-request', '"priority" must be an integer');
  return { kind: 'available', show, status, priority: p as number | undefined };
}

/** The JSON a device gets on `presence/{user}`: one message per resource of that user. */
export function presenceJson(env: Envelope | undefined, user: Address): string {
  if (!env || env.type === 'unavailable') {
    return JSON.stringify({
      user: user.local,
      jid: (env?.from ?? user).toString(),
      available: false,
      status: env?.status,
    });
  }
  const out: Record<string, unknown> = {
    user: user.local,
    jid: env.from.toString(),
    available: true,
  };
  if (env.show !== undefined) out.show = env.show;
  if (env.status !== undefined) out.status = env.status;
  if (env.priority !== undefined) out.priority = env.priority;
  return JSON.stringify(out);
}
