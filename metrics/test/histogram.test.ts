import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { CountingHistogram } from '../histogram.ts';

/** The exposition lines of one family, without HELP/TYPE. */
async function lines(registry: Registry): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((l) => l && !l.startsWith('#'));
}

describe('CountingHistogram (metrics/histogram.ts)', function () {
  it('exposes cumulative buckets by le after the label (a value on a bound counts in it), +Inf, _sum and _count, per label value', async function () {
    const registry = new Registry();
    const h = new CountingHistogram({
      name: 'h_seconds',
      help: 'test',
      buckets: [0.5, 0.1, 1],
      labelName: 'op',
      registers: [registry],
    });
    const a = h.series('kv.get');
    for (const v of [0.05, 0.1, 0.3, 1, 7]) a.observe(v);
    h.series('kv.put').observe(0.2);
    const text = await registry.metrics();
    assert.match(text, /^# HELP h_seconds test\n# TYPE h_seconds histogram\n/);
    assert.deepEqual(await lines(registry), [
      'h_seconds_bucket{op="kv.get",le="0.1"} 2',
      'h_seconds_bucket{op="kv.get",le="0.5"} 3',
      'h_seconds_bucket{op="kv.get",le="1"} 4',
      'h_seconds_bucket{op="kv.get",le="+Inf"} 5',
      'h_seconds_sum{op="kv.get"} 8.45',
      'h_seconds_count{op="kv.get"} 5',
      'h_seconds_bucket{op="kv.put",le="0.1"} 0',
      'h_seconds_bucket{op="kv.put",le="0.5"} 1',
      'h_seconds_bucket{op="kv.put",le="1"} 1',
      'h_seconds_bucket{op="kv.put",le="+Inf"} 1',
      'h_seconds_sum{op="kv.put"} 0.2',
      'h_seconds_count{op="kv.put"} 1',
    ]);
  });

  it('without a label has one series from the start; resetMetrics zeroes it and a held series keeps counting', async function () {
    const registry = new Registry();
    const s = new CountingHistogram({
      name: 'd_seconds',
      help: 'test',
      buckets: [1],
      registers: [registry],
    }).series();
    assert.deepEqual(await lines(registry), [
      'd_seconds_bucket{le="1"} 0',
      'd_seconds_bucket{le="+Inf"} 0',
      'd_seconds_sum 0',
      'd_seconds_count 0',
    ]);
    s.observe(2);
    registry.resetMetrics();
    s.observe(0.5);
    assert.deepEqual(await lines(registry), [
      'd_seconds_bucket{le="1"} 1',
      'd_seconds_bucket{le="+Inf"} 1',
      'd_seconds_sum 0.5',
      'd_seconds_count 1',
    ]);
  });
});
