import type { Registry } from 'prom-client';
import type { ProtocolSample, RateSample, RateSource } from '../broker/index.ts';

type Totals = Omit<RateSample, 't'>;

/**
 * Samples the Prometheus counters once a second into a ring buffer, so the
 * admin page can draw rates over the last minutes. It reads the registry
 * that /metrics renders: the page and a scraper never disagree.
 */
export class RateSampler implements RateSource {
  /** seconds kept (600 = ten minutes) */
  readonly capacity: number;
  private readonly registry: Registry;
  private readonly ring: (RateSample | undefined)[];
  private next = 0;
  private last: Totals | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(registry: Registry, capacity = 600) {
    this.registry = registry;
    this.capacity = capacity;
    this.ring = new Array(capacity);
  }

  start(intervalMs = 1000): void {
    if (this.timer) return;
    // A failed reading skips one sample; it must never be an unhandled rejection (that ends the process).
    const tick = () => void this.sample().catch(() => {});
    tick();
    this.timer = setInterval(tick, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Read the counters now and append the change since the previous reading. */
  async sample(now = Date.now()): Promise<void> {
    const cur = await this.read();
    const prev = this.last;
    this.last = cur;
    if (!prev) return; // the first reading is the baseline
    // A counter never goes down; if one does (registry reset), count from zero.
    const d = (k: 'messages' | 'stanzasIn' | 'stanzasOut') => Math.max(0, cur[k] - prev[k]);
    const byProtocol: Record<string, ProtocolSample> = {};
    for (const [p, c] of Object.entries(cur.byProtocol)) {
      const b = prev.byProtocol[p] ?? { in: 0, out: 0 };
      byProtocol[p] = {
        in: Math.max(0, c.in - b.in),
        out: Math.max(0, c.out - b.out),
        connections: c.connections,
      };
    }
    this.push({
      t: now,
      messages: d('messages'),
      stanzasIn: d('stanzasIn'),
      stanzasOut: d('stanzasOut'),
      connections: cur.connections,
      byProtocol,
    });
  }

  push(s: RateSample): void {
    this.ring[this.next] = s;
    this.next = (this.next + 1) % this.capacity;
  }

  /** The samples kept, oldest first. */
  samples(): RateSample[] {
    const out: RateSample[] = [];
    for (let i = 0; i < this.capacity; i++) {
      const s = this.ring[(this.next + i) % this.capacity];
      if (s) out.push(s);
    }
    return out;
  }

  private async read(): Promise<Totals> {
    const values = async (name: string) =>
      (await this.registry.getSingleMetric(name)?.get())?.values ?? [];
    const sum = (
      vs: { value: number; labels: Record<string, unknown> }[],
      match: Record<string, string>,
    ) =>
      vs
        .filter((v) => Object.entries(match).every(([k, want]) => v.labels[k] === want))
        .reduce((n, v) => n + v.value, 0);
    const [messages, stanzas, connections] = await Promise.all([
      values('parley_messages_total'),
      values('parley_stanzas_total'),
      values('parley_connections'),
    ]);
    const byProtocol: Record<string, ProtocolSample> = {};
    const of = (p: string) => (byProtocol[p] ??= { in: 0, out: 0, connections: 0 });
    for (const v of stanzas)
      if (v.labels.direction === 'in' || v.labels.direction === 'out')
        of(String(v.labels.protocol))[v.labels.direction] += v.value;
    for (const v of connections) of(String(v.labels.protocol)).connections += v.value;
    return {
      messages: sum(messages, { event: 'routed', kind: 'message' }),
      stanzasIn: sum(stanzas, { direction: 'in' }),
      stanzasOut: sum(stanzas, { direction: 'out' }),
      connections: sum(connections, {}),
      byProtocol,
    };
  }
}
