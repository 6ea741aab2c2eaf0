import assert from 'node:assert/strict';
import { Counter, Registry } from 'prom-client';
import type { Envelope } from '../../broker/envelope.ts';
import { PromMetrics } from '../prometheus.ts';
import { RateSampler } from '../rates.ts';

describe('RateSampler (admin page rates)', () => {
  const msg = { kind: 'message' } as Envelope;

  it('turns the /metrics counters into per-second changes; the first reading is the baseline', async () => {
    const m = new PromMetrics();
    const s = new RateSampler(m.registry, 10);
    m.routed('message');
    await s.sample(1000);
    assert.deepEqual(s.samples(), []);
    m.routed('message');
    m.routed('message');
    m.routed('presence'); // not a message
    m.delivered(msg);
    m.traffic('xmpp', 'in');
    m.traffic('mqtt', 'in');
    m.traffic('xmpp', 'out');
    m.connection('xmpp', 'ws', 1);
    m.connection('mqtt', 'tcp', 1);
    await s.sample(2000);
    assert.deepEqual(s.samples(), [
      {
        t: 2000,
        messages: 2,
        stanzasIn: 2,
        stanzasOut: 1,
        connections: 2,
        byProtocol: {
          xmpp: { in: 1, out: 1, connections: 1 },
          mqtt: { in: 1, out: 0, connections: 1 },
        },
      },
    ]);
    m.connection('mqtt', 'tcp', -1);
    await s.sample(3000);
    assert.deepEqual(s.samples()[1], {
      t: 3000,
      messages: 0,
      stanzasIn: 0,
      stanzasOut: 0,
      connections: 1,
      byProtocol: {
        xmpp: { in: 0, out: 0, connections: 1 },
        mqtt: { in: 0, out: 0, connections: 0 },
      },
    });
  });

  it('keeps the last `capacity` samples, oldest first', async () => {
    const m = new PromMetrics();
    const s = new RateSampler(m.registry, 3);
    await s.sample(0);
    for (let t = 1; t <= 5; t++) {
      for (let i = 0; i < t; i++) m.routed('message');
      await s.sample(t * 1000);
    }
    assert.deepEqual(
      s.samples().map((x) => [x.t, x.messages]),
      [
        [3000, 3],
        [4000, 4],
        [5000, 5],
      ],
    );
  });

  it('never reports a negative rate when a counter restarts from zero', async () => {
    // PromMetrics fills its counters from counts that never go down; a registry
    // whose counter is reset (another exporter, a restart) is built by hand.
    const registry = new Registry();
    const messages = new Counter({
      name: 'parley_messages_total',
      help: 'h',
      labelNames: ['event', 'kind'],
      registers: [registry],
    });
    const s = new RateSampler(registry, 5);
    messages.inc({ event: 'routed', kind: 'message' }, 4);
    await s.sample(1000);
    messages.reset();
    messages.inc({ event: 'routed', kind: 'message' }, 1);
    await s.sample(2000);
    assert.equal(s.samples()[0].messages, 0);
  });

  it('start() samples on its interval until stop()', async () => {
    const m = new PromMetrics();
    const s = new RateSampler(m.registry, 5);
    s.start(20);
    await new Promise((r) => setTimeout(r, 110));
    s.stop();
    const n = s.samples().length;
    assert.ok(n >= 2, `samples: ${n}`);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(s.samples().length, n, 'stopped');
  });
});
