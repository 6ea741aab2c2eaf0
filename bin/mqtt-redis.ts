import { Redis } from 'ioredis';
import aedesPersistenceRedis from 'aedes-persistence-redis';
import type { RetainedStore, SessionEraser } from '../adapters/mqtt/index.ts';
import { decodeRetained, encodeRetained } from './mqtt-persistence.ts';

/**
 * MQTT state in the Redis server of the store (`storage.backend: redis`):
 * aedes-persistence-redis keeps persistent sessions (subscriptions), their
 * QoS 1/2 queues, inbound QoS 2 packets and wills; the retained messages are
 * the index's (adapters/mqtt/retained.ts), one hash field per topic. Every
 * key is under `<storage.prefix>mqtt:`, so a persistent session resumes with
 * its queued messages on any node that shares the server, and after a
 * restart of this one.
 *
 * aedes-persistence-redis's keys (its asyncPersistence.js), client ids
 * URI-encoded: `clients` (set of ids with subscriptions), `client:<id>`
 * (hash topic → subscription), `outgoing:<id>` (list of packet keys, the
 * queue), `outgoing:<id>:<broker>:<counter>` (a QoS 2 copy for one client),
 * `outgoing-id:<id>:<message id>`, `incoming:<id>:<message id>`, `will`
 * (list of will keys), `will:<broker>:<id>`, `packet:<broker>:<counter>`
 * (+ `:offlineCount`).
 */
export interface RedisMqttState {
  persistence: object;
  retainedStore: RetainedStore;
  sessionEraser: SessionEraser;
  close(): Promise<void>;
}

/** Hash of retained messages (the index's store), value as in the LevelDB one. */
const RETAINED = 'parley-retained';

export async function redisMqttState(
  url: string,
  prefix: string,
  maxQueue: number,
): Promise<RedisMqttState> {
  const keyPrefix = `${prefix}mqtt:`;
  // keyPrefix applies to every key of a command, not to SCAN patterns (added by hand below).
  const conn = new Redis(url, { keyPrefix, lazyConnect: true, connectionName: 'parley-mqtt' });
  conn.on('error', () => {}); // errors surface on the commands; the connection retries with backoff
  await conn.connect();
  // maxSessionDelivery: what one CONNECT delivers of the queue; as long as the queue may be.
  const persistence = aedesPersistenceRedis({ conn, maxSessionDelivery: maxQueue });
  const p = persistence as { cleanSubscriptions(client: { id: string }): Promise<unknown> };

  /** Keys matching a pattern (without the prefix), without the prefix. Used at start and for account removal only. */
  const scan = async (pattern: string): Promise<string[]> => {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await conn.scan(cursor, 'MATCH', keyPrefix + pattern, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) out.push(k.slice(keyPrefix.length));
    } while (cursor !== '0');
    return out;
  };
  const glob = (s: string) => s.replace(/[*?[\]\\]/g, '\\$&');
  /** Client ids with a queue: `outgoing:<id>` (ids are URI-encoded, so a key with another `:` is a QoS 2 copy). */
  const queued = async (idPrefix = ''): Promise<string[]> =>
    (await scan(`outgoing:${glob(encodeURIComponent(idPrefix))}*`))
      .map((k) => k.slice('outgoing:'.length))
      .filter((rest) => !rest.includes(':'))
      .map((rest) => decodeURIComponent(rest));
  const withWill = async (): Promise<{ id: string; key: string }[]> =>
    (await conn.lrange('will', 0, -1)).map((key) => ({
      key,
      id: decodeURIComponent(key.slice(key.lastIndexOf(':') + 1)),
    }));
  const clearQueue = async (id: string): Promise<void> => {
    const list = `outgoing:${encodeURIComponent(id)}`;
    const copies = (await conn.lrange(list, 0, -1)).filter((k) => k.startsWith(`${list}:`));
    await conn.del(list, ...copies);
  };
  const sessionEraser: SessionEraser = {
    async sessionIds() {
      // a persistent session is what a client finds again: subscriptions or queued messages (a will alone is not one)
      return [...new Set([...(await conn.smembers('clients')), ...(await queued())])];
    },
    clearQueue,
    async users() {
      const ids = [
        ...(await conn.smembers('clients')),
        ...(await queued()),
        ...(await withWill()).map((w) => w.id),
      ];
      return [
        ...new Set(
          ids.filter((id) => id.indexOf('/') > 0).map((id) => id.slice(0, id.indexOf('/'))),
        ),
      ];
    },
    async erase(user) {
      const mine = (id: string) => id.startsWith(`${user}/`);
      const wills = (await withWill()).filter((w) => mine(w.id));
      const ids = new Set([
        ...(await conn.smembers('clients')).filter(mine),
        ...(await queued(`${user}/`)),
        ...wills.map((w) => w.id),
      ]);
      for (const id of ids) {
        await p.cleanSubscriptions({ id });
        await clearQueue(id);
        const inbound = await scan(`incoming:${glob(encodeURIComponent(id))}:*`);
        if (inbound.length > 0) await conn.del(...inbound);
      }
      for (const w of wills) {
        await conn.lrem('will', 0, w.key);
        await conn.del(w.key);
      }
      return [...ids];
    },
  };
  const retainedStore: RetainedStore = {
    async *scan() {
      let cursor = '0';
      do {
        const [next, flat] = await conn.hscanBuffer(RETAINED, cursor, 'COUNT', 500);
        cursor = String(next);
        for (let i = 0; i < flat.length; i += 2) {
          const m = decodeRetained(flat[i].toString('utf8'), flat[i + 1]);
          yield { topic: m.topic, owner: m.owner, bytes: m.payload.length };
        }
      } while (cursor !== '0');
    },
    async get(topic) {
      const v = await conn.hgetBuffer(RETAINED, topic);
      return v === null ? undefined : decodeRetained(topic, v);
    },
    put: async (m) => void (await conn.hset(RETAINED, m.topic, encodeRetained(m))),
    del: async (topic) => void (await conn.hdel(RETAINED, topic)),
  };
  return {
    persistence,
    retainedStore,
    sessionEraser,
    async close() {
      // aedes' close destroys the persistence, which disconnects; this covers a start that failed before.
      if (conn.status !== 'end') conn.disconnect();
    },
  };
}
