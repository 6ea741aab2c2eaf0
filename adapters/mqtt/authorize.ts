import type { AedesPublishPacket, Client, PublishPacket, Subscription } from 'aedes';
import { Address, BrokerError, snippet, type Envelope, type Ordered } from '../../broker/index.ts';
import { infoOf } from './auth.ts';
import { identityOf, type ConnInfo, type MqttContext } from './context.ts';
import { allowHistorySubscribe, decideHistoryPublish } from './history.ts';
import { allowUploadSubscribe, decideUploadPublish } from './upload.ts';
import { allowUnreadSubscribe, decideUnreadPublish } from './unread.ts';
import { chatEnvelope, parsePresence } from './mapping.ts';
import { decideRoomSubscribe, roomPublish, roomTopic } from './rooms.ts';
import type { MqttSession } from './session.ts';
import { isLiteral, reserved, SINK_TOPIC, type Reserved } from './topics.ts';

/**
 * The aedes authorisation hooks. Plain topics go through the ACL; the
 * `chat/` and `presence/` trees belong to the core: a PUBLISH there is turned
 * into an envelope and consumed (aedes never routes it), and subscriptions
 * there are checked against the identity and the roster.
 */

type Verdict = 'pass' | 'consumed' | 'denied';

/** Park a packet aedes will still acknowledge and "publish": nobody can subscribe to the sink. */
function sink(packet: PublishPacket): void {
  packet.topic = SINK_TOPIC;
  packet.retain = false;
}

/** aedes `authorizePublish`: client PUBLISH, and wills (client null after a restart). */
export function authorizePublish(ctx: MqttContext) {
  return (
    client: Client | null,
    packet: PublishPacket,
    done: (err?: Error | null) => void,
  ): void => {
    // The retained index counts a retained message against its publisher's account (retained.ts).
    if (client && packet.retain) (packet as { clientId?: string }).clientId = client.id;
    // Plain topics are decided synchronously: no promise and no closure per PUBLISH on the hot path.
    let verdict: Verdict | Promise<Verdict>;
    try {
      verdict = decidePublish(ctx, client, packet);
    } catch (err) {
      ctx.log.error({ err }, 'mqtt publish handling failed');
      return done(new Error('internal error'));
    }
    if (typeof verdict === 'string') return finishPublish(ctx, client, packet, done, verdict);
    verdict.then(
      (v) => finishPublish(ctx, client, packet, done, v),
      (err) => {
        ctx.log.error({ err }, 'mqtt publish handling failed');
        done(new Error('internal error'));
      },
    );
  };
}

function finishPublish(
  ctx: MqttContext,
  client: Client | null,
  packet: PublishPacket,
  done: (err?: Error | null) => void,
  verdict: Verdict,
): void {
  if (verdict === 'pass') {
    // aedes 1.2 writes a QoS 1 PUBACK first and publishes after it (handlers/publish.js), so a
    // kill -9 in between loses a message the client was told is safe: every PUBLISH of one read
    // chunk is acknowledged before any of them is queued for offline subscribers. Publish it here,
    // before the PUBACK, and hand aedes the parked packet [MQTT-4.3.2-2] (docs/architecture.md
    // principle 3). QoS 2 already stores before its PUBREC; QoS 0 and wills need nothing.
    if (client && packet.qos === 1) return publishBeforeAck(ctx, client, packet, done);
    return done(null);
  }
  if (verdict === 'denied') {
    ctx.stats.denied++;
    ctx.log.debug({ client: client?.id, topic: snippet(packet.topic) }, 'mqtt publish denied');
    // [MQTT-3.3.5-2] acknowledge and drop, or close the connection (option deniedPublish)
    if (ctx.opts.deniedPublish === 'disconnect' && client && !client.closed)
      return done(new Error('publish not authorized'));
  }
  sink(packet);
  done(null);
}

function publishBeforeAck(
  ctx: MqttContext,
  client: Client,
  packet: PublishPacket,
  done: (err?: Error | null) => void,
): void {
  // A copy: aedes keeps the object it is given for its `published` hook, and `sink` rewrites ours.
  const copy = { ...packet };
  (ctx.aedes as unknown as AedesPublish).publish(copy, client, (err) => {
    if (err) {
      ctx.log.error({ err, client: client.id }, 'mqtt publish failed');
      return done(new Error('internal error')); // no PUBACK: the client sends it again
    }
    sink(packet);
    (packet as Republished)[REPUBLISHED] = true;
    done(null);
  });
}

/** Set on a packet already published before its PUBACK: aedes' `published` hook must not count it twice. */
export const REPUBLISHED = Symbol('parley.republished');
export type Republished = { [REPUBLISHED]?: true };

/** aedes' own publish with the publishing client (what its PUBLISH handler calls), not in its types. */
interface AedesPublish {
  publish(packet: PublishPacket, client: Client, done: (err?: Error | null) => void): void;
}

/** A plain topic's verdict right away; the core's trees (chat/, presence/) take a promise. */
function decidePublish(
  ctx: MqttContext,
  client: Client | null,
  packet: PublishPacket,
): Verdict | Promise<Verdict> {
  const topic = packet.topic;
  // $SYS is the broker's and read-only; other '$' topics are reserved for the broker [MQTT-4.7.2-1].
  if (topic.startsWith('$')) return 'denied';
  const who: Pick<ConnInfo, 'address' | 'acl'> = client
    ? infoOf(ctx, client)
    : identityOf((packet as { clientId?: string }).clientId ?? '', ctx.broker.domain, ctx.opts.acl);
  if (!who.acl?.canWrite(topic)) return 'denied';
  const rt = roomTopic(topic);
  if (rt) return decideRoom(ctx, client, rt, packet);
  const history = decideHistoryPublish(ctx, client, who.address, packet); // history/ is the core's (history.ts)
  if (history !== undefined) return history;
  const upload = decideUploadPublish(ctx, client, who.address, packet); // upload/ is the core's (upload.ts)
  if (upload !== undefined) return upload;
  const unread = decideUnreadPublish(topic); // unread/ is the core's (unread.ts)
  if (unread !== undefined) return unread;
  const r = reserved(topic);
  if (!r) return 'pass';
  if (!who.address || r.user === undefined) return 'denied'; // anonymous clients have no chat identity
  return decideReserved(ctx, client, who.address, r, packet);
}

/** The rooms/ tree belongs to the core: consumed, never routed by aedes (rooms.ts). */
async function decideRoom(
  ctx: MqttContext,
  client: Client | null,
  rt: ReturnType<typeof roomTopic>,
  packet: PublishPacket,
): Promise<Verdict> {
  const session = client && !client.closed ? ctx.sessions.get(client) : undefined;
  if (!session || !rt) return 'consumed';
  await session.run(() => roomPublish(ctx, session, rt, packet.payload as Buffer));
  return 'consumed';
}

async function decideReserved(
  ctx: MqttContext,
  client: Client | null,
  address: Address,
  r: Reserved,
  packet: PublishPacket,
): Promise<Verdict> {
  if (r.tree === 'chat') {
    await chat(ctx, client, address, r.user as string, packet);
    return 'consumed';
  }
  if (r.user !== address.local) return 'denied'; // presence/{user}: own presence only
  const session = client && !client.closed ? ctx.sessions.get(client) : undefined;
  // A presence will needs nothing: the core already says unavailable when the session ends.
  if (!session) return 'consumed';
  try {
    const cmd = parsePresence(packet.payload as Buffer);
    await session.run(() => session.presenceCommand(cmd));
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err;
    // Presence has no error channel to the device: log it, acknowledge, drop.
    ctx.log.debug(
      { jid: address.toString(), condition: err.condition, text: err.text },
      'presence publish refused',
    );
  }
  return 'consumed';
}

/** PUBLISH on chat/{user}: one message to the core, stored before the PUBACK/PUBREC goes out. */
async function chat(
  ctx: MqttContext,
  client: Client | null,
  from: Address,
  user: string,
  packet: PublishPacket,
): Promise<void> {
  // [MQTT-4.3.3-2] a QoS 2 retransmission the broker already holds: it was routed the first time.
  if (client && packet.qos === 2 && (await isStoredQos2(ctx, client, packet))) return;
  const session = client ? ctx.sessions.get(client) : undefined;
  // One device's messages enter the conversation in the order it sent them.
  // (An inline arrow, not a named one: tsx's keepNames would wrap a named closure on every message.)
  // Pipelined: the next PUBLISH may start once this one's record is asked for (MqttSession.pipeline).
  await (session
    ? session.pipeline((ord) => sendChat(ctx, session, from, user, packet, ord))
    : sendChat(ctx, session, from, user, packet));
}

async function sendChat(
  ctx: MqttContext,
  session: MqttSession | undefined,
  from: Address,
  user: string,
  packet: PublishPacket,
  ord?: Ordered,
): Promise<void> {
  const { broker } = ctx;
  let env: Envelope | undefined;
  try {
    env = chatEnvelope(from, Address.of(user, broker.domain), packet.payload as Buffer);
    await broker.router.route(env, session, ord);
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err; // no PUBACK: the client sends it again
    if (ord) await ord.after; // the error goes out in order too
    // Tell the device on its own chat topic (the same form as an error the router bounces).
    session?.deliver({
      kind: 'message',
      type: 'error',
      from: env?.to ?? Address.of('', broker.domain),
      to: from,
      id: env?.id,
      extensions: [],
      error: { condition: err.condition, type: err.type, text: err.text },
    });
  }
}

async function isStoredQos2(
  ctx: MqttContext,
  client: Client,
  packet: PublishPacket,
): Promise<boolean> {
  const persistence = (
    ctx.aedes as unknown as {
      persistence: { incomingGetPacket(c: Client, p: PublishPacket): Promise<unknown> };
    }
  ).persistence;
  try {
    await persistence.incomingGetPacket(client, packet);
    return true;
  } catch {
    return false;
  }
}

/** aedes `authorizeSubscribe`: a refusal is SUBACK 0x80 for that filter [MQTT-3.9.3-2]. */
export function authorizeSubscribe(ctx: MqttContext) {
  return (
    client: Client,
    sub: Subscription,
    done: (err: Error | null, sub?: Subscription | null) => void,
  ): void => {
    // Filters held by this connection (granted, or being decided): a bounded set [MQTT-3.9.3-2].
    const info = infoOf(ctx, client);
    const held = (info.filters ??= new Set());
    const added = !held.has(sub.topic);
    if (added && held.size >= ctx.opts.maxSubscriptionsPerConnection) {
      if (!info.filtersFull)
        ctx.log.info(
          { client: info.clientId, ip: info.ip, max: ctx.opts.maxSubscriptionsPerConnection },
          'mqtt subscription refused: too many on one connection',
        );
      info.filtersFull = true;
      return done(null, null); // SUBACK 0x80 for this filter [MQTT-3.9.3-2]
    }
    held.add(sub.topic);
    decideSubscribe(ctx, client, sub.topic).then(
      (ok) => {
        if (!ok)
          ctx.log.debug(
            { client: client.id, topic: snippet(sub.topic) },
            'mqtt subscription refused',
          );
        if (!ok && added) held.delete(sub.topic);
        done(null, ok ? sub : null);
      },
      (err) => {
        ctx.log.error({ err }, 'mqtt subscription check failed');
        if (added) held.delete(sub.topic);
        done(null, null);
      },
    );
  };
}

async function decideSubscribe(ctx: MqttContext, client: Client, filter: string): Promise<boolean> {
  const info = infoOf(ctx, client);
  if (filter.startsWith('$') && !filter.startsWith('$SYS/')) return false; // only $SYS of the '$' topics is readable
  if (!info.acl?.canSubscribe(filter)) return false;
  const rt = roomTopic(filter);
  if (rt) return decideRoomSubscribe(ctx, info.address, ctx.sessions.get(client), rt); // literal room topics only; no wildcards under rooms/
  if (filter.startsWith('rooms/') || filter === 'rooms') return false;
  const history = allowHistorySubscribe(filter, info.address);
  if (history !== undefined) return history;
  const upload = allowUploadSubscribe(filter, info.address);
  if (upload !== undefined) return upload;
  const unread = allowUnreadSubscribe(filter, info.address);
  if (unread !== undefined) return unread;
  const r = reserved(filter);
  if (!r) return true;
  // chat/+, chat/#, presence/+: accepted; the core only ever hands this identity its own messages
  // and the presence the roster entitles it to.
  if (r.user === undefined) return !isLiteral(filter);
  const me = info.address;
  if (!me) return false; // anonymous: no chat identity
  if (r.tree === 'chat') return r.user === me.local; // only {user} itself
  if (r.user === me.local) return true;
  let contact: Address;
  try {
    contact = Address.of(r.user, ctx.broker.domain);
  } catch {
    return false;
  }
  if (contact.local !== r.user) return false; // the topic level is the normalised user name
  const item = await ctx.broker.roster.item(me.bare().toString(), contact.toString());
  return item?.subscription === 'to' || item?.subscription === 'both'; // [RFC6121 4.2.2] who may see whose presence
}

/** aedes `authorizeForward`: hold back messages on topics the client may not read (per message). */
export function authorizeForward(ctx: MqttContext) {
  return (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null => {
    const info = ctx.infos.get(client);
    if (!info?.acl) return null;
    // chat/ and presence/ packets only ever come from the core, addressed to this client.
    if (!reserved(packet.topic) && !roomTopic(packet.topic) && !info.acl.canRead(packet.topic))
      return null;
    ctx.stats.sent++;
    ctx.broker.metrics.traffic('mqtt', 'out'); // PUBLISH packets sent to clients
    return packet;
  };
}
