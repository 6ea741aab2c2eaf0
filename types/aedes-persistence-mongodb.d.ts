// Minimal typings for aedes-persistence-mongodb (it ships none).
declare module 'aedes-persistence-mongodb' {
  /**
   * An aedes persistence on MongoDB. With `db` (a database of a connected
   * client) it uses that and never closes it; with `url` it connects with its
   * own driver. Collections: `<collectionPrefix>subscriptions`, `retained`,
   * `will`, `outgoing`, `incoming`.
   */
  export default function aedesPersistenceMongodb(opts: {
    db?: unknown;
    url?: string;
    database?: string;
    mongoOptions?: object;
    collectionPrefix?: string;
    dropExistingIndexes?: boolean;
    ttlAfterDisconnected?: boolean;
    ttl?: { subscriptions?: number; packets?: number | Record<string, number> };
  }): object;
}
