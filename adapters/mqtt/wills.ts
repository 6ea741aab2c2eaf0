import { promisify } from 'node:util';
import type { Aedes, Client, PublishPacket } from 'aedes';
import type { Logger } from '../../broker/index.ts';

interface WillStore {
  streamWill(brokers?: Record<string, number>): AsyncIterable<PublishPacket & { clientId: string; brokerId: string }>;
  delWill(client: { id: string; brokerId: string }): Promise<unknown>;
}

/**
 * Publish the wills that an earlier run of this node left in persistence
 * (it was killed with clients connected), right at start. aedes would do the
 * same only after 4 heartbeats, because it cannot tell a restarted node from
 * a live peer. Each will still goes through authorizePublish (client null).
 */
export async function fireStaleWills(aedes: Aedes, log: Logger): Promise<number> {
  const store = (aedes as unknown as { persistence: WillStore }).persistence;
  const authorize = promisify((c: Client | null, p: PublishPacket, cb: (err?: Error | null) => void) => aedes.authorizePublish(c, p, cb));
  const publish = promisify((p: PublishPacket, cb: (err?: Error) => void) => aedes.publish(p, cb));
  let n = 0;
  for await (const will of store.streamWill({ [aedes.id]: Date.now() })) {
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
