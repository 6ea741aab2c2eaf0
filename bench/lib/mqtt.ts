// A minimal MQTT 3.1.1 client for load generation: raw net sockets, packets
// encoded and parsed by mqtt-packet, QoS 1 acknowledged by hand.
import net from 'node:net';
import mqttPacket from 'mqtt-packet';

export interface MqttConnect {
  host: string;
  port: number;
  clientId: string;
  username?: string;
  password?: string;
  localAddress?: string;
  keepalive?: number;
  timeoutMs?: number;
}

const gen = (p: object): Buffer => mqttPacket.generate(p as mqttPacket.Packet);

export class MqttClient {
  readonly sock: net.Socket;
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  private nextId = 1;
  /** payload of every PUBLISH received (QoS 1 ones are PUBACKed first) */
  onPublish?: (topic: string, payload: Buffer) => void;
  private waiters = new Map<string, (p: mqttPacket.Packet) => void>();
  closed = false;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => this.parser.parse(d));
    sock.on('close', () => (this.closed = true));
    sock.on('error', () => (this.closed = true));
    this.parser.on('packet', (p) => this.packet(p));
  }

  private packet(p: mqttPacket.Packet): void {
    if (p.cmd === 'publish') {
      if (p.qos === 1) this.sock.write(gen({ cmd: 'puback', messageId: p.messageId }));
      this.onPublish?.(p.topic, p.payload as Buffer);
      return;
    }
    const key = p.cmd === 'suback' || p.cmd === 'puback' ? `${p.cmd}:${p.messageId}` : p.cmd;
    const w = this.waiters.get(key);
    if (w) {
      this.waiters.delete(key);
      w(p);
    }
  }

  private wait(key: string, ms: number): Promise<mqttPacket.Packet> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters.delete(key);
        reject(new Error(`timeout waiting for ${key}`));
      }, ms);
      this.waiters.set(key, (p) => {
        clearTimeout(t);
        resolve(p);
      });
    });
  }

  static async connect(o: MqttConnect): Promise<MqttClient> {
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: o.host, port: o.port, localAddress: o.localAddress });
      s.setNoDelay(true);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    const c = new MqttClient(sock);
    const ack = c.wait('connack', o.timeoutMs ?? 30_000);
    sock.write(
      gen({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        clientId: o.clientId,
        keepalive: o.keepalive ?? 600,
        ...(o.username !== undefined && {
          username: o.username,
          password: Buffer.from(o.password ?? ''),
        }),
      }),
    );
    const p = (await ack) as mqttPacket.IConnackPacket;
    if (p.returnCode !== 0) throw new Error(`CONNACK ${p.returnCode}`);
    return c;
  }

  async subscribe(topic: string, qos: 0 | 1, ms = 30_000): Promise<void> {
    const messageId = this.nextId++;
    const ack = this.wait(`suback:${messageId}`, ms);
    this.sock.write(gen({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] }));
    const p = (await ack) as mqttPacket.ISubackPacket;
    if (p.granted[0] === 128) throw new Error(`SUBACK refused ${topic}`);
  }

  /** Fire-and-forget publish; QoS 1 PUBACKs are not awaited (the window is end-to-end). */
  publish(topic: string, payload: string | Buffer, qos: 0 | 1): void {
    const messageId = qos === 1 ? (this.nextId = (this.nextId % 65535) + 1) : undefined;
    this.sock.write(
      gen({ cmd: 'publish', topic, payload, qos, retain: false, dup: false, messageId }),
    );
  }

  destroy(): void {
    this.sock.destroy();
  }
}
