/**
 * The messages a node keeps of what it handed to other nodes, to queue them
 * again when one dies (docs/cluster.md, "Node loss"): bounded by age and by
 * count per node, taken once.
 */
import assert from 'node:assert/strict';
import { Address } from '../address.ts';
import type { Envelope } from '../envelope.ts';
import { HandedOver } from '../handed-over.ts';

const env = (id: string): Envelope => ({
  kind: 'message',
  type: 'chat',
  id,
  from: Address.parse('a@x/r'),
  to: Address.parse('b@x/r'),
  body: id,
  extensions: [],
});
const ids = (list: { env: Envelope }[]) => list.map((h) => h.env.id);

describe('HandedOver (what a dead node may have held)', () => {
  it('keeps per node what is younger than the window, at most maxPerNode, oldest dropped first; take() forgets it', () => {
    const h = new HandedOver(1000, 3);
    for (let i = 1; i <= 5; i++)
      h.add('n2', { env: env(`m${i}`), resources: ['r'], all: ['r'], at: 10_000 + i });
    h.add('n3', { env: env('other'), resources: ['r'], all: ['r'], at: 10_001 });
    assert.deepEqual(ids(h.take('n2', 10_010)), ['m3', 'm4', 'm5']);
    assert.deepEqual(h.take('n2', 10_010), [], 'taken once');
    assert.deepEqual(ids(h.take('n3', 10_010)), ['other'], 'per node');
  });
  it('drops what is older than the window, when adding and when taking', () => {
    const h = new HandedOver(100, 1000);
    h.add('n2', { env: env('old'), resources: ['r'], all: ['r'], at: 1_000 });
    h.add('n2', { env: env('mid'), resources: ['r'], all: ['r'], at: 1_150 });
    h.add('n2', { env: env('new'), resources: ['r'], all: ['r'], at: 1_200 });
    assert.deepEqual(ids(h.take('n2', 1_260)), ['new']);
  });
  it('after 100,000 adds only the newest maxPerNode are there, in order', () => {
    const h = new HandedOver(60_000, 50);
    for (let i = 0; i < 100_000; i++)
      h.add('n2', { env: env(`m${i}`), resources: [], all: [], at: i });
    const left = h.take('n2', 100_000);
    assert.equal(left.length, 50);
    assert.equal(left[0].env.id, 'm99950');
  });
  it('off when the window or the count is 0', () => {
    assert.equal(new HandedOver(0, 10).enabled, false);
    assert.equal(new HandedOver(10, 0).enabled, false);
    assert.equal(new HandedOver(10, 10).enabled, true);
  });
});
