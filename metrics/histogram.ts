import type { Metric, Registry } from 'prom-client';

/** One labelled series of a {@link CountingHistogram}. */
export class HistogramSeries {
  readonly #bounds: readonly number[];
  /** Per bucket (not cumulative); the last is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

/**
 * A Prometheus histogram counted in plain arrays and registered on a
 * prom-client registry as a custom metric (an object with `get()`).
 *
 * prom-client's own `Histogram.observe` builds a label hash, validates the
 * labels and indexes its buckets by the bound's decimal text on every call;
 * these histograms are observed once per delivered message and per storage
 * call, where that was a few per cent of a chat's CPU time. Here an observation
 * is a short loop over the bounds and three additions, and the exposition
 * text is made only when /metrics is scraped.
 */
export class CountingHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  readonly #bounds: readonly number[];
  readonly #label: string | undefined;
  readonly #series = new Map<string, HistogramSeries>();

  constructor(opts: {
    name: string;
    help: string;
    buckets: readonly number[];
    labelName?: string;
    registers: Registry[];
  }) {
    this.name = opts.name;
    this.help = opts.help;
    this.#bounds = [...opts.buckets].sort((a, b) => a - b);
    this.#label = opts.labelName;
    for (const r of opts.registers) r.registerMetric(this as unknown as Metric);
  }

  /** The series for one value of the label (or the only series); keep it to observe without a lookup. */
  series(labelValue = ''): HistogramSeries {
    let s = this.#series.get(labelValue);
    if (!s) this.#series.set(labelValue, (s = new HistogramSeries(this.#bounds)));
    return s;
  }

  /** The exposition, in prom-client's form: cumulative `_bucket` samples by `le`, then `_sum` and `_count`. */
  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: Sample[];
  }> {
    const values: Sample[] = [];
    for (const [labelValue, s] of this.#series) {
      const labels: Record<string, string | number> = this.#label
        ? { [this.#label]: labelValue }
        : {};
      let acc = 0;
      for (let i = 0; i <= this.#bounds.length; i++) {
        acc += s.counts[i];
        values.push({
          value: acc,
          labels: { ...labels, le: i < this.#bounds.length ? this.#bounds[i] : '+Inf' },
          metricName: `${this.name}_bucket`,
        });
      }
      values.push({ value: s.sum, labels, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels, metricName: `${this.name}_count` });
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }

  /** Registry.resetMetrics(): zero every series (kept, so held references stay valid). */
  reset(): void {
    for (const s of this.#series.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
