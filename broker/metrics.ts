import type { Envelope } from './envelope.ts';

/**
 * What the core and the adapters count. bin/ passes a Prometheus-backed
 * implementation (metrics/prometheus.ts); the default keeps plain
 * counters (read by the admin socket and tests).
 */
export interface Metrics {
  routed(kind: Envelope['kind']): void;
  delivered(env: Envelope): void;
  offlineQueued(): void;
  archived(): void;
  login(protocol: string, ok: boolean): void;
  connection(protocol: string, transport: string, delta: 1 | -1): void;
  closed(protocol: string, reason: string): void;
  /** a stanza (XMPP) or packet (MQTT) read from or written to a client */
  traffic(protocol: string, direction: 'in' | 'out'): void;
  /** client state indication [XEP-0352]: a stanza held for an inactive client, or flushed when it is active again */
  csi(event: 'held' | 'flushed' | 'superseded'): void;
  /** ms from acceptance by the broker to hand-over to a local session */
  deliveryLatency(ms: number): void;
  /** one storage call */
  storeOp(op: string, ms: number, ok: boolean): void;
  /** a recent error for the admin page (bounded) */
  error(source: string, text: string): void;
  snapshot(): Record<string, number>;
}

export class CounterMetrics implements Metrics {
  private readonly c = new Map<string, number>();
  /**
   * The per-stanza and per-packet counters, by label value: counting one is
   * a Map lookup with a string the caller already has, with no key built per
   * event. snapshot() gives them the same dotted keys as the others.
   */
  private readonly hot = {
    routed: new Map<string, number>(),
    delivered: new Map<string, number>(),
  };
  private readonly trafficBy = new Map<string, { in: number; out: number }>();

  protected inc(key: string, by = 1): void {
    this.c.set(key, (this.c.get(key) ?? 0) + by);
  }

  routed(kind: string): void {
    this.hot.routed.set(kind, (this.hot.routed.get(kind) ?? 0) + 1);
  }
  delivered(env: Envelope): void {
    this.hot.delivered.set(env.kind, (this.hot.delivered.get(env.kind) ?? 0) + 1);
  }
  offlineQueued(): void {
    this.inc('offline.queued');
  }
  archived(): void {
    this.inc('archived');
  }
  login(protocol: string, ok: boolean): void {
    this.inc(`login.${protocol}.${ok ? 'ok' : 'failed'}`);
  }
  connection(protocol: string, transport: string, delta: 1 | -1): void {
    this.inc(`connections.${protocol}.${transport}`, delta);
  }
  closed(protocol: string, reason: string): void {
    this.inc(`closed.${protocol}.${reason}`);
  }
  traffic(protocol: string, direction: 'in' | 'out'): void {
    let t = this.trafficBy.get(protocol);
    if (!t) this.trafficBy.set(protocol, (t = { in: 0, out: 0 }));
    t[direction]++;
  }
  csi(event: 'held' | 'flushed' | 'superseded'): void {
    this.inc(`csi.${event}`);
  }
  deliveryLatency(_ms: number): void {}
  storeOp(op: string, _ms: number, ok: boolean): void {
    if (!ok) this.inc(`store.errors.${op}`);
  }
  error(source: string, _text: string): void {
    this.inc(`errors.${source}`);
  }
  snapshot(): Record<string, number> {
    const out = Object.fromEntries(this.c);
    for (const [family, counts] of Object.entries(this.hot))
      for (const [kind, n] of counts) out[`${family}.${kind}`] = n;
    for (const [protocol, t] of this.trafficBy) {
      if (t.in) out[`traffic.${protocol}.in`] = t.in;
      if (t.out) out[`traffic.${protocol}.out`] = t.out;
    }
    return out;
  }
}

/** One recent error, for the admin page. */
export interface RecentError {
  time: number;
  source: string;
  text: string;
}

/** One second of traffic, as the admin page charts it. */
export interface RateSample {
  /** end of the second, ms since the epoch */
  t: number;
  /** one-to-one messages routed (parley_messages_total{event="routed",kind="message"}) */
  messages: number;
  /** stanzas and MQTT packets read from clients (parley_stanzas_total{direction="in"}) */
  stanzasIn: number;
  /** … and written to them (parley_stanzas_total{direction="out"}) */
  stanzasOut: number;
  /** open connections at that moment (sum of parley_connections) */
  connections: number;
  /** per protocol (xmpp, mqtt): stanzas/packets in and out that second, open connections at its end */
  byProtocol: Record<string, ProtocolSample>;
}

export interface ProtocolSample {
  in: number;
  out: number;
  connections: number;
}

/** Samples the counters once a second into a ring buffer (the admin page's charts). */
export interface RateSource {
  start(intervalMs?: number): void;
  stop(): void;
  samples(): RateSample[];
}

/**
 * What the HTTP adapter serves of a metrics implementation: the exposition at
 * /metrics and what the admin page shows. bin/ picks the implementation
 * (metrics/prometheus.ts) and hands it to the adapter, which knows only this.
 */
export interface MetricsReport {
  /** the Prometheus text exposition */
  render(): Promise<{ contentType: string; body: string }>;
  /** the last errors, oldest first (bounded) */
  readonly recentErrors: readonly RecentError[];
  /** open connections per protocol */
  connectionsByProtocol(): Record<string, number>;
  /** open connections per protocol and transport, those with any */
  connectionsByTransport(): Promise<{ protocol: string; transport: string; count: number }[]>;
  /** a new sampler of per-second rates, started and stopped by its user */
  rateSource(): RateSource;
}
