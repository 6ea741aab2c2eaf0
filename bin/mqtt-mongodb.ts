import { MongoClient, type Collection, type Document } from 'mongodb';
import aedesPersistenceMongodb from 'aedes-persistence-mongodb';
import type { RetainedStore, SessionEraser } from '../adapters/mqtt/index.ts';
import { connectMongo, dbNameOf, writeConcernOf } from '../storage/mongodb.ts';

/**
 * MQTT state in the MongoDB database of the store (`storage.backend:
 * mongodb`): aedes-persistence-mongodb keeps persistent sessions
 * (subscriptions), their QoS 1/2 queues, inbound QoS 2 packets and wills;
 * the retained messages are the index's (adapters/mqtt/retained.ts), one
 * document per topic. Every collection is `mqtt.<name>` in the store's
 * database (the one in `storage.url`, else `parley`), so a persistent
 * session resumes with its queued messages on any node that shares the
 * database, and after a restart of this one.
 *
 * Collections (docs/operations.md "MongoDB"): `mqtt.subscriptions`
 * `{clientId, topic, qos}`, `mqtt.outgoing` `{clientId, packet}` (the
 * queues), `mqtt.incoming` `{clientId, packet}` (QoS 2 awaiting PUBREL),
 * `mqtt.will` `{clientId, packet}` (packet.brokerId: the node's aedes id),
 * `mqtt.retained-index` `{_id: topic, qos, owner, bytes, payload}`.
 * aedes-persistence-mongodb also makes `mqtt.retained` (its own retained
 * store, replaced by the index here: it stays empty).
 *
 * The persistence gets a database of this module's client (driver of the
 * store, write concern of the store: majority unless the URL names one)
 * rather than the URL: with a URL it parses the database name with
 * `URL.parse`, which returns null for a replica set's `host1,host2` list.
 */
export interface MongoMqttState {
  persistence: object;
  retainedStore: RetainedStore;
  sessionEraser: SessionEraser;
  close(): Promise<void>;
}

/** Prefix of every MQTT collection in the store's database. */
export const MQTT_COLLECTION_PREFIX = 'mqtt.';

interface RetainedDoc {
  _id: string;
  qos: number;
  owner: string;
  bytes: number;
  payload: Buffer;
}

/** A document of the package's collections: all are by client id (`packet` in the queues and wills). */
interface ClientDoc {
  clientId: string;
  packet?: { brokerId?: string };
}

export async function mongoMqttState(url: string): Promise<MongoMqttState> {
  const client = new MongoClient(url, { appName: 'parley-mqtt', ...writeConcernOf(url) });
  await connectMongo(client, url, 'mqtt state');
  try {
    return await open(client, url);
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  }
}

async function open(client: MongoClient, url: string): Promise<MongoMqttState> {
  const db = client.db(dbNameOf(url) ?? 'parley');
  const coll = <T extends Document>(name: string) =>
    db.collection<T>(`${MQTT_COLLECTION_PREFIX}${name}`);
  const subscriptions = coll<ClientDoc>('subscriptions');
  const outgoing = coll<ClientDoc>('outgoing');
  const incoming = coll<ClientDoc>('incoming');
  const will = coll<ClientDoc>('will');
  const retained = coll<RetainedDoc>('retained-index');
  // Besides the package's own: it looks subscriptions up by client on every CONNECT (and upserts
  // them by client and topic) and wills by client, with no index for either.
  await subscriptions.createIndex({ clientId: 1, topic: 1 }, { name: 'parley_clientId_topic' });
  await will.createIndex({ clientId: 1, 'packet.brokerId': 1 }, { name: 'parley_clientId_broker' });

  const persistence = aedesPersistenceMongodb({ db, collectionPrefix: MQTT_COLLECTION_PREFIX });
  const p = persistence as {
    cleanSubscriptions(client: { id: string }): Promise<unknown>;
    delWill(client: { id: string; brokerId?: string }): Promise<unknown>;
  };
  // aedes removes a will as {id, brokerId}; the package removes any will of the client id. In a
  // cluster the sweep for a dead node would then remove the will the client left on its new node.
  const delWill = p.delWill.bind(persistence);
  p.delWill = async (c) => {
    // At CONNECT aedes passes its Client (no brokerId, but its broker): remove this node's will of
    // that id only, not an unfired will another node (maybe dead, not yet reaped) holds for it.
    const brokerId = c.brokerId ?? (c as { broker?: { id?: string } }).broker?.id;
    if (brokerId === undefined) return delWill(c);
    const doc = await will.findOneAndDelete(
      { clientId: c.id, 'packet.brokerId': brokerId },
      { promoteBuffers: true },
    );
    return doc?.packet ?? null;
  };

  /** Distinct client ids in a collection, of the ids matching `filter` (all when absent). */
  const idsIn = async (c: Collection<ClientDoc>, filter: Document = {}): Promise<string[]> => {
    const out: string[] = [];
    // allowDiskUse: a $group over a million client ids passes MongoDB's 100 MB per stage (before 6.0)
    const cursor = c.aggregate<{ _id: string }>(
      // sorted on the clientId index first, so the planner can scan distinct ids, not every document
      [{ $match: filter }, { $sort: { clientId: 1 } }, { $group: { _id: '$clientId' } }],
      { allowDiskUse: true },
    );
    for await (const d of cursor) if (typeof d._id === 'string') out.push(d._id);
    return out;
  };
  /** Client ids of one account: `{user}/…` (context.ts), a range by bytes ('0' follows '/'). */
  const ofUser = (user: string) => ({ clientId: { $gte: `${user}/`, $lt: `${user}0` } });
  const clearQueue = async (id: string): Promise<void> => {
    await outgoing.deleteMany({ clientId: id });
  };
  const sessionEraser: SessionEraser = {
    async sessionIds() {
      // a persistent session is what a client finds again: subscriptions or queued messages (a will alone is not one)
      return [...new Set([...(await idsIn(subscriptions)), ...(await idsIn(outgoing))])];
    },
    clearQueue,
    async users() {
      const users = new Set<string>();
      for (const c of [subscriptions, outgoing, incoming, will])
        for (const id of await idsIn(c)) {
          const slash = id.indexOf('/');
          if (slash > 0) users.add(id.slice(0, slash));
        }
      return [...users];
    },
    async erase(user) {
      const range = ofUser(user);
      const ids = new Set<string>();
      for (const c of [subscriptions, outgoing, incoming, will])
        for (const id of await idsIn(c, range)) ids.add(id);
      // through the persistence: it keeps the subscriptions in a trie too, on every node
      for (const id of ids) await p.cleanSubscriptions({ id });
      for (const c of [outgoing, incoming, will]) await c.deleteMany(range);
      return [...ids];
    },
  };
  const retainedStore: RetainedStore = {
    async *scan() {
      const cursor = retained.find({}, { projection: { owner: 1, bytes: 1 } });
      for await (const d of cursor) yield { topic: d._id, owner: d.owner, bytes: d.bytes };
    },
    async get(topic) {
      const d = await retained.findOne({ _id: topic }, { promoteBuffers: true });
      if (d === null) return undefined;
      return { topic, qos: (d.qos & 3) as 0 | 1 | 2, owner: d.owner, payload: d.payload };
    },
    put: async (m) =>
      void (await retained.replaceOne(
        { _id: m.topic },
        { qos: m.qos, owner: m.owner, bytes: m.payload.length, payload: m.payload },
        { upsert: true },
      )),
    del: async (topic) => void (await retained.deleteOne({ _id: topic })),
  };
  return {
    persistence,
    retainedStore,
    sessionEraser,
    // aedes' close destroys the persistence, which leaves a client it was given open
    close: () => client.close(),
  };
}
