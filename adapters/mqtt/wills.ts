import { promisify } from 'node:util';
import type { Aedes, Client, PublishPacket } from 'aedes';
import type { Logger } from '../../broker/index.ts';

interface WillStore {
  streamWill(
    brokers?: Record<string, number>,
  ): AsyncIterable<PublishPacket & { clientId: string; brokerId: string }>;
  delWill(client: { id: string; brokerId: string }): Promise<unknown>;
}

/**
 * Publish the wills that an earlier run of this node left in persistence
 * (it was killed with clients connected), right at start. aedes would do the
 * same only after 4 heartbeats, because it cannot tell a restarted node from
 * a live peer. Each will still goes through authorizePublish (client null).
 * With a stable broker id (a cluster node: the MQTT state is shared), only
 * the wills kept under that id.
 */
export async function fireStaleWills(
  aedes: Aedes,
  log: Logger,
  stableId?: string,
): Promise<number> {
  const store = (aedes as unknown as { persistence: WillStore }).persistence;
  const authorize = promisify(
    (c: Client | null, p: PublishPacket, cb: (err?: Error | null) => void) =>
      aedes.authorizePublish(c, p, cb),
  );
  const publish = promisify((p: PublishPacket, cb: (err?: Error) => void) => aedes.publish(p, cb));
  let n = 0;
  // A stable id (a cluster node's): exactly this id's wills, the previous run's (the state is
  // shared, other brokers' wills are theirs). A random one: every other id's, the earlier runs'.
  for await (const will of store.streamWill(stableId ? {} : { [aedes.id]: Date.now() })) {
    if (stableId && will.brokerId !== stableId) continue;
    try {
      await authorize(null, will);
      await publish(will);
      n++;
    } catch (err) {
      log.info({ err: (err as Error).message, client: will.clientId }, 'stale will not published');
    }
    await store.delWill({ id: will.clientId, brokerId: will.brokerId });
  }
  if (n > 0) log.info({ wills: n }, 'published wills left by the previous run');
  return n;
}
