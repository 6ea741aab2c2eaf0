import type { Aedes } from 'aedes';
import type { MqttStats } from './context.ts';
import type { RetainedIndex } from './retained.ts';

/**
 * Broker statistics on `$SYS/broker/...`, retained, every `intervalMs`, with
 * Mosquitto's topic names so existing dashboards read them. `$SYS` is
 * read-only: no client may publish there (authorize.ts).
 */
export class SysStats {
  private timer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();

  constructor(
    private readonly aedes: Aedes,
    private readonly stats: MqttStats,
    private readonly retained: Pick<RetainedIndex, 'size' | 'dropped'>,
    private readonly version: string,
  ) {}

  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.publishAll();
    this.timer = setInterval(() => this.publishAll(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The current values, by topic (also what tests read). */
  values(): Record<string, string> {
    const clients = Object.values(
      (this.aedes as unknown as { clients: Record<string, { subscriptions: object }> }).clients,
    );
    const subscriptions = clients.reduce((n, c) => n + Object.keys(c.subscriptions).length, 0);
    return {
      '$SYS/broker/version': this.version,
      '$SYS/broker/uptime': `${Math.floor((Date.now() - this.startedAt) / 1000)} seconds`,
      '$SYS/broker/clients/connected': String(this.aedes.connectedClients),
      '$SYS/broker/subscriptions/count': String(subscriptions),
      '$SYS/broker/messages/received': String(this.stats.received),
      '$SYS/broker/messages/sent': String(this.stats.sent),
      '$SYS/broker/messages/denied': String(this.stats.denied),
      '$SYS/broker/publish/messages/dropped': String(this.stats.dropped),
      '$SYS/broker/retained messages/count': String(this.retained.size),
      '$SYS/broker/retained messages/dropped': String(this.retained.dropped),
    };
  }

  private publishAll(): void {
    if (this.aedes.closed) return;
    for (const [topic, value] of Object.entries(this.values())) {
      this.aedes.publish(
        { cmd: 'publish', topic, payload: Buffer.from(value), qos: 0, retain: true, dup: false },
        () => {},
      );
    }
  }
}
