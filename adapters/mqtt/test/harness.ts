/**
 * Test harness for the MQTT adapter: a real Broker over MemoryStorage and the
 * single-node cluster, a real MqttServer on a free port (aedes' in-memory
 * persistence unless one is given), the real `mqtt` client library and the raw
 * packet socket of conformance/mqtt-helpers.ts. Fake XMPP-side sessions come
 * from the core's own test helpers.
 */
import type { IClientOptions, MqttClient } from 'mqtt';
import { makeBroker } from '../../../broker/test/helpers.ts';
import type { Broker } from '../../../broker/index.ts';
import { endAllMqtt, mqttConnect, RawMqtt } from '../../../conformance/mqtt-helpers.ts';
import { MqttServer } from '../server.ts';
import type { MqttOptions } from '../options.ts';
import type { Storage } from '../../../storage/types.ts';

export {
  collect,
  connectBytes,
  grantedQos,
  nextMessage,
  RawMqtt,
  sleepMs,
} from '../../../conformance/mqtt-helpers.ts';

export interface Harness {
  broker: Broker;
  server: MqttServer;
  port: number;
  /** connect and wait for CONNACK (rejects on a refused CONNACK) */
  connect(opts?: IClientOptions): Promise<MqttClient>;
  /** connect as user (password `<user>-pw`) with this client id */
  login(user: string, clientId: string, opts?: IClientOptions): Promise<MqttClient>;
  raw(): Promise<RawMqtt>;
  stop(): Promise<void>;
}

/** Start a broker with alice, bob and carol (password `<user>-pw`) and an MQTT listener. */
export async function startHarness(
  opts: Partial<MqttOptions> = {},
  storage?: Storage,
): Promise<Harness> {
  const broker = await makeBroker({}, undefined, storage);
  const server = new MqttServer(broker, {
    tcp: { host: '127.0.0.1', port: 0 },
    tls: null,
    sysIntervalMs: 0,
    ...opts,
  });
  await server.start();
  const port = server.ports.tcp!;
  const raws: RawMqtt[] = [];
  return {
    broker,
    server,
    port,
    connect: (o: IClientOptions = {}) => mqttConnect(port, o),
    login: (user, clientId, o = {}) =>
      mqttConnect(port, { username: user, password: `${user}-pw`, clientId, ...o }),
    async raw() {
      const r = await RawMqtt.connect(port);
      raws.push(r);
      return r;
    },
    async stop() {
      for (const r of raws) r.destroy();
      await endAllMqtt();
      await server.stop();
      await broker.stop();
    },
  };
}
