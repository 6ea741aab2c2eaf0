import type { Subscription } from 'aedes';
import { unreadService, type Address, type UnreadCounts } from '../../broker/index.ts';
import type { MqttContext } from './context.ts';
import { MqttSession } from './session.ts';
import { isLiteral, topicMatches } from './topics.ts';

/**
 * Unread counts for devices (docs/mqtt-mapping.md, "Unread counts"): the
 * core's counts (broker/modules/unread.ts) as JSON on `unread/{me}`, to each
 * client of the user subscribed to it, when it subscribes (the current
 * value, as a retained message would give it) and whenever they change. The
 * tree belongs to the core: nobody publishes there, and each client only
 * ever gets its own user's counts.
 */

const PREFIX = 'unread/';

/** True for a topic or filter under `unread/`. */
export function isUnreadTopic(topic: string): boolean {
  return topic === 'unread' || topic.startsWith(PREFIX);
}

/** The unread topic of a user (local part). */
export function unreadTopic(local: string): string {
  return PREFIX + local;
}

/** A PUBLISH under `unread/`: always refused (the core publishes there); undefined for other topics. */
export function decideUnreadPublish(topic: string): 'denied' | undefined {
  return isUnreadTopic(topic) ? 'denied' : undefined;
}

/** A SUBSCRIBE under `unread/`: a literal filter only for one's own counts; wildcards see nothing routed. */
export function allowUnreadSubscribe(
  filter: string,
  address: Address | undefined,
): boolean | undefined {
  if (!isUnreadTopic(filter)) return undefined;
  if (!address) return false;
  if (!isLiteral(filter)) return true; // nothing in the tree is ever routed through aedes
  return filter === unreadTopic(address.local);
}

/** The JSON of a user's counts: `{ "total": n, "conversations": { "<bare JID>": n } }`, only conversations with unread messages. */
export function unreadJson(counts: UnreadCounts): string {
  return JSON.stringify({ total: counts.total, conversations: counts.conversations });
}

/** After a SUBSCRIBE that covers the client's own unread topic: the current counts, to that client alone. */
export async function unreadSnapshot(
  ctx: MqttContext,
  session: MqttSession,
  sub: Subscription,
): Promise<void> {
  const topic = unreadTopic(session.address.local);
  if ((sub.qos as number) === 128 || !topicMatches(sub.topic, topic)) return;
  const svc = unreadService(ctx.broker);
  if (!svc) return;
  await session.publish(topic, unreadJson(await svc.counts(session.address)), Math.min(sub.qos, 1));
}

/** Follow the counts: each change goes to the user's clients subscribed to their unread topic. Returns the remover. */
export function followUnread(ctx: MqttContext): () => void {
  const svc = unreadService(ctx.broker);
  if (!svc) return () => {};
  return svc.onChange((user, counts) => {
    const topic = unreadTopic(user.local);
    let json: string | undefined;
    for (const s of ctx.broker.sessions.sessionsOf(user)) {
      if (!(s instanceof MqttSession)) continue;
      const qos = s.subscribedQos(topic);
      if (qos < 0) continue;
      void s.publish(topic, (json ??= unreadJson(counts)), Math.min(qos, 1));
    }
  });
}
