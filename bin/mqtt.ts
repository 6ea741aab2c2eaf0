import type { SecureContextOptions } from 'node:tls';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { Level } from 'level';
import {
  MqttServer,
  nodeLocalTopic,
  type RetainedStore,
  type SessionEraser,
} from '../adapters/mqtt/index.ts';
import { clusterMqEmitter } from '../cluster/redis/mqtt.ts';
import type { Broker } from '../broker/index.ts';
import type { Config } from './config.ts';
import { copyLevel, setMqttBackup } from './backup.ts';
import {
  answerStatelessClients,
  levelRetainedStore,
  levelSessionEraser,
} from './mqtt-persistence.ts';
import { redisMqttState } from './mqtt-redis.ts';

/** The MQTT side of a running node. */
export interface RunningMqtt {
  /** undefined when both MQTT listeners are disabled */
  server?: MqttServer;
  stop(): Promise<void>;
}

/** The aedes persistence and the stores around it, with what closes them. */
interface MqttState {
  persistence: object;
  retainedStore: RetainedStore;
  sessionEraser: SessionEraser;
  /** the local database, for `parley backup`; absent when the state lives in Redis or MongoDB (their own backups cover it) */
  db?: Level<string, Buffer>;
  close(): Promise<void>;
}

/**
 * aedes state (retained messages, persistent sessions, QoS 1/2 queues,
 * wills) in a LevelDB database in `<dataDir>/mqtt`, which survives kill -9
 * the way the embedded store does (written to the log before it is
 * acknowledged).
 */
async function levelMqttState(cfg: Config, broker: Broker): Promise<MqttState> {
  const dir = path.join(cfg.dataDir, 'mqtt');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const db = new Level<string, Buffer>(dir, { valueEncoding: 'buffer' });
  await db.open(); // fail fast when another process holds the database
  const persistence = aedesPersistenceLevel(db) as object;
  const mayHaveState = await answerStatelessClients(persistence, db);
  const retainedStore = await levelRetainedStore(persistence, db, broker.log);
  return {
    persistence,
    retainedStore,
    sessionEraser: levelSessionEraser(persistence, db, mayHaveState),
    db,
    close: () => db.close(),
  };
}

/**
 * Where the MQTT state goes: with `storage.backend: redis` to the same Redis
 * server (bin/mqtt-redis.ts), with `mongodb` to the same database
 * (bin/mqtt-mongodb.ts), so a persistent session resumes on any node sharing
 * it; with the embedded store to LevelDB in the data directory.
 */
export function mqttStateBackend(cfg: Config): 'level' | 'redis' | 'mongodb' {
  return cfg.storage.backend === 'embedded' ? 'level' : cfg.storage.backend;
}

/** The state in the shared store: the node's own state in LevelDB from an earlier version stays unused. */
async function sharedMqttState(cfg: Config, broker: Broker, maxQueue: number): Promise<MqttState> {
  const dir = path.join(cfg.dataDir, 'mqtt');
  if (existsSync(path.join(dir, 'CURRENT')))
    broker.log.warn(
      { dir, backend: cfg.storage.backend },
      'mqtt state is now kept in the shared store; the local one in this directory is not used',
    );
  return cfg.storage.backend === 'redis'
    ? redisMqttState(cfg.storage.url!, cfg.storage.prefix, maxQueue)
    : // loaded only here: aedes-persistence-mongodb brings a driver of its own (half a second, 20 MiB)
      (await import('./mqtt-mongodb.ts')).mongoMqttState(cfg.storage.url!);
}

/** Pick the MQTT backends (mqttStateBackend) and start the listeners. */
export async function startMqtt(
  cfg: Config,
  broker: Broker,
  tls: SecureContextOptions,
): Promise<RunningMqtt> {
  const { tcp, tls: tlsListener, ...limits } = cfg.mqtt;
  if (!tcp && !tlsListener) return { stop: async () => {} };
  const state: MqttState =
    mqttStateBackend(cfg) === 'level'
      ? await levelMqttState(cfg, broker)
      : await sharedMqttState(cfg, broker, limits.maxOfflineQueuePerClient);
  const { persistence, retainedStore, sessionEraser } = state;
  // Nodes sharing the MQTT state (Redis or MongoDB) in a cluster: wills are kept under the node's id,
  // and each node's retained index follows the others' (the messages are in the shared store).
  const shared =
    mqttStateBackend(cfg) !== 'level' && cfg.cluster
      ? { ...clusterWills(broker, persistence, cfg.nodeId), retainedShared: true }
      : {};
  // A cluster: plain topics fan out through the cluster's Redis (docs/cluster.md, "Plain MQTT topics").
  const mq = cfg.cluster
    ? await clusterMqEmitter({
        url: cfg.cluster.redis,
        prefix: cfg.cluster.prefix,
        nodeId: cfg.nodeId,
        concurrency: limits.concurrency,
        local: nodeLocalTopic,
        log: broker.log.child({ component: 'cluster' }),
      })
    : undefined;
  const server = new MqttServer(broker, {
    ...limits,
    ...shared,
    ...(mq !== undefined && { mq }),
    tcp,
    tls: tlsListener,
    certificate: tls,
    persistence,
    retainedStore,
    sessionEraser,
  });
  try {
    await server.start();
  } catch (err) {
    await server.stop().catch(() => {});
    (mq as { close?(cb: () => void): void } | undefined)?.close?.(() => {}); // aedes closes it once it runs
    await state.close();
    throw err;
  }
  // `parley backup`: a copy from one iterator, LevelDB's snapshot, while the node serves (bin/backup.ts)
  const { db } = state;
  if (db) setMqttBackup(broker, (target) => copyLevel(db, target));
  broker.log.info({ mqtt: server.ports }, 'mqtt listening');
  return {
    server,
    async stop() {
      await server.stop();
      await state.close();
    },
  };
}

type Will = { brokerId: string };

/**
 * Wills with the MQTT state shared between cluster nodes. aedes keeps each
 * will under its broker's id and, every 4 heartbeats, fires those of the
 * brokers it has not heard on `$SYS/+/heartbeat`; it hears only its own
 * node's, so it would fire the wills of clients alive on every other node.
 * Here each node's aedes id is `parley-<node id>` (stable across restarts),
 * the wills of nodes the cluster lists as live are never handed to that
 * sweep (nor any while the cluster's membership is unknown: Redis away), and
 * a starting node fires only its previous run's. A dead node's wills fire
 * once the cluster no longer lists it, on one node: the live one first by id
 * (docs/cluster.md "MQTT wills").
 */
function clusterWills(broker: Broker, persistence: object, nodeId: string): { brokerId: string } {
  const p = persistence as { streamWill(brokers?: Record<string, number>): AsyncIterable<Will> };
  const original = p.streamWill.bind(persistence);
  p.streamWill = (brokers) =>
    (async function* () {
      const live = await broker.cluster.bus.members();
      if (live.length === 0) return; // membership unknown: fire nothing rather than a live client's will
      // Its own id stays: aedes' sweep leaves its own wills alone, and the start fires the previous run's.
      const alive = new Set(live.filter((id) => id !== nodeId).map((id) => `parley-${id}`));
      // A dead node's wills: fired by one node only (the live one first by id), not by every node's sweep.
      const firesForTheDead = [...live].sort()[0] === nodeId;
      const own = `parley-${nodeId}`;
      for await (const will of original(brokers)) {
        if (will.brokerId === own || (firesForTheDead && !alive.has(will.brokerId))) yield will;
      }
    })();
  return { brokerId: `parley-${nodeId}` };
}
