import type { SecureContextOptions } from 'node:tls';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { Level } from 'level';
import { MqttServer, type RetainedStore, type SessionEraser } from '../adapters/mqtt/index.ts';
import type { Broker } from '../broker/index.ts';
import type { Config } from './config.ts';
import { answerStatelessClients, levelRetainedStore, levelSessionEraser } from './mqtt-persistence.ts';
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
  close(): Promise<void>;
}

/**
 * aedes state (retained messages, persistent sessions, QoS 1/2 queues,
 * wills) in a LevelDB database in `<dataDir>/mqtt`, which survives kill -9
 * the way the embedded store does (written to the log before it is
 * acknowledged).
 */
async function levelMqttState(cfg: Config, broker: Broker): Promise<MqttState> {
  if (cfg.storage.backend === 'mongodb') {
    // TODO: aedes-persistence-mongodb with the cluster (docs/architecture.md "MQTT"); until then MQTT state stays local.
    broker.log.warn({ dir: path.join(cfg.dataDir, 'mqtt') }, 'mqtt state is kept on local disk, not in mongodb');
  }
  const dir = path.join(cfg.dataDir, 'mqtt');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const db = new Level<string, Buffer>(dir, { valueEncoding: 'buffer' });
  await db.open(); // fail fast when another process holds the database
  const persistence = aedesPersistenceLevel(db) as object;
  const mayHaveState = await answerStatelessClients(persistence, db);
  const retainedStore = await levelRetainedStore(persistence, db, broker.log);
  return { persistence, retainedStore, sessionEraser: levelSessionEraser(persistence, db, mayHaveState), close: () => db.close() };
}

/**
 * Pick the MQTT backends and start the listeners: with `storage.backend:
 * redis` the state goes to the same Redis server (bin/mqtt-redis.ts), so a
 * persistent session resumes on any node sharing it; else to LevelDB.
 */
export async function startMqtt(cfg: Config, broker: Broker, tls: SecureContextOptions): Promise<RunningMqtt> {
  const { tcp, tls: tlsListener, ...limits } = cfg.mqtt;
  if (!tcp && !tlsListener) return { stop: async () => {} };
  const state: MqttState =
    cfg.storage.backend === 'redis' ? await redisMqttState(cfg.storage.url!, cfg.storage.prefix, limits.maxOfflineQueuePerClient) : await levelMqttState(cfg, broker);
  const { persistence, retainedStore, sessionEraser } = state;
  const server = new MqttServer(broker, { ...limits, tcp, tls: tlsListener, certificate: tls, persistence, retainedStore, sessionEraser });
  try {
    await server.start();
  } catch (err) {
    await server.stop().catch(() => {});
    await state.close();
    throw err;
  }
  broker.log.info({ mqtt: server.ports }, 'mqtt listening');
  return {
    server,
    async stop() {
      await server.stop();
      await state.close();
    },
  };
}
