import { escapeXML } from '@xmpp/xml';
import {
  Address,
  BrokerError,
  defineModule,
  roomCluster,
  roomService,
  type Broker,
  type Envelope,
  type Room,
  type RoomService,
  type Session,
} from '../../../broker/index.ts';
import { NS_MODERATE, NS_RETRACT } from '../ns.ts';
import { parseAll } from './muc.ts';

const features = new WeakMap<Broker, string[]>();

/** Features this module adds to a room's disco#info (muc.ts lists them). */
export function roomFeatures(broker: Broker): string[] {
  return features.get(broker) ?? [];
}

/** At most this many characters of a moderator's reason are kept. */
const MAX_REASON = 1024;

/**
 * XEP-0425 Moderated Message Retraction: a moderator of a room retracts any
 * message of the room's timeline by its stanza-id (the room's seq). The
 * message becomes a tombstone in the timeline (same seq, so MAM on the room
 * and history show it in place, `<retracted/>` with `<moderated by/>` and
 * the reason), and every occupant's device gets the retraction from the
 * room's bare JID. Only occupants with the moderator role may; others get
 * `forbidden`, an id that is no message of this room `item-not-found`.
 * The request is taken on 'route:filter' before the room sees it, so the
 * room code (muc.ts) is not involved beyond listing the feature.
 */
export default defineModule({
  name: 'muc-moderation-retract',
  description:
    'Moderated message retraction in rooms: a moderator retracts a message, a tombstone stays in the room archive',
  depends: ['muc'],
  options: {},
  specs: [
    {
      spec: 'XEP-0425',
      status: 'complete',
      note: 'v0.3 (urn:xmpp:message-moderate:1); retraction only, tombstone in the room archive; the retraction message itself is not archived',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const svc = roomService(broker);
    if (!svc) return;
    const cluster = roomCluster(broker);
    features.set(broker, [NS_MODERATE]);
    ctx.onUnload(() => void features.delete(broker));
    ctx.onUnload(
      broker.hooks.on(
        'route:filter',
        (env, origin) => {
          if (
            !env ||
            env.kind !== 'iq' ||
            env.type !== 'set' ||
            env.to.domain !== svc.host ||
            !env.to.local ||
            !env.to.isBare
          )
            return undefined;
          if (!isModerate(env)) return undefined;
          // A room homed on another node: the stanza goes there (docs/cluster.md, "Rooms") and is taken below
          if (cluster && !cluster.isHome(env.to.local)) return undefined;
          return moderate(broker, svc, env, origin).then(() => null);
        },
        40,
      ),
    );
    // At the room's home, for requests from devices of other nodes (the answer goes through the router)
    if (cluster)
      ctx.onUnload(
        cluster.intercept((env) =>
          env.kind === 'iq' && env.type === 'set' && env.to.isBare && isModerate(env)
            ? moderate(broker, svc, env, undefined)
            : undefined,
        ),
      );
  },
});

function isModerate(env: Envelope): boolean {
  const raw = env.extensions[0];
  return env.extensions.length === 1 && raw !== undefined && raw.includes(NS_MODERATE);
}

function reply(
  broker: Broker,
  origin: Session | undefined,
  env: Envelope,
  error?: BrokerError,
): void {
  const answer: Envelope = {
    kind: 'iq',
    type: error ? 'error' : 'result',
    from: env.to,
    to: env.from,
    id: env.id,
    // [RFC6120 8.3.1] an error carries the request's payload back
    extensions: error ? env.extensions : [],
    ...(error ? { error: { condition: error.condition, type: error.type, text: error.text } } : {}),
  };
  // The asker's session, or (a request from another node, at the room's home) the router
  if (origin) origin.deliver(answer);
  else void broker.router.route(answer).catch(() => {});
}

async function moderate(
  broker: Broker,
  svc: RoomService,
  env: Envelope,
  origin: Session | undefined,
): Promise<void> {
  try {
    const [req] = parseAll(env.extensions);
    if (!req || req.name !== 'moderate' || req.attrs.xmlns !== NS_MODERATE)
      throw new BrokerError('bad-request', 'expected <moderate/>');
    if (!req.getChild('retract', NS_RETRACT))
      throw new BrokerError('feature-not-implemented', 'only retraction is supported'); // [XEP-0425 3]
    const id = req.attrs.id as string | undefined;
    const room = svc.byAddress(env.to);
    if (!room) throw new BrokerError('item-not-found', 'no such room');
    // [XEP-0425 3] only a moderator: one of the requester's occupants in the room with that role
    const mod = room.occupantsOf(env.from.bare().toString()).find((o) => o.role === 'moderator');
    if (!mod) throw new BrokerError('forbidden', 'only moderators may retract messages of others');
    const seq = id !== undefined && /^\d{1,15}$/.test(id) ? Number(id) : undefined;
    if (seq === undefined || seq <= room.firstSeq)
      throw new BrokerError('item-not-found', 'no message with this id in the room');
    const [msg] = await svc.history(room, { afterSeq: seq - 1, beforeSeq: seq + 1, limit: 1 });
    if (!msg || msg.seq !== seq)
      throw new BrokerError('item-not-found', 'no message with this id in the room');
    const reason = req.getChildText('reason')?.slice(0, MAX_REASON) || undefined;
    const by = room.jid.withResource(mod.nick).toString();
    const stamp = Date.now();
    // Store, then sync: the tombstone first (same seq), then the occupants hear of it.
    const tomb = `<retracted xmlns='${NS_RETRACT}' stamp='${new Date(stamp).toISOString()}'><moderated xmlns='${NS_MODERATE}' by='${escapeXML(by)}'/>${reason ? `<reason>${escapeXML(reason)}</reason>` : ''}</retracted>`;
    const value = {
      nick: msg.nick,
      user: msg.user,
      timestamp: msg.timestamp,
      ...(msg.id !== undefined ? { id: msg.id } : {}),
      extensions: [tomb],
    };
    await broker.storage.archive('rooms').setValue(room.conversation, seq, value);
    reply(broker, origin, env);
    await announce(broker, room, seq, by, reason);
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err;
    reply(broker, origin, env, err);
  }
}

/** [XEP-0425 4] the retraction, from the room's bare JID, to every device in the room. */
async function announce(
  broker: Broker,
  room: Room,
  seq: number,
  by: string,
  reason: string | undefined,
): Promise<void> {
  const retract = `<retract xmlns='${NS_RETRACT}' id='${seq}'><moderated xmlns='${NS_MODERATE}' by='${escapeXML(by)}'/>${reason ? `<reason>${escapeXML(reason)}</reason>` : ''}</retract>`;
  for (const d of room.devices()) {
    const env: Envelope = {
      kind: 'message',
      type: 'groupchat',
      from: room.jid,
      to: d.address,
      id: `moderation-${seq}`,
      extensions: [retract],
    };
    await broker.router.deliverFull(Address.parse(d.key), env);
  }
}
