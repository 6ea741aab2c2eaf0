import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { CounterMetrics, type MetricsReport, type RecentError } from '../broker/index.ts';
import { RateSampler } from './rates.ts';
import { CountingHistogram, type HistogramSeries } from './histogram.ts';

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

/**
 * Metrics in Prometheus form (prom-client), served at /metrics; also keeps
 * the plain counters and the last errors the admin page shows. Default
 * process metrics include event-loop lag and memory.
 *
 * Counters and the connection gauge are not touched per event: the plain
 * counts of {@link CounterMetrics} are the truth, and each Prometheus metric
 * copies them in its `collect()` when /metrics is scraped, so a routed message
 * costs a few integer increments instead of prom-client label hashing.
 */
export class PromMetrics extends CounterMetrics implements MetricsReport {
  readonly registry = new Registry();
  readonly recentErrors: RecentError[] = [];
  private readonly latency: HistogramSeries;
  private readonly store: CountingHistogram;
  /** the cluster bus's figures (a clustered node only; docs/cluster.md) */
  private readonly cluster = { in: 0, out: 0, nodes: 0, up: 0 };
  private busLatency: HistogramSeries | undefined;

  constructor() {
    super();
    const registers = [this.registry];
    collectDefaultMetrics({
      register: this.registry,
      prefix: 'parley_',
      eventLoopMonitoringPrecision: 20,
    });
    /** A metric whose series are the plain counts under `prefix`, split on '.' into `labelNames`. */
    const fromCounts = (
      kind: 'counter' | 'gauge',
      name: string,
      help: string,
      prefix: string,
      labelNames: string[],
      fixed: Record<string, string> = {},
    ) => {
      const counts = (): [Record<string, string>, number][] => {
        const out: [Record<string, string>, number][] = [];
        for (const [key, value] of Object.entries(this.snapshot())) {
          if (!key.startsWith(prefix)) continue;
          const parts = key.slice(prefix.length).split('.');
          if (parts.length !== labelNames.length - Object.keys(fixed).length) continue;
          const labels: Record<string, string> = { ...fixed };
          labelNames.filter((l) => !(l in fixed)).forEach((l, i) => (labels[l] = parts[i]));
          out.push([labels, value]);
        }
        return out;
      };
      if (kind === 'gauge') {
        return new Gauge({
          name,
          help,
          labelNames,
          registers,
          collect() {
            this.reset();
            for (const [labels, v] of counts()) this.set(labels, v);
          },
        });
      }
      return new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const [labels, v] of counts()) this.inc(labels, v);
        },
      });
    };
    fromCounts('gauge', 'parley_connections', 'open client connections', 'connections.', [
      'protocol',
      'transport',
    ]);
    fromCounts('counter', 'parley_logins_total', 'authentication attempts', 'login.', [
      'protocol',
      'result',
    ]);
    fromCounts(
      'counter',
      'parley_connections_closed_total',
      'closed connections by typed reason',
      'closed.',
      ['protocol', 'reason'],
    );
    fromCounts(
      'counter',
      'parley_stanzas_total',
      'stanzas (XMPP) and packets (MQTT) read and written',
      'traffic.',
      ['protocol', 'direction'],
    );
    const messages = 'envelopes by what happened to them';
    // One metric, several count families: registered once, filled from all of them.
    new Counter({
      name: 'parley_messages_total',
      help: messages,
      labelNames: ['event', 'kind'],
      registers,
      collect: (() => {
        const snapshot = () => this.snapshot();
        return function (this: Counter) {
          this.reset();
          for (const [key, v] of Object.entries(snapshot())) {
            if (key.startsWith('routed.')) this.inc({ event: 'routed', kind: key.slice(7) }, v);
            else if (key.startsWith('delivered.'))
              this.inc({ event: 'delivered', kind: key.slice(10) }, v);
            else if (key === 'offline.queued')
              this.inc({ event: 'offline_queued', kind: 'message' }, v);
            else if (key === 'archived') this.inc({ event: 'archived', kind: 'message' }, v);
          }
        };
      })(),
    });
    fromCounts(
      'counter',
      'parley_csi_stanzas_total',
      'stanzas held for inactive clients, flushed when active, or superseded while held [XEP-0352]',
      'csi.',
      ['event'],
    );
    fromCounts('counter', 'parley_store_errors_total', 'failed storage calls', 'store.errors.', [
      'op',
    ]);
    fromCounts(
      'counter',
      'parley_errors_total',
      'errors listed on the admin page, by source',
      'errors.',
      ['source'],
    );
    // Observed per delivery and per storage call: counted in plain arrays (histogram.ts).
    this.latency = new CountingHistogram({
      name: 'parley_delivery_latency_seconds',
      help: 'from acceptance to hand-over to a local session',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }).series();
    this.store = new CountingHistogram({
      name: 'parley_store_operation_seconds',
      help: 'storage call latency',
      labelName: 'op',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
      registers,
    });
  }

  /**
   * What the cluster bus reports (`ClusterBus.observe`): the `parley_cluster_*`
   * series, registered on the first call, so a single node shows none.
   */
  clusterObserver(): {
    message(direction: 'in' | 'out'): void;
    latency(ms: number): void;
    nodes(count: number): void;
    connected(up: boolean): void;
  } {
    const c = this.cluster;
    if (!this.busLatency) {
      const registers = [this.registry];
      new Counter({
        name: 'parley_cluster_bus_messages_total',
        help: 'bus messages sent to and received from other nodes',
        labelNames: ['direction'],
        registers,
        collect(this: Counter) {
          this.reset();
          this.inc({ direction: 'in' }, c.in);
          this.inc({ direction: 'out' }, c.out);
        },
      });
      new Gauge({
        name: 'parley_cluster_nodes',
        help: 'live nodes seen at the last heartbeat, this one included',
        registers,
        collect(this: Gauge) {
          this.set(c.nodes);
        },
      });
      new Gauge({
        name: 'parley_cluster_redis_up',
        help: "1 while the cluster's Redis connections are up",
        registers,
        collect(this: Gauge) {
          this.set(c.up);
        },
      });
      this.busLatency = new CountingHistogram({
        name: 'parley_cluster_bus_latency_seconds',
        help: 'from publish on one node to receipt on this one (node clocks must agree)',
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
        registers,
      }).series();
    }
    const latency = this.busLatency;
    return {
      message: (d) => void c[d]++,
      latency: (ms) => latency.observe(Math.max(0, ms) / 1000),
      nodes: (n) => void (c.nodes = n),
      connected: (up) => void (c.up = up ? 1 : 0),
    };
  }

  override login(protocol: string, ok: boolean): void {
    super.login(protocol, ok);
    if (!ok) this.error(protocol, 'failed login');
  }
  override closed(protocol: string, reason: string): void {
    super.closed(protocol, reason);
    if (ABNORMAL_CLOSES.has(reason)) this.error(protocol, `connection closed: ${reason}`);
  }
  override deliveryLatency(ms: number): void {
    this.latency.observe(ms / 1000);
  }
  override storeOp(op: string, ms: number, ok: boolean): void {
    super.storeOp(op, ms, ok);
    this.store.series(op).observe(ms / 1000);
    if (!ok) this.error('store', `${op} failed`);
  }
  override error(source: string, text: string): void {
    super.error(source, text);
    this.recentErrors.push({ time: Date.now(), source, text: text.slice(0, 300) });
    if (this.recentErrors.length > 50) this.recentErrors.shift();
  }

  /** Open connections by protocol. */
  connectionsByProtocol(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [key, v] of Object.entries(this.snapshot())) {
      if (!key.startsWith('connections.')) continue;
      const protocol = key.split('.')[1];
      out[protocol] = (out[protocol] ?? 0) + v;
    }
    return out;
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  async connectionsByTransport(): Promise<
    { protocol: string; transport: string; count: number }[]
  > {
    const gauge = await this.registry.getSingleMetric('parley_connections')?.get();
    return (gauge?.values ?? [])
      .filter((v) => v.value > 0)
      .map((v) => ({
        protocol: String(v.labels.protocol),
        transport: String(v.labels.transport),
        count: v.value,
      }));
  }

  /** the rates read from the registry /metrics renders: the page and a scraper never disagree */
  rateSource(): RateSampler {
    return new RateSampler(this.registry);
  }
}
