import type { Envelope } from './envelope.ts';

/**
 * What the core counts. bin/ may replace this with a Prometheus-backed
 * implementation; the default keeps plain counters (read by the admin socket).
 */
export interface Metrics {
  routed(kind: Envelope['kind']): void;
  delivered(env: Envelope): void;
  offlineQueued(): void;
  archived(): void;
  login(protocol: string, ok: boolean): void;
  connection(protocol: string, transport: string, delta: 1 | -1): void;
  closed(protocol: string, reason: string): void;
  snapshot(): Record<string, number>;
}

export class CounterMetrics implements Metrics {
  private readonly c = new Map<string, number>();

  private inc(key: string, by = 1): void {
    this.c.set(key, (this.c.get(key) ?? 0) + by);
  }

  routed(kind: string): void {
    this.inc(`routed.${kind}`);
  }
  delivered(env: Envelope): void {
    this.inc(`delivered.${env.kind}`);
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
  snapshot(): Record<string, number> {
    return Object.fromEntries(this.c);
  }
}
