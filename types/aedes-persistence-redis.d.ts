// Minimal typings for aedes-persistence-redis (it ships none).
declare module 'aedes-persistence-redis' {
  import type { Redis } from 'ioredis';
  /** An aedes persistence on Redis; `conn` is a connection it uses (and disconnects on destroy). */
  export default function aedesPersistenceRedis(opts: {
    conn?: Redis;
    maxSessionDelivery?: number;
    packetTTL?: (packet: unknown) => number;
  }): object;
}
