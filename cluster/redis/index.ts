import type { Cluster } from '../types.ts';
import { RedisBus, type RedisBusOptions } from './bus.ts';
import { RedisRegistry, type RedisRegistryOptions } from './registry.ts';

export { RedisBus, NoReceiverError, BusDownError, redact } from './bus.ts';
export { RedisRegistry } from './registry.ts';
export { WIRE_VERSION, encodeFrame, decodeFrame } from './wire.ts';

/** A bus and a registry on one Redis (bin/ picks this when `cluster.redis` is set). */
export function redisCluster(
  opts: RedisBusOptions & RedisRegistryOptions,
): Cluster & { bus: RedisBus; registry: RedisRegistry } {
  const bus = new RedisBus(opts);
  const registry = new RedisRegistry(bus, opts);
  return { bus, registry };
}
