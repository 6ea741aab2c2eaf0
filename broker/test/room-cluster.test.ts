/**
 * Room homes (broker/room-home.ts): rendezvous hashing over the live
 * nodes. Every node that sees the same nodes picks the same home; a node
 * going away moves only its own rooms, and they spread over the others.
 */
import assert from 'node:assert/strict';
import { rendezvous } from '../room-home.ts';

describe('room homes (rendezvous hashing)', () => {
  const rooms = Array.from({ length: 3000 }, (_, i) => `room-${i}`);

  it('the same live nodes in any order give the same home; none: no home', () => {
    for (const r of rooms.slice(0, 200))
      assert.equal(rendezvous(r, ['n1', 'n2', 'n3']), rendezvous(r, ['n3', 'n1', 'n2']));
    assert.equal(rendezvous('x', []), undefined);
  });

  it('rooms spread over the nodes; a node gone moves only its rooms, to every other node', () => {
    const three = new Map(rooms.map((r) => [r, rendezvous(r, ['n1', 'n2', 'n3'])!]));
    for (const n of ['n1', 'n2', 'n3']) {
      const count = [...three.values()].filter((h) => h === n).length;
      assert.ok(count > 800 && count < 1200, `${n} is home of ${count} of 3000`);
    }
    const moved = new Map<string, number>();
    for (const r of rooms) {
      const h = rendezvous(r, ['n1', 'n3'])!;
      if (three.get(r) !== 'n2') assert.equal(h, three.get(r), `${r} stays where it was`);
      else moved.set(h, (moved.get(h) ?? 0) + 1);
    }
    assert.ok(
      (moved.get('n1') ?? 0) > 300 && (moved.get('n3') ?? 0) > 300,
      JSON.stringify([...moved]),
    );
  });
});
