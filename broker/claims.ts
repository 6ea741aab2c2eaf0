import type { Broker } from './broker.ts';

/**
 * Something to be done once per period across the cluster (a push
 * notification per burst, docs/push.md): true for the one node that claims
 * `key` first while no claim on it holds, false on every other until the
 * claim expires after `ttlMs`. On one node the claim is in memory
 * (cluster/local.ts); with `cluster.redis` it is `SET NX PX` in Redis
 * (docs/cluster.md). When the cluster cannot answer (Redis away) the caller
 * goes ahead: done twice rather than not at all.
 */
export async function claimOnce(broker: Broker, key: string, ttlMs: number): Promise<boolean> {
  if (ttlMs <= 0) return true;
  try {
    return await broker.cluster.bus.claim(key, ttlMs);
  } catch (err) {
    broker.log.debug({ err: (err as Error).message, key }, 'cluster claim unanswered; going ahead');
    return true;
  }
}
