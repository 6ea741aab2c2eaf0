import type { Client, PublishPacket } from 'aedes';
import { BrokerError, UploadRefused, uploadService, type Address } from '../../broker/index.ts';
import type { MqttContext } from './context.ts';
import { isLiteral } from './topics.ts';

/**
 * File upload for devices (docs/mqtt-mapping.md, "Upload"): a device
 * publishes `{"filename","size","contentType"}` on `upload/request/{me}` and
 * gets a slot as JSON on `upload/response/{me}`: the same slots, limits and
 * HTTPS URLs as XEP-0363 (broker/upload.ts). Then it PUTs the bytes and can
 * post the GET URL into a chat. Like `history/`, the tree is the core's: a
 * request is consumed, a response goes to the requester alone, and only
 * one's own topics are allowed.
 */

const REQUEST = 'upload/request/';
const RESPONSE = 'upload/response/';

type Verdict = 'consumed' | 'denied';

export function isUploadTopic(topic: string): boolean {
  return topic === 'upload' || topic.startsWith('upload/');
}

/** A PUBLISH under `upload/`: one's own request topic is answered and consumed; anything else is refused. */
export function decideUploadPublish(
  ctx: MqttContext,
  client: Client | null,
  address: Address | undefined,
  packet: PublishPacket,
): Verdict | Promise<Verdict> | undefined {
  if (!isUploadTopic(packet.topic)) return undefined;
  if (!address || packet.topic !== REQUEST + address.local) return 'denied'; // only for oneself
  const session = client && !client.closed ? ctx.sessions.get(client) : undefined;
  if (!session) return 'consumed'; // a will: nobody to answer
  return answer(ctx, session, address, packet.payload as Buffer).then(() => 'consumed' as const);
}

/** A SUBSCRIBE under `upload/`: a literal filter for one's own responses only. */
export function allowUploadSubscribe(
  filter: string,
  address: Address | undefined,
): boolean | undefined {
  if (!isUploadTopic(filter)) return undefined;
  if (!address) return false;
  if (!isLiteral(filter)) return true; // nothing in the tree is ever routed through aedes
  return filter === RESPONSE + address.local;
}

const KEYS = new Set(['id', 'filename', 'size', 'contentType']);

async function answer(
  ctx: MqttContext,
  session: NonNullable<ReturnType<MqttContext['sessions']['get']>>,
  address: Address,
  payload: Buffer,
): Promise<void> {
  const topic = RESPONSE + address.local;
  const qos = session.subscribedQos(topic);
  let requestId: string | undefined;
  let body: string;
  try {
    let o: unknown;
    try {
      o = JSON.parse(payload.toString('utf8'));
    } catch {
      throw new BrokerError('bad-request', 'the request must be a JSON object');
    }
    if (!o || typeof o !== 'object' || Array.isArray(o))
      throw new BrokerError('bad-request', 'the request must be a JSON object');
    const r = o as Record<string, unknown>;
    if (typeof r.id === 'string' && r.id.length <= 64) requestId = r.id;
    for (const k of Object.keys(r))
      if (!KEYS.has(k)) throw new BrokerError('bad-request', `unknown key "${k}"`);
    if (typeof r.filename !== 'string')
      throw new BrokerError('bad-request', '"filename" must be a string');
    if (typeof r.size !== 'number')
      throw new BrokerError('bad-request', '"size" must be a number of bytes');
    if (r.contentType !== undefined && typeof r.contentType !== 'string')
      throw new BrokerError('bad-request', '"contentType" must be a string');
    const svc = uploadService(ctx.broker);
    if (!svc) throw new BrokerError('service-unavailable', 'uploads are off');
    const slot = await svc.requestSlot(address.bare().toString(), {
      filename: r.filename,
      size: r.size,
      contentType: r.contentType as string | undefined,
    });
    body = JSON.stringify({
      ...(requestId !== undefined ? { id: requestId } : {}),
      put: slot.put,
      get: slot.get,
      expires: new Date(slot.expires).toISOString(),
      maxFileSize: slot.maxFileSize,
    });
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err;
    const e: Record<string, unknown> = { condition: err.condition, text: err.text };
    if (err instanceof UploadRefused) {
      if (err.maxFileSize !== undefined) e.maxFileSize = err.maxFileSize;
      if (err.retryAt !== undefined) e.retry = new Date(err.retryAt).toISOString();
    }
    body = JSON.stringify({ ...(requestId !== undefined ? { id: requestId } : {}), error: e });
  }
  if (qos < 0) {
    ctx.log.debug(
      { jid: session.address.toString() },
      'upload request from a device not subscribed to its response topic',
    );
    return;
  }
  await session.publish(topic, body, Math.min(qos, 1));
}
