import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { CounterMetrics, type Envelope } from '../../broker/index.ts';

/**
 * Close reasons that are a problem worth an operator's look (bad input,
 * failed or abandoned logins, internal errors); the others are ordinary ends.
 */
const ABNORMAL_CLOSES = new Set([
  'auth-timeout',
  'auth-failed',
  'not-well-formed',
  'restricted-xml',
  'policy-violation',
  'invalid-namespace',
  'bad-format',
  'bad-namespace-prefix',
  'host-unknown',
  'unsupported-version',
  'invalid-from',
  'unsupported-stanza-type',
  'not-authorized',
  'connection-timeout',
  'protocol-error',
  'internal-error',
]);

/** One recent error, for the admin page. */
export interface RecentError {
  time: number;
  source: string;
  text: string;
}

/**
 * Metrics in Prometheus form (prom-client), served at /metrics; also keeps
 * the plain counters and the last errors the admin page shows. Default
 * process metrics include event-loop lag and memory.
 */
export class PromMetrics extends CounterMetrics {
  readonly registry = new Registry();
  readonly recentErrors: RecentError[] = [];
  private readonly connections: Gauge;
  private readonly logins: Counter;
  private readonly closes: Counter;
  private readonly trafficC: Counter;
  private readonly messages: Counter;
  private readonly latency: Histogram;
  private readonly store: Histogram;
  private readonly storeErrors: Counter;
  private readonly errors: Counter;
  private readonly conns = new Map<string, number>();
  private readonly trafficChildren = new Map<string, { inc(): void }>();

  constructor() {
    super();
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'parley_', eventLoopMonitoringPrecision: 20 });
    this.connections = new Gauge({ name: 'parley_connections', help: 'open client connections', labelNames: ['protocol', 'transport'], registers });
    this.logins = new Counter({ name: 'parley_logins_total', help: 'authentication attempts', labelNames: ['protocol', 'result'], registers });
    this.closes = new Counter({ name: 'parley_connections_closed_total', help: 'closed connections by typed reason', labelNames: ['protocol', 'reason'], registers });
    this.trafficC = new Counter({ name: 'parley_stanzas_total', help: 'stanzas (XMPP) and packets (MQTT) read and written', labelNames: ['protocol', 'direction'], registers });
    this.messages = new Counter({ name: 'parley_messages_total', help: 'envelopes by what happened to them', labelNames: ['event', 'kind'], registers });
    this.latency = new Histogram({
      name: 'parley_delivery_latency_seconds',
      help: 'from acceptance to hand-over to a local session',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.store = new Histogram({
      name: 'parley_store_operation_seconds',
      help: 'storage call latency',
      labelNames: ['op'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
      registers,
    });
    this.storeErrors = new Counter({ name: 'parley_store_errors_total', help: 'failed storage calls', labelNames: ['op'], registers });
    this.errors = new Counter({ name: 'parley_errors_total', help: 'errors listed on the admin page, by source', labelNames: ['source'], registers });
  }

  override routed(kind: string): void {
    super.routed(kind);
    this.messages.inc({ event: 'routed', kind });
  }
  override delivered(env: Envelope): void {
    super.delivered(env);
    this.messages.inc({ event: 'delivered', kind: env.kind });
  }
  override offlineQueued(): void {
    super.offlineQueued();
    this.messages.inc({ event: 'offline_queued', kind: 'message' });
  }
  override archived(): void {
    super.archived();
    this.messages.inc({ event: 'archived', kind: 'message' });
  }
  override login(protocol: string, ok: boolean): void {
    super.login(protocol, ok);
    this.logins.inc({ protocol, result: ok ? 'ok' : 'failed' });
    if (!ok) this.error(protocol, 'failed login');
  }
  override connection(protocol: string, transport: string, delta: 1 | -1): void {
    super.connection(protocol, transport, delta);
    this.connections.inc({ protocol, transport }, delta);
    const key = protocol;
    this.conns.set(key, (this.conns.get(key) ?? 0) + delta);
  }
  override closed(protocol: string, reason: string): void {
    super.closed(protocol, reason);
    this.closes.inc({ protocol, reason });
    if (ABNORMAL_CLOSES.has(reason)) this.error(protocol, `connection closed: ${reason}`);
  }
  override traffic(protocol: string, direction: 'in' | 'out'): void {
    super.traffic(protocol, direction);
    // Called per stanza/packet: keep the labelled child instead of hashing labels each time.
    const key = `${protocol}\0${direction}`;
    let child = this.trafficChildren.get(key);
    if (!child) this.trafficChildren.set(key, (child = this.trafficC.labels(protocol, direction)));
    child.inc();
  }
  override deliveryLatency(ms: number): void {
    this.latency.observe(ms / 1000);
  }
  override storeOp(op: string, ms: number, ok: boolean): void {
    super.storeOp(op, ms, ok);
    this.store.observe({ op }, ms / 1000);
    if (!ok) {
      this.storeErrors.inc({ op });
      this.error('store', `${op} failed`);
    }
  }
  override error(source: string, text: string): void {
    super.error(source, text);
    this.errors.inc({ source });
    this.recentErrors.push({ time: Date.now(), source, text: text.slice(0, 300) });
    if (this.recentErrors.length > 50) this.recentErrors.shift();
  }

  /** Open connections by protocol. */
  connectionsByProtocol(): Record<string, number> {
    return Object.fromEntries(this.conns);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
