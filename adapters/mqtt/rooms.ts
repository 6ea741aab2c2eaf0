import type { Client } from 'aedes';
import {
  Address,
  BrokerError,
  roomCluster,
  roomService,
  type Device,
  type RoomCluster,
  type Reason,
  type Room,
  type RoomEvent,
  type RoomMessage,
  type RoomService,
  type Session,
} from '../../broker/index.ts';
import type { MqttContext } from './context.ts';
import type { MqttSession } from './session.ts';
import { chatTopic, isLiteralLevel } from './topics.ts';

/**
 * Rooms over MQTT (docs/mqtt-mapping.md, "Rooms"): the `rooms/` tree
 * belongs to the core, like `chat/`.
 *
 * - SUBSCRIBE `rooms/{room}`: join (nick = the user name, or what the
 *   device set with a PUBLISH on `rooms/{room}/join`); refused with SUBACK
 *   0x80 when the room would refuse the join (members-only, banned, wrong
 *   password, nick taken, full).
 * - PUBLISH `rooms/{room}`: a groupchat message (text, or JSON like `chat/`).
 * - PUBLISH `rooms/{room}/join`: `{ "nick"?, "password"?, "echo"? }` for the
 *   next SUBSCRIBE (or a nick change when already in).
 * - SUBSCRIBE `rooms/{room}/presence`: occupants' presence as JSON.
 * - UNSUBSCRIBE `rooms/{room}` or disconnect: leave.
 */

export type RoomTopic = { room: string; sub: '' | 'presence' | 'join' };

/** Classify a topic of the `rooms/` tree; undefined when it is not one, `invalid` when malformed. */
export function roomTopic(topic: string): RoomTopic | 'invalid' | undefined {
  if (topic !== 'rooms' && !topic.startsWith('rooms/')) return undefined;
  const parts = topic.split('/');
  if (parts.length < 2 || parts.length > 3 || !isLiteralLevel(parts[1])) return 'invalid';
  const sub = parts[2] ?? '';
  if (sub !== '' && sub !== 'presence' && sub !== 'join') return 'invalid';
  if (parts.length === 3 && sub === '') return 'invalid';
  return { room: parts[1], sub: sub as RoomTopic['sub'] };
}

export function roomMessageTopic(room: string): string {
  return `rooms/${room}`;
}

export function roomPresenceTopic(room: string): string {
  return `rooms/${room}/presence`;
}

/** Join parameters a device gave on `rooms/{room}/join`, per session and room. */
interface JoinParams {
  nick?: string;
  password?: string;
  echo?: boolean;
}
const joinParams = new WeakMap<MqttSession, Map<string, JoinParams>>();

const REASONS: Partial<Record<Reason, string>> = {
  100: 'non-anonymous',
  104: 'config-changed',
  170: 'logged',
  201: 'created',
  210: 'nick-assigned',
  301: 'banned',
  303: 'nick-changed',
  307: 'kicked',
  321: 'affiliation-changed',
  322: 'members-only',
  332: 'shutdown',
};

function rooms(ctx: MqttContext): RoomService {
  const svc = roomService(ctx.broker);
  if (!svc) throw new BrokerError('service-unavailable', 'groupchat is off');
  return svc;
}

/** The room's local name from a topic level: must be the normalised form (like chat/{user}). */
function localOf(svc: RoomService, level: string): string {
  const local = svc.roomLocal(level);
  if (local !== level)
    throw new BrokerError('jid-malformed', 'room names in topics are lower case and normalised');
  return local;
}

function paramsOf(session: MqttSession, room: string): JoinParams {
  return joinParams.get(session)?.get(room) ?? {};
}

/**
 * SUBSCRIBE on the rooms/ tree: may this device have it? (The join itself
 * follows the SUBACK.) `session` is undefined while a persistent session's
 * subscriptions are restored, before the CONNACK [MQTT-3.1.2-4]: the
 * device's address decides then, with no join parameters.
 */
export async function decideRoomSubscribe(
  ctx: MqttContext,
  address: Address | undefined,
  session: MqttSession | undefined,
  t: RoomTopic | 'invalid',
): Promise<boolean> {
  const svc = roomService(ctx.broker);
  if (!svc || t === 'invalid' || !address || t.sub === 'join') return false;
  try {
    const local = localOf(svc, t.room);
    const room = svc.get(local);
    const user = address.bare().toString();
    if (t.sub === 'presence')
      return !room || room.mayRead(user) || room.occupantsOf(user).length > 0;
    const p = session ? paramsOf(session, local) : {};
    const cluster = roomCluster(ctx.broker);
    // A room homed on another node (docs/cluster.md, "Rooms"): its home decides, so that the SUBACK
    // carries the refusal as on one node. Not while a session is restored (before the CONNACK).
    if (session && cluster && !cluster.isHome(local))
      return await cluster.admits(local, address, p.nick ?? address.local, p.password);
    if (room?.occupantOf(address.toString())) return true;
    svc.admit(room, user, p.nick ?? address.local, p.password); // [XEP-0045 7.2.5-7.2.9] the same rules as XMPP
    return true;
  } catch (err) {
    if (err instanceof BrokerError) return false;
    throw err;
  }
}

/**
 * A room operation at the room's home (docs/cluster.md, "Rooms"); on one
 * node, here. While its home cannot be reached the operation is held: the
 * session's step ends at once (its other PUBLISHes, a rejoin, go on) and a
 * later refusal goes to `late`.
 */
function roomCall(
  ctx: MqttContext,
  session: MqttSession,
  local: string,
  op: Parameters<RoomCluster['call']>[2],
  late: (err: BrokerError) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let held = false;
    roomCluster(ctx.broker)!
      .call(local, session.address, op, () => {
        held = true;
        resolve();
      })
      .then(resolve, (err: unknown) => {
        if (!held) return reject(err);
        if (err instanceof BrokerError) late(err);
        else ctx.log.error({ err, room: local }, 'held mqtt room operation failed');
      });
  });
}

/** The rooms each session joined through `rooms/{room}` (a SUBSCRIBE again, or one the restore made already, joins once). */
const joinedBy = new WeakMap<MqttSession, Set<string>>();

/** After the SUBACK: join (a refused join now, after a race, is only logged). */
export async function roomSubscribed(
  ctx: MqttContext,
  session: MqttSession,
  t: RoomTopic,
): Promise<void> {
  if (t.sub !== '') return;
  const svc = rooms(ctx);
  const local = localOf(svc, t.room);
  const p = paramsOf(session, local);
  let joined = joinedBy.get(session);
  if (!joined) joinedBy.set(session, (joined = new Set()));
  if (joined.has(local)) return;
  joined.add(local);
  const refused = (err: BrokerError) => {
    joined.delete(local);
    ctx.log.debug(
      { jid: session.address.toString(), room: local, condition: err.condition },
      'mqtt room join refused',
    );
    session.deliver(errorEnvelope(svc, local, session, err));
  };
  try {
    const join = {
      t: 'join' as const,
      nick: p.nick ?? session.address.local,
      password: p.password,
      echo: p.echo ?? false,
      presence: {},
    };
    await roomCall(ctx, session, local, join, refused);
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err;
    refused(err);
  }
}

/** UNSUBSCRIBE `rooms/{room}`: leave. */
export function roomUnsubscribed(ctx: MqttContext, session: MqttSession, t: RoomTopic): void {
  const svc = roomService(ctx.broker);
  if (!svc || t.sub !== '') return;
  joinedBy.get(session)?.delete(localOf(svc, t.room));
  roomCluster(ctx.broker)!
    .call(t.room, session.address, { t: 'leave' })
    .catch((err) => ctx.log.debug({ err }, 'mqtt room leave failed'));
}

/** The filters a client holds now: at CONNACK, those its persistent session restored (read before any SUBSCRIBE of the new connection). */
export function restoredFilters(client: Client): string[] {
  return Object.keys(
    (client as unknown as { subscriptions: Record<string, unknown> }).subscriptions ?? {},
  );
}

/** A device reconnecting with a persistent session is subscribed already: it rejoins. */
export async function rejoinRestored(
  ctx: MqttContext,
  session: MqttSession,
  filters: string[],
): Promise<void> {
  if (!roomService(ctx.broker)) return;
  for (const filter of filters) {
    const t = roomTopic(filter);
    if (t && t !== 'invalid' && t.sub === '')
      await roomSubscribed(ctx, session, t).catch((err) =>
        ctx.log.error({ err }, 'room rejoin failed'),
      );
  }
}

function errorEnvelope(
  svc: RoomService,
  local: string,
  session: MqttSession,
  err: BrokerError,
  id?: string,
) {
  return {
    kind: 'message' as const,
    type: 'error',
    from: Address.of(local, svc.host),
    to: session.address,
    id,
    extensions: [],
    error: { condition: err.condition, type: err.type, text: err.text },
  };
}

function utf8(payload: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(payload);
  } catch {
    throw new BrokerError('bad-request', 'payload is not UTF-8 text');
  }
}

/** PUBLISH on the rooms/ tree (consumed; errors go to the device's chat/{me} as for chat/). */
export async function roomPublish(
  ctx: MqttContext,
  session: MqttSession | undefined,
  t: RoomTopic | 'invalid',
  payload: Buffer,
): Promise<void> {
  if (!session) return;
  const svc = rooms(ctx);
  let local = '';
  let id: string | undefined;
  const late = (err: BrokerError) =>
    session.deliver(errorEnvelope(svc, local || 'rooms', session, err, id));
  try {
    if (t === 'invalid' || t.sub === 'presence')
      throw new BrokerError('bad-request', 'publish on rooms/{room} or rooms/{room}/join');
    local = localOf(svc, t.room);
    const text = utf8(payload);
    let o: Record<string, unknown> | undefined;
    if (text.trimStart().startsWith('{')) {
      try {
        const v: unknown = JSON.parse(text);
        if (v && typeof v === 'object' && !Array.isArray(v)) o = v as Record<string, unknown>;
      } catch {
        o = undefined;
      }
    }
    const str = (k: string, max: number): string | undefined => {
      const v = o?.[k];
      if (v === undefined) return undefined;
      if (typeof v !== 'string' || v.length > max)
        throw new BrokerError(
          'bad-request',
          `"${k}" must be a string of at most ${max} characters`,
        );
      return v;
    };
    if (t.sub === 'join') {
      if (!o) throw new BrokerError('bad-request', 'rooms/{room}/join takes a JSON object');
      const p: JoinParams = { nick: str('nick', 1023), password: str('password', 1024) };
      if (o.echo !== undefined) {
        if (typeof o.echo !== 'boolean')
          throw new BrokerError('bad-request', '"echo" must be a boolean');
        p.echo = o.echo;
      }
      if (p.nick !== undefined) svc.checkNick(p.nick);
      let m = joinParams.get(session);
      if (!m) joinParams.set(session, (m = new Map()));
      m.set(local, p);
      // a nick change when already in [XEP-0045 7.6], at the room's home
      await roomCall(ctx, session, local, { t: 'nick', nick: p.nick, echo: p.echo }, late);
      return;
    }
    let body: string | undefined = text;
    let subject: string | undefined;
    if (o) {
      body = str('body', 1 << 20);
      subject = str('subject', 1 << 20);
      id = str('id', 256);
      if (body === undefined && subject === undefined)
        throw new BrokerError('bad-request', 'a JSON payload needs "body" or "subject"');
    }
    if (body !== undefined && body.length === 0)
      throw new BrokerError('bad-request', 'empty message');
    await roomCall(ctx, session, local, { t: 'post', body, subject, id }, late);
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err;
    session.deliver(errorEnvelope(svc, local || 'rooms', session, err, id));
  }
}

/** A device sees occupants' presence only when subscribed to the room's presence topic. */
export function presenceShown(session: Session, _d: Device, room: Room): boolean {
  return (session as MqttSession).subscribedQos(roomPresenceTopic(room.local)) >= 0;
}

/** Room events as MQTT publishes to one device (registered as the room service's 'mqtt' renderer). */
export function renderRoomEvent(session: Session, d: Device, ev: RoomEvent): void {
  const s = session as MqttSession;
  const room = ev.room;
  switch (ev.kind) {
    case 'message': {
      const m = ev.msg;
      if (m.seq === 0 && m.body === undefined && m.subject === undefined) return; // chat states: nothing to show
      if (!ev.history && m.origin === d.key && !d.echo) return; // the sender asked not to get its own back
      publishTo(s, roomMessageTopic(room.local), messagePayload(room, m, !!ev.history));
      return;
    }
    case 'subject':
      if (ev.subject)
        publishTo(
          s,
          roomMessageTopic(room.local),
          JSON.stringify({
            room: room.jid.toString(),
            nick: ev.subject.nick,
            subject: ev.subject.text,
          }),
        );
      return;
    case 'presence': {
      const self = ev.self.has(d.key);
      // Out of the room (left, kicked, banned, 332, destroyed): a SUBSCRIBE joins again.
      if (self && !ev.available && !ev.newNick) joinedBy.get(s)?.delete(room.local);
      const out: Record<string, unknown> = {
        room: room.jid.toString(),
        nick: ev.nick,
        available: ev.available,
        role: ev.role,
        affiliation: ev.affiliation,
      };
      if (room.config.whois === 'anyone' || self || room.occupantOf(d.key)?.role === 'moderator')
        out.user = ev.user;
      if (ev.presence?.show) out.show = ev.presence.show;
      if (ev.presence?.status) out.status = ev.presence.status;
      if (self) out.self = true;
      const reasons = ev.reasons
        .filter((c) => self || c >= 300)
        .map((c) => REASONS[c] ?? String(c));
      if (reasons.length) out.reasons = reasons;
      if (ev.newNick) out.newNick = ev.newNick;
      if (ev.reason) out.reason = ev.reason;
      if (ev.actor) out.actor = ev.actor;
      if (ev.destroy)
        out.destroyed = { reason: ev.destroy.reason, alternate: ev.destroy.alternate };
      publishTo(s, roomPresenceTopic(room.local), JSON.stringify(out));
      return;
    }
    case 'private': {
      // Private messages come on the device's own chat topic, from the occupant address.
      const topic = chatTopic(s.address.local);
      publishTo(
        s,
        topic,
        JSON.stringify({
          from: room.jid.withResource(ev.nick).toString(),
          room: room.jid.toString(),
          nick: ev.nick,
          id: ev.id,
          body: ev.body,
          private: true,
        }),
      );
      return;
    }
    case 'status':
      return;
  }
}

/**
 * A live message's payload is the same for every device of the room: encoded
 * once per message, not once per delivery (a 10,000-device room). History
 * copies are one device's, encoded as they come.
 */
const livePayloads = new WeakMap<RoomMessage, Buffer>();

function messagePayload(room: Room, m: RoomMessage, delayed: boolean): Buffer {
  if (delayed) return Buffer.from(messageJson(room, m, true));
  let b = livePayloads.get(m);
  if (!b) livePayloads.set(m, (b = Buffer.from(messageJson(room, m, false))));
  return b;
}

function messageJson(room: Room, m: RoomMessage, delayed: boolean): string {
  const out: Record<string, unknown> = {
    room: room.jid.toString(),
    nick: m.nick,
    seq: m.seq,
    id: m.id,
    timestamp: m.timestamp,
  };
  if (room.config.whois === 'anyone') out.from = m.user;
  if (m.body !== undefined) out.body = m.body;
  if (m.subject !== undefined) out.subject = m.subject;
  if (delayed) out.delayed = true;
  return JSON.stringify(out);
}

function publishTo(s: MqttSession, topic: string, payload: string | Buffer): void {
  const qos = s.subscribedQos(topic);
  if (qos < 0) return;
  void s.publish(topic, payload, qos);
}
