import assert from 'node:assert/strict';
import { LocalBus, LocalRegistry } from '../../../cluster/local.ts';
import { MemoryStorage } from '../../../storage/memory.ts';
import { Broker, defineModule } from '../../../broker/index.ts';
import { iqRegistry } from '../iq-registry.ts';
import { nonzaRegistry } from '../features.ts';
import { acknowledged } from '../modules/stream-management.ts';
import { FilterChain } from '../session-state.ts';

const claimPing = (name: string) =>
  defineModule({
    name,
    description: name,
    options: {},
    specs: [],
    setup(ctx) {
      ctx.onUnload(
        iqRegistry(ctx.broker).register(
          ctx.name,
          { type: 'get', ns: 'urn:xmpp:ping', name: 'ping' },
          () => 'empty',
        ),
      );
    },
  });

function broker(defs: ReturnType<typeof claimPing>[]): Broker {
  return new Broker({
    domain: 'localhost',
    storage: new MemoryStorage(),
    cluster: { bus: new LocalBus('n1'), registry: new LocalRegistry() },
    modules: defs.map((def) => ({ def })),
  });
}

describe('XMPP seams', function () {
  it('two modules claiming one IQ key: the start fails naming both, and nothing stays registered', async () => {
    const b = broker([claimPing('first'), claimPing('second')]);
    await assert.rejects(b.start(), /claimed by module 'first' and by module 'second'/);
    assert.deepEqual(iqRegistry(b).owners(), [], 'the first module was unloaded again');
  });

  it('unloading a module frees its key for another', async () => {
    const b = broker([claimPing('first')]);
    await b.start();
    assert.deepEqual(iqRegistry(b).owners(), [{ key: 'get {urn:xmpp:ping}ping', owner: 'first' }]);
    await b.stop();
    assert.deepEqual(iqRegistry(b).owners(), []);
  });

  it('a second claim on a nonza fails too', () => {
    const r = nonzaRegistry(broker([]));
    r.register('a', { ns: 'urn:x', name: 'r', phases: ['bound'] }, () => {});
    assert.throws(
      () => r.register('b', { ns: 'urn:x', name: 'r', phases: ['bound'] }, () => {}),
      /claimed by module 'a' and by module 'b'/,
    );
  });

  it('stream management h arithmetic wraps at 2^32 [XEP-0198 4]', () => {
    assert.equal(acknowledged(5, 2), 3);
    assert.equal(acknowledged(1, 2 ** 32 - 2), 3, 'h wrapped past 2^32 - 1');
    assert.equal(acknowledged(0, 0), 0);
  });

  it('filters run by priority; one that holds an item releases it through the filters after it', () => {
    const chain = new FilterChain<string>();
    const seen: string[] = [];
    const hold = (s: string) => (s.startsWith('p') ? null : s);
    chain.add((s) => (seen.push(`count ${s}`), s), -100);
    chain.add(hold, 100);
    assert.equal(chain.run('m1'), 'm1');
    assert.equal(chain.run('p1'), null);
    assert.equal(chain.runAfter(hold, 'p1'), 'p1');
    assert.deepEqual(seen, ['count m1', 'count p1']);
  });
});
