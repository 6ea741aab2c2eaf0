/**
 * The contract every cluster backend passes (docs/architecture.md): what the
 * router and the session manager rely on, seen from one node. Run by
 * local.test.ts (in-process) and redis.test.ts (a real redis-server).
 */
import assert from 'node:assert/strict';
import type { BusMessage, Cluster, SessionEntry } from '../types.ts';

export function clusterContract(
  name: string,
  make: () => Promise<Cluster>,
  dispose: (c: Cluster) => Promise<void>,
): void {
  describe(`cluster contract: ${name}`, function () {
    this.timeout(20_000);
    let c: Cluster;
    const entry = (
      user: string,
      resource: string,
      sessionId: string,
      node = c.bus.nodeId,
    ): SessionEntry => ({
      user,
      resource,
      node,
      sessionId,
      protocol: 'xmpp',
      priority: 0,
      available: true,
    });

    beforeEach(async () => {
      c = await make();
      await c.bus.start();
    });
    afterEach(async () => {
      await c.bus.stop();
      await dispose(c);
    });

    it('send to this node and broadcast both reach its handlers, asynchronously, payload intact', async () => {
      const got: BusMessage[] = [];
      c.bus.onMessage((m) => got.push(m));
      const sent = [
        c.bus.send(c.bus.nodeId, 'x', { a: [1, 'two'] }),
        c.bus.broadcast('y', { b: true }),
      ];
      assert.equal(got.length, 0, 'not re-entrant: handlers run after the caller goes on');
      await Promise.all(sent);
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(
        got.map((m) => [m.from, m.type, m.payload]),
        [
          [c.bus.nodeId, 'x', { a: [1, 'two'] }],
          [c.bus.nodeId, 'y', { b: true }],
        ],
      );
    });

    it('claim: the first asker gets it, others not until it expires; keys are independent', async () => {
      const k = `t-${Math.random().toString(36).slice(2)}`;
      assert.equal(await c.bus.claim(k, 300), true);
      assert.equal(await c.bus.claim(k, 300), false);
      assert.equal(await c.bus.claim(`${k}-other`, 300), true);
      await new Promise((r) => setTimeout(r, 350));
      assert.equal(await c.bus.claim(k, 300), true, 'free again once expired');
    });

    it('this node is a member once started', async () => {
      assert.ok((await c.bus.members()).includes(c.bus.nodeId));
    });

    it('registry: put, lookup (and lookupNow when offered), replace by resource, remove only with the right session id', async () => {
      await c.registry.put(entry('a@x', 'r1', 's1'));
      await c.registry.put(entry('a@x', 'r2', 's2'));
      assert.deepEqual((await c.registry.lookup('a@x')).map((e) => e.resource).sort(), [
        'r1',
        'r2',
      ]);
      const now = c.registry.lookupNow?.('a@x');
      if (now) assert.deepEqual(now.map((e) => e.resource).sort(), ['r1', 'r2']);
      await c.registry.put({ ...entry('a@x', 'r1', 's3'), priority: 5 });
      assert.deepEqual(
        (await c.registry.lookup('a@x')).find((e) => e.resource === 'r1')?.priority,
        5,
      );
      await c.registry.remove('a@x', 'r1', 's1'); // an older session of the resource: no effect
      assert.equal((await c.registry.lookup('a@x')).length, 2);
      await c.registry.remove('a@x', 'r1', 's3');
      assert.deepEqual(
        (await c.registry.lookup('a@x')).map((e) => e.resource),
        ['r2'],
      );
      assert.deepEqual(await c.registry.lookup('nobody@x'), []);
    });

    it("registry: byNode lists a node's sessions and purgeNode removes them all, counting them", async () => {
      await c.registry.put(entry('p@x', 'r', 's1', 'gone'));
      await c.registry.put(entry('q@x', 'r', 's2', 'gone'));
      await c.registry.put(entry('p@x', 'mine', 's3'));
      assert.deepEqual((await c.registry.byNode('gone')).map((e) => e.user).sort(), ['p@x', 'q@x']);
      assert.equal(await c.registry.purgeNode('gone'), 2);
      assert.deepEqual(await c.registry.byNode('gone'), []);
      assert.deepEqual(
        (await c.registry.lookup('p@x')).map((e) => e.resource),
        ['mine'],
      );
    });
  });
}
