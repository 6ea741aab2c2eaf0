import type { Client, PublishPacket } from 'aedes';
import { Address, BrokerError, type UserArchiveQuery } from '../../broker/index.ts';
import type { MqttContext } from './context.ts';
import { chatJson } from './mapping.ts';
import { isLiteral } from './topics.ts';

/**
 * History for devices (docs/mqtt-mapping.md, "History"): a device publishes a
 * JSON request on `history/request/{me}` and gets one page of its user's
 * archive as JSON on `history/response/{me}`, from the same archive and ids
 * as XEP-0313 MAM. The tree belongs to the core: a request is consumed (aedes
 * never routes it), a response goes to the requesting client alone, and a
 * device may only ask for its own user's history.
 */

const REQUEST = 'history/request/';
const RESPONSE = 'history/response/';

type Verdict = 'consumed' | 'denied';

/** True for a topic or filter under `history/`. */
export function isHistoryTopic(topic: string): boolean {
  return topic === 'history' || topic.startsWith('history/');
}

/** The response topic of a user (local part). */
export function historyResponseTopic(local: string): string {
  return RESPONSE + local;
}

/**
 * A PUBLISH under `history/`: a request on the device's own request topic is
 * answered and consumed; anything else there is refused (responses come from
 * the core only). Undefined for topics outside the tree.
 */
export function decideHistoryPublish(
  ctx: MqttContext,
  client: Client | null,
  address: Address | undefined,
  packet: PublishPacket,
): Verdict | Promise<Verdict> | undefined {
  const topic = packet.topic;
  if (!isHistoryTopic(topic)) return undefined;
  if (!address || topic !== REQUEST + address.local) return 'denied'; // only one's own history
  const session = client && !client.closed ? ctx.sessions.get(client) : undefined;
  if (!session) return 'consumed'; // a will: nobody to answer
  return answer(ctx, session, address, packet.payload as Buffer).then(() => 'consumed' as const);
}

/** A SUBSCRIBE filter under `history/`: a literal filter only for one's own responses; wildcards see nothing routed there. */
export function allowHistorySubscribe(
  filter: string,
  address: Address | undefined,
): boolean | undefined {
  if (!isHistoryTopic(filter)) return undefined;
  if (!address) return false;
  if (!isLiteral(filter)) return true; // nothing in the tree is ever routed through aedes
  return filter === RESPONSE + address.local;
}

const KEYS = new Set([
  'id',
  'with',
  'after',
  'before',
  'afterId',
  'beforeId',
  'start',
  'end',
  'max',
]);

function str(o: Record<string, unknown>, key: string, max = 64): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > max)
    throw new BrokerError('bad-request', `"${key}" must be a string of at most ${max} characters`);
  return v;
}

/** A time as ms since the epoch or an ISO 8601 / XEP-0082 string. */
function time(o: Record<string, unknown>, key: string): number | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  const ms = typeof v === 'number' ? v : typeof v === 'string' ? Date.parse(v) : NaN;
  if (!Number.isFinite(ms))
    throw new BrokerError('bad-request', `"${key}" must be ms since the epoch or an ISO 8601 time`);
  return ms;
}

/** The request payload as a core query; throws BrokerError('bad-request'). */
export function parseHistoryRequest(
  payload: Buffer,
  domain: string,
): { requestId?: string; q: UserArchiveQuery } {
  let o: unknown;
  try {
    const text = payload.toString('utf8');
    o = text.trim() === '' ? {} : JSON.parse(text);
  } catch {
    throw new BrokerError('bad-request', 'the request must be a JSON object');
  }
  if (!o || typeof o !== 'object' || Array.isArray(o))
    throw new BrokerError('bad-request', 'the request must be a JSON object');
  const r = o as Record<string, unknown>;
  for (const k of Object.keys(r))
    if (!KEYS.has(k)) throw new BrokerError('bad-request', `unknown key "${k}"`);
  const q: UserArchiveQuery = {};
  const w = str(r, 'with', 3071);
  if (w !== undefined) {
    // "bob", "bob/sensor-1", "bob@example.com" or "bob@example.com/sensor-1": a name gets the domain
    // before its device; a device (a resource) matches only that device [XEP-0313 4.1.1]
    const slash = w.indexOf('/');
    const user = slash === -1 ? w : w.slice(0, slash);
    const jid = Address.tryParse(
      user.includes('@') ? w : `${user}@${domain}${slash === -1 ? '' : w.slice(slash)}`,
    );
    if (!jid) throw new BrokerError('bad-request', '"with" is not a user or JID');
    q.with = jid;
  }
  const after = str(r, 'after');
  const before = str(r, 'before');
  if (after !== undefined && before !== undefined)
    throw new BrokerError('bad-request', '"after" and "before" together');
  if (after !== undefined) q.after = after;
  if (before !== undefined) q.before = before; // '' = the last page, as XEP-0059
  const afterId = str(r, 'afterId');
  if (afterId !== undefined) q.afterId = afterId;
  const beforeId = str(r, 'beforeId');
  if (beforeId !== undefined) q.beforeId = beforeId;
  const start = time(r, 'start');
  if (start !== undefined) q.start = start;
  const end = time(r, 'end');
  if (end !== undefined) q.end = end;
  if (r.max !== undefined) {
    if (typeof r.max !== 'number' || !Number.isInteger(r.max) || r.max < 0)
      throw new BrokerError('bad-request', '"max" must be a non-negative integer');
    q.max = r.max;
  }
  return { requestId: str(r, 'id'), q };
}

/** The request's "id" when the payload is a JSON object with a short string id. */
function requestIdOf(payload: Buffer): string | undefined {
  try {
    const o: unknown = JSON.parse(payload.toString('utf8'));
    const id = o && typeof o === 'object' ? (o as Record<string, unknown>).id : undefined;
    return typeof id === 'string' && id.length <= 64 ? id : undefined;
  } catch {
    return undefined;
  }
}

async function answer(
  ctx: MqttContext,
  session: NonNullable<ReturnType<MqttContext['sessions']['get']>>,
  address: Address,
  payload: Buffer,
): Promise<void> {
  const topic = historyResponseTopic(address.local);
  const qos = session.subscribedQos(topic);
  let requestId: string | undefined;
  let body: string;
  try {
    // The id first, so that an error about the rest still names the request.
    requestId = requestIdOf(payload);
    const req = parseHistoryRequest(payload, ctx.broker.domain);
    // Only the requester's own archive: the address is the connection's authenticated user.
    const page = await ctx.broker.archive.queryUser(address, req.q);
    const messages = page.messages.map((m) => {
      const json = JSON.parse(
        chatJson({ ...m.env, archive: undefined, delay: undefined }),
      ) as Record<string, unknown>;
      json.to = m.env.to.bare().toString();
      json.archiveId = m.id;
      json.timestamp = m.stamp;
      return json;
    });
    const out: Record<string, unknown> = { messages, complete: page.complete, count: page.count };
    if (requestId !== undefined) out.id = requestId;
    if (messages.length > 0) {
      out.first = messages[0].archiveId;
      out.last = messages[messages.length - 1].archiveId;
    }
    body = JSON.stringify(out);
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err;
    body = JSON.stringify({
      ...(requestId !== undefined ? { id: requestId } : {}),
      error: { condition: err.condition, text: err.text },
    });
  }
  if (qos < 0) {
    ctx.log.debug(
      { jid: session.address.toString() },
      'history request from a device not subscribed to its response topic',
    );
    return;
  }
  await session.publish(topic, body, Math.min(qos, 1));
}
