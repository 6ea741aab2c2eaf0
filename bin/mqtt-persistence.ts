import { Readable } from 'node:stream';
import type { Level } from 'level';
import type { Logger } from '../broker/index.ts';
import {
  ownerOf,
  type RetainedMessage,
  type RetainedStore,
  type SessionEraser,
} from '../adapters/mqtt/index.ts';

/** Key prefixes of aedes-persistence-level under which a client's session state lives (its asyncPersistence.js). */
const CLIENT_PREFIXES = ['subscriptions:', 'outgoing:', 'outgoing-id:', 'incoming:', 'will:'];

type Fn = (...args: unknown[]) => unknown;
type Target = { id?: string; clientId?: string };

/**
 * aedes asks its persistence about every client that connects: stored
 * subscriptions, the outgoing queue, the will, inbound QoS 2 packets. With
 * aedes-persistence-level each question is a LevelDB read or iterator, even
 * for the clean-session devices that make most connections and never store
 * anything — garbage and CPU on every login, where Mosquitto and aedes'
 * memory persistence answer from memory.
 *
 * This keeps the set of client ids that may have state on disk: every id
 * found by one key scan at start, then every id a write names (added before
 * the write starts, so a read racing it goes to disk). For any other id the
 * questions are answered without the disk, with what the disk would say:
 * nothing. The set only grows (an id whose state was removed is still asked
 * about on disk), so an answer is never wrong, only sometimes not shortened.
 * Calls made with a callback are passed through unchanged. (The PUBACK
 * lookup of clean sessions is answered for every backend in
 * adapters/mqtt/persistence.ts.)
 */
export async function answerStatelessClients(
  persistence: object,
  db: Level<string, Buffer>,
): Promise<(clientId: string) => boolean> {
  const stateful = new Set<string>();
  for await (const key of db.keys()) {
    const prefix = CLIENT_PREFIXES.find((p) => key.startsWith(p));
    if (!prefix) continue;
    const end = key.indexOf(':', prefix.length);
    stateful.add(decodeURIComponent(key.slice(prefix.length, end === -1 ? undefined : end)));
  }
  const p = persistence as Record<string, Fn>;
  const original = (name: string): Fn => {
    const fn = p[name];
    if (typeof fn !== 'function') throw new Error(`mqtt persistence has no ${name}()`);
    return fn.bind(persistence);
  };
  const hasCallback = (args: unknown[]) => typeof args[args.length - 1] === 'function';
  /** Reads about one client: answered at once when the client has nothing stored. */
  const read = (name: string, empty: () => unknown) => {
    const fn = original(name);
    p[name] = (...args: unknown[]) => {
      const who = args[0] as Target;
      return hasCallback(args) || stateful.has(who.id ?? '') ? fn(...args) : empty();
    };
  };
  /** Writes naming a client (or subscriptions naming several): the ids join the set first. */
  const write = (name: string, ids: (args: unknown[]) => (string | undefined)[]) => {
    const fn = original(name);
    p[name] = (...args: unknown[]) => {
      for (const id of ids(args)) if (id !== undefined) stateful.add(id);
      return fn(...args);
    };
  };
  read('subscriptionsByClient', () => Promise.resolve([]));
  read('cleanSubscriptions', () => Promise.resolve());
  read('outgoingStream', () => Readable.from([]));
  read('getWill', () => Promise.resolve(undefined));
  read('delWill', () => Promise.resolve(undefined));
  read('cleanIncoming', () => Promise.resolve());
  const client = (args: unknown[]) => [(args[0] as Target).id];
  write('addSubscriptions', client);
  write('outgoingUpdate', client);
  write('incomingStorePacket', client);
  write('putWill', client);
  write('outgoingEnqueue', (args) => [(args[0] as Target).clientId]);
  write('outgoingEnqueueCombi', (args) =>
    ((args[0] as Target[] | undefined) ?? []).map((s) => s.clientId),
  );
  return (id) => stateful.has(id);
}

/** Key prefix of retained messages in the MQTT database (the index's store, adapters/mqtt/retained.ts). */
const RETAINED = 'parley-retained:';
/** aedes-persistence-level's own retained keys, from before the index: moved once at start. */
const OLD_RETAINED = 'retained:';

/** A retained message's value: [qos u8][owner length u16][owner utf8][payload]. */
export function encodeRetained(m: RetainedMessage): Buffer {
  const owner = Buffer.from(m.owner, 'utf8');
  const head = Buffer.alloc(3);
  head[0] = m.qos;
  head.writeUInt16BE(owner.length, 1);
  return Buffer.concat([head, owner, m.payload]);
}

export function decodeRetained(topic: string, v: Buffer): RetainedMessage {
  const n = v.readUInt16BE(1);
  return {
    topic,
    qos: (v[0] & 3) as 0 | 1 | 2,
    owner: v.toString('utf8', 3, 3 + n),
    payload: v.subarray(3 + n),
  };
}

/**
 * Retained messages in the MQTT LevelDB database, one key per topic, read one
 * by one by the index (never scanned per SUBSCRIBE). Messages stored by
 * aedes-persistence-level under its own keys (an older data directory) are
 * moved here once, with an unknown owner (counted in the total only).
 */
export async function levelRetainedStore(
  persistence: object,
  db: Level<string, Buffer>,
  log: Logger,
): Promise<RetainedStore> {
  const old = persistence as {
    createRetainedStream(
      pattern: string,
    ): AsyncIterable<{ topic: string; payload: Buffer; qos?: number; clientId?: string }>;
  };
  const range = (prefix: string) => ({ gte: prefix, lt: `${prefix.slice(0, -1)};` });
  let found = false;
  for await (const _key of db.keys({ ...range(OLD_RETAINED), limit: 1 })) found = true;
  if (found) {
    let moved = 0;
    for (const pattern of ['#', '$SYS/#']) {
      for await (const p of old.createRetainedStream(pattern)) {
        if (!p.payload?.length) continue;
        await db.put(
          RETAINED + p.topic,
          encodeRetained({
            topic: p.topic,
            payload: Buffer.from(p.payload),
            qos: Math.min(p.qos ?? 0, 2) as 0 | 1 | 2,
            owner: ownerOf(p.clientId),
          }),
        );
        moved++;
      }
    }
    await db.clear(range(OLD_RETAINED));
    log.info({ moved }, 'retained messages moved to the indexed store');
  }
  return {
    async *scan() {
      for await (const [key, v] of db.iterator(range(RETAINED))) {
        const m = decodeRetained(key.slice(RETAINED.length), v);
        yield { topic: m.topic, owner: m.owner, bytes: m.payload.length };
      }
    },
    async get(topic) {
      const v = await db.get(RETAINED + topic);
      return v === undefined ? undefined : decodeRetained(topic, v);
    },
    put: (m) => db.put(RETAINED + m.topic, encodeRetained(m)),
    del: (topic) => db.del(RETAINED + topic),
  };
}

/**
 * Persistent-session state of aedes-persistence-level by account: every key
 * of a client id `{user}/{client id}` (context.ts) under the prefixes of
 * CLIENT_PREFIXES. Subscriptions go through the persistence (it keeps them
 * in a trie in memory too); the rest is cleared by key range.
 */
export function levelSessionEraser(
  persistence: object,
  db: Level<string, Buffer>,
  mayHaveState: (clientId: string) => boolean = () => true,
): SessionEraser {
  const p = persistence as { cleanSubscriptions(client: { id: string }): Promise<unknown> };
  /** Client ids with keys, of one account or of all; ids are URI-encoded in keys, so ASCII below 0x7f. */
  const ids = async (user?: string): Promise<Set<string>> => {
    const out = new Set<string>();
    const start = user === undefined ? '' : encodeURIComponent(`${user}/`);
    for (const prefix of CLIENT_PREFIXES) {
      for await (const key of db.keys({ gte: prefix + start, lt: `${prefix}${start}\x7f` })) {
        const end = key.indexOf(':', prefix.length);
        out.add(decodeURIComponent(key.slice(prefix.length, end === -1 ? undefined : end)));
      }
    }
    return out;
  };
  const under = (prefix: string, id: string) => ({
    gte: `${prefix}${encodeURIComponent(id)}:`,
    lt: `${prefix}${encodeURIComponent(id)};`,
  });
  return {
    async sessionIds() {
      // a persistent session is what a client finds again: subscriptions or queued messages (a will alone is not one)
      const out = new Set<string>();
      for (const prefix of ['subscriptions:', 'outgoing:']) {
        for await (const key of db.keys({ gte: prefix, lt: `${prefix.slice(0, -1)};` })) {
          const end = key.indexOf(':', prefix.length);
          out.add(decodeURIComponent(key.slice(prefix.length, end === -1 ? undefined : end)));
        }
      }
      return [...out];
    },
    async clearQueue(id) {
      if (!mayHaveState(id)) return; // never stored anything: no disk access on every clean-session login
      for (const prefix of ['outgoing:', 'outgoing-id:']) await db.clear(under(prefix, id));
    },
    async users() {
      const users = new Set<string>();
      for (const id of await ids()) {
        const slash = id.indexOf('/');
        if (slash > 0) users.add(id.slice(0, slash));
      }
      return [...users];
    },
    async erase(user) {
      const found = [...(await ids(user))];
      for (const id of found) {
        await p.cleanSubscriptions({ id });
        for (const prefix of ['subscriptions:', 'outgoing:', 'outgoing-id:', 'incoming:'])
          await db.clear(under(prefix, id));
        await db.del(`will:${encodeURIComponent(id)}`);
      }
      return found;
    },
  };
}
