// Helpers for the MQTT and cross-protocol conformance suites: a node with
// MQTT on free ports (on top of helpers.ts' startNode), real `mqtt` clients,
// and a raw socket speaking MQTT packets byte for byte.
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { startNode, type TestNode } from './helpers.ts';
import { testCa } from './test-ca.ts';

export interface MqttPorts {
  mqtt: number;
  mqtts: number;
}

/** A node with MQTT listening on free ports; `mqttPorts()` reads them from the log (again after a restart). */
export interface MqttTestNode extends TestNode {
  mqttPorts(): MqttPorts;
}

/**
 * Start a node with MQTT on free ports. `mqttConfig` is YAML for the keys
 * under `mqtt:` (indented by the caller with two spaces), e.g. limits or ACL.
 */
export async function startMqttNode(
  mqttConfig = '',
  opts: {
    dataDir?: string;
    /** more top-level YAML, e.g. a storage section */ config?: string;
  } = {},
): Promise<MqttTestNode> {
  const config = `mqtt:\n  tcp: { host: 127.0.0.1, port: 0 }\n  tls: { host: 127.0.0.1, port: 0 }\n${mqttConfig}\n${opts.config ?? ''}`;
  const node = (await startNode({ config, dataDir: opts.dataDir })) as MqttTestNode;
  node.mqttPorts = () => {
    for (const line of node.log) {
      if (!line.includes('"mqtt listening"')) continue;
      const rec = JSON.parse(line) as { mqtt: { tcp?: number; tls?: number } };
      return { mqtt: rec.mqtt.tcp ?? 0, mqtts: rec.mqtt.tls ?? 0 };
    }
    throw new Error(`no "mqtt listening" line in the node log:\n${node.log.join('\n')}`);
  };
  return node;
}

/** Create accounts through the running node's admin socket (faster than one CLI process each). */
export async function addUsers(node: TestNode, users: Record<string, string>): Promise<void> {
  const socket = path.join(node.dataDir, 'admin.sock');
  await Promise.all(
    Object.entries(users).map(
      ([username, password]) =>
        new Promise<void>((resolve, reject) => {
          const c = net.connect(socket);
          let buf = '';
          c.setEncoding('utf8');
          c.on('connect', () =>
            c.write(JSON.stringify({ cmd: 'user.add', username, password }) + '\n'),
          );
          c.on('data', (d: string) => {
            buf += d;
            if (!buf.includes('\n')) return;
            c.end();
            const res = JSON.parse(buf) as { ok: boolean; error?: string };
            if (res.ok) resolve();
            else reject(new Error(`user.add ${username}: ${res.error}`));
          });
          c.on('error', reject);
        }),
    ),
  );
}

const openClients = new Set<MqttClient>();

/**
 * Connect the real `mqtt` client and wait for CONNACK; rejects with the client's error on a refusal.
 * With `tls`, the certificate is verified against the suite's test CA (conformance/test-ca.ts) unless `ca` is given.
 */
export async function mqttConnect(
  port: number,
  opts: IClientOptions & { tls?: boolean } = {},
): Promise<MqttClient> {
  const url = `${opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`;
  const ca = opts.tls ? await testCa() : undefined;
  const c = mqtt.connect(url, {
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 4,
    ca,
    ...opts,
  });
  openClients.add(c);
  // Messages a server sends right behind the CONNACK (a persistent session's
  // queue, retained messages) can be parsed in the same turn as the CONNACK,
  // before the caller can listen: keep them for nextMessage/collect.
  const early: EarlyMessage[] = [];
  earlyMessages.set(c, early);
  const keep = (
    topic: string,
    payload: Buffer,
    packet: { qos: number; retain: boolean; dup: boolean },
  ) =>
    early.push({
      topic,
      payload: payload.toString(),
      qos: packet.qos,
      retain: packet.retain,
      dup: packet.dup,
    });
  c.on('message', keep);
  return new Promise((resolve, reject) => {
    c.once('connect', () => {
      setImmediate(() => c.off('message', keep));
      resolve(c);
    });
    c.once('error', (err) => {
      c.end(true);
      reject(err);
    });
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

type EarlyMessage = Received;
const earlyMessages = new WeakMap<MqttClient, EarlyMessage[]>();

/** Up to `max` messages on `topic` that arrived in the CONNACK's turn and nobody took yet, oldest first. */
function takeEarly(c: MqttClient, topic: string, max = Infinity): EarlyMessage[] {
  const early = earlyMessages.get(c) ?? [];
  const mine: EarlyMessage[] = [];
  for (let i = 0; i < early.length && mine.length < max;) {
    if (early[i].topic === topic) mine.push(...early.splice(i, 1));
    else i++;
  }
  return mine;
}

/** End every client still open; call from afterEach/after hooks. */
export async function endAllMqtt(): Promise<void> {
  const all = [...openClients];
  openClients.clear();
  await Promise.all(all.map((c) => c.endAsync(true).catch(() => {})));
}

/** Drop the client's TCP connection without DISCONNECT (an abrupt loss: the will fires). */
export function dropMqtt(c: MqttClient): void {
  openClients.delete(c);
  c.stream.destroy();
  c.end(true);
}

export interface Received {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
  dup: boolean;
}

/** The next message on `topic` (exact topic name). */
export function nextMessage(c: MqttClient, topic: string, timeout = 3000): Promise<Received> {
  const [early] = takeEarly(c, topic, 1);
  if (early) return Promise.resolve(early);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      c.off('message', on);
      reject(new Error(`no message on ${topic} within ${timeout} ms`));
    }, timeout);
    const on = (
      tp: string,
      payload: Buffer,
      packet: { qos: number; retain: boolean; dup: boolean },
    ): void => {
      if (tp !== topic) return;
      clearTimeout(t);
      c.off('message', on);
      resolve({
        topic: tp,
        payload: payload.toString(),
        qos: packet.qos,
        retain: packet.retain,
        dup: packet.dup,
      });
    };
    c.on('message', on);
  });
}

/** Every message on `topic` from now on (payload text). */
export function collect(c: MqttClient, topic: string): string[] {
  const out: string[] = takeEarly(c, topic).map((m) => m.payload);
  c.on('message', (tp, payload) => {
    if (tp === topic) out.push(payload.toString());
  });
  return out;
}

export const sleepMs = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Serialise a packet object (mqtt-packet's shape). */
export function packetBytes(p: Record<string, unknown>): Buffer {
  return mqttPacket.generate(p as unknown as Packet);
}

/** A CONNECT packet with the usual defaults (MQTT 3.1.1, clean session, keepalive 60). */
export function connectBytes(o: {
  clientId?: string;
  username?: string;
  password?: string;
  clean?: boolean;
  keepalive?: number;
  protocolVersion?: number;
  will?: Record<string, unknown>;
}): Buffer {
  // mqtt-packet refuses to write an empty client id with clean session 0: write clean 1, then clear the flag.
  const forbidden = o.clean === false && !o.clientId;
  const bytes = packetBytes({
    cmd: 'connect',
    protocolId: o.protocolVersion === 3 ? 'MQIsdp' : 'MQTT',
    protocolVersion: o.protocolVersion ?? 4,
    clean: forbidden ? true : (o.clean ?? true),
    clientId: o.clientId ?? '',
    keepalive: o.keepalive ?? 60,
    username: o.username,
    password: o.password === undefined ? undefined : Buffer.from(o.password),
    will: o.will,
  });
  if (forbidden) bytes[9] &= ~0x02; // connect flags: after type, 1-byte length, "MQTT" name, level
  return bytes;
}

/** A plain socket speaking MQTT packets, for assertions on exact wire behaviour. */
export class RawMqtt {
  readonly packets: Packet[] = [];
  private readonly sock: net.Socket;
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    this.parser.on('packet', (p) => {
      this.packets.push(p);
      this.wake();
    });
    this.parser.on('error', () => {});
    sock.on('data', (d: Buffer) => this.parser.parse(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** With `tls`: verified against the suite's test CA; `tlsOptions` adds or overrides (ca, ciphers, …). */
  static async connect(
    port: number,
    opts: { tls?: boolean; tlsOptions?: tls.ConnectionOptions } = {},
  ): Promise<RawMqtt> {
    const ca = opts.tls ? await testCa() : undefined;
    return new Promise((resolve, reject) => {
      const sock = opts.tls
        ? tls.connect({ host: '127.0.0.1', port, ca, ...opts.tlsOptions })
        : net.connect({ host: '127.0.0.1', port });
      sock.once(opts.tls ? 'secureConnect' : 'connect', () => resolve(new RawMqtt(sock)));
      sock.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(bytes: Buffer | Record<string, unknown>): void {
    if (!this.closed) this.sock.write(Buffer.isBuffer(bytes) ? bytes : packetBytes(bytes));
  }

  /** The first received packet (from `from` on) matching pred; removes nothing. */
  next(pred: (p: Packet) => boolean, timeout = 3000): Promise<Packet> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.packets.find(pred);
        if (hit) {
          clearTimeout(t);
          return resolve(hit);
        }
        if (this.closed) {
          clearTimeout(t);
          return reject(
            new Error(`closed; got ${this.packets.map((p) => p.cmd).join(',') || 'nothing'}`),
          );
        }
        this.waiters.push(check);
      };
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `no matching packet in ${timeout} ms; got ${this.packets.map((p) => p.cmd).join(',')}`,
            ),
          ),
        timeout,
      );
      check();
    });
  }

  /** The CONNACK return code. */
  async connack(timeout = 3000): Promise<number> {
    const p = (await this.next((x) => x.cmd === 'connack', timeout)) as { returnCode?: number };
    return p.returnCode ?? -1;
  }

  /** Resolves true once the server closed the connection, false if still open after `timeout`. */
  waitClosed(timeout = 3000): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeout);
      const check = (): void => {
        if (this.closed) {
          clearTimeout(t);
          resolve(true);
        } else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/**
 * SUBSCRIBE and return the granted QoS per filter as the SUBACK carried them
 * (0x80 = refused [MQTT-3.9.3-2]); mqtt.js reports a 0x80 as an error.
 */
export async function grantedQos(
  c: MqttClient,
  topics: string[],
  qos: 0 | 1 | 2 = 0,
): Promise<number[]> {
  try {
    return (await c.subscribeAsync(topics, { qos })).map((g) => g.qos);
  } catch (err) {
    const granted = (err as { packet?: { granted?: (number | { qos: number })[] } }).packet
      ?.granted;
    if (granted) return granted.map((g) => (typeof g === 'number' ? g : g.qos));
    throw err;
  }
}
