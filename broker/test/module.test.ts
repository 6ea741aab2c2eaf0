import assert from 'node:assert/strict';
import { LocalBus, LocalRegistry } from '../../cluster/local.ts';
import { MemoryStorage } from '../../storage/memory.ts';
import { Broker } from '../broker.ts';
import {
  defineModule,
  LoadedModule,
  orderModules,
  resolveOptions,
  type ModuleDefinition,
} from '../module.ts';

const withOptions = defineModule({
  name: 'demo',
  description: 'a module with one option of each type',
  options: {
    interval: { type: 'number', default: 30, min: 1, max: 3600, doc: 'seconds' },
    enabled: { type: 'boolean', default: true, doc: 'on or off' },
    greeting: { type: 'string', default: 'hi', doc: 'text' },
    hosts: { type: 'strings', default: ['a'], doc: 'list' },
  },
  specs: [],
  setup() {},
});

function mod(name: string, depends?: string[]): ModuleDefinition<any> {
  return { name, description: name, depends, options: {}, specs: [], setup() {} };
}

function broker(
  modules: { def: ModuleDefinition<any>; options?: Record<string, unknown> }[],
): Broker {
  return new Broker({
    domain: 'localhost',
    storage: new MemoryStorage(),
    cluster: { bus: new LocalBus('n1'), registry: new LocalRegistry() },
    modules,
  });
}

describe('modules', function () {
  describe('resolveOptions', function () {
    it('fills every default when nothing is given', () => {
      assert.deepEqual(resolveOptions(withOptions), {
        interval: 30,
        enabled: true,
        greeting: 'hi',
        hosts: ['a'],
      });
      assert.deepEqual(resolveOptions(withOptions, {}), {
        interval: 30,
        enabled: true,
        greeting: 'hi',
        hosts: ['a'],
      });
    });

    it('keeps given values and defaults the rest', () => {
      assert.deepEqual(resolveOptions(withOptions, { interval: 60, hosts: [] }), {
        interval: 60,
        enabled: true,
        greeting: 'hi',
        hosts: [],
      });
    });

    it('accepts the bounds themselves', () => {
      assert.equal(resolveOptions(withOptions, { interval: 1 }).interval, 1);
      assert.equal(resolveOptions(withOptions, { interval: 3600 }).interval, 3600);
    });

    const bad: [string, Record<string, unknown>, string][] = [
      ['unknown key', { intervall: 5 }, 'modules.demo.intervall: unknown option'],
      ['below min', { interval: 0 }, 'modules.demo.interval: must be >= 1'],
      ['above max', { interval: 3601 }, 'modules.demo.interval: must be <= 3600'],
      ['number as string', { interval: '30' }, 'modules.demo.interval: expected a number'],
      ['NaN', { interval: NaN }, 'modules.demo.interval: expected a number'],
      ['boolean as string', { enabled: 'yes' }, 'modules.demo.enabled: expected a boolean'],
      ['string as number', { greeting: 5 }, 'modules.demo.greeting: expected a string'],
      ['strings as string', { hosts: 'a' }, 'modules.demo.hosts: expected a list of strings'],
      [
        'strings with a number',
        { hosts: ['a', 1] },
        'modules.demo.hosts: expected a list of strings',
      ],
    ];
    for (const [what, given, message] of bad) {
      it(`${what} → "${message}" (the exact config path)`, () => {
        assert.throws(
          () => resolveOptions(withOptions, given),
          (err: Error) => err.message === message,
        );
      });
    }

    it('null is not silently treated as "use the default"', () => {
      // A YAML key with no value parses to null; it is a mistake, not "default".
      assert.throws(
        () => resolveOptions(withOptions, { interval: null }),
        /modules\.demo\.interval/,
      );
    });

    it('Infinity is outside any bounds', () => {
      assert.throws(
        () => resolveOptions(withOptions, { interval: Infinity }),
        /modules\.demo\.interval: must be <= 3600/,
      );
    });
  });

  describe('orderModules', function () {
    it('puts dependencies before dependants, keeping the given order otherwise', () => {
      const order = orderModules([mod('c', ['b']), mod('a'), mod('b', ['a']), mod('d')]).map(
        (d) => d.name,
      );
      assert.deepEqual(order, ['a', 'b', 'c', 'd']);
    });

    it('a shared dependency is loaded once', () => {
      const order = orderModules([mod('x', ['base']), mod('y', ['base']), mod('base')]).map(
        (d) => d.name,
      );
      assert.deepEqual(order, ['base', 'x', 'y']);
    });

    it('a missing dependency names both modules', () => {
      assert.throws(
        () => orderModules([mod('muc', ['disco'])]),
        (err: Error) => err.message === 'module muc depends on disco, which is not loaded',
      );
    });

    it('a cycle names the whole chain', () => {
      assert.throws(
        () => orderModules([mod('a', ['b']), mod('b', ['c']), mod('c', ['a'])]),
        (err: Error) => err.message === 'module dependency cycle: a -> b -> c -> a',
      );
    });

    it('a module depending on itself is a cycle', () => {
      assert.throws(() => orderModules([mod('a', ['a'])]), /module dependency cycle: a -> a/);
    });
  });

  describe('load and unload', function () {
    it('setup gets resolved options; unload removes every hook, timer and undo registered, last first', async () => {
      const undone: string[] = [];
      let ticks = 0;
      let seen: unknown;
      const def = defineModule({
        name: 'probe',
        description: 'registers things',
        options: { n: { type: 'number', default: 1, doc: 'n' } },
        specs: [],
        setup(ctx) {
          seen = ctx.options;
          ctx.onUnload(ctx.broker.hooks.on('message:host', () => true));
          ctx.every(5, () => ticks++);
          ctx.onUnload(() => void undone.push('first'));
          ctx.onUnload(async () => void undone.push('second'));
        },
      });
      const b = broker([{ def, options: { n: 7 } }]);
      await b.start();
      assert.deepEqual(seen, { n: 7 });
      assert.equal(b.hooks.has('message:host'), true);
      assert.deepEqual(
        b.modules().map((m) => m.name),
        ['probe'],
      );
      await new Promise((r) => setTimeout(r, 30));
      assert.ok(ticks > 0, 'timer ran while loaded');
      await b.stop();
      assert.equal(b.hooks.has('message:host'), false, 'hook removed');
      assert.deepEqual(undone, ['second', 'first'], 'undone in reverse order');
      const after = ticks;
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(ticks, after, 'timer cleared');
      assert.deepEqual(b.modules(), []);
    });

    it('modules load in dependency order regardless of the configured order', async () => {
      const loaded: string[] = [];
      const track = (name: string, depends?: string[]): ModuleDefinition<any> => ({
        ...mod(name, depends),
        setup: () => void loaded.push(name),
      });
      const b = broker([
        { def: track('top', ['mid']) },
        { def: track('mid', ['low']) },
        { def: track('low') },
      ]);
      await b.start();
      assert.deepEqual(loaded, ['low', 'mid', 'top']);
      await b.stop();
    });

    it('a bad option fails start with the exact path', async () => {
      const b = broker([{ def: withOptions, options: { interval: -1 } }]);
      await assert.rejects(
        b.start(),
        (err: Error) => err.message === 'modules.demo.interval: must be >= 1',
      );
    });

    it('a start that fails on a later module leaves nothing of the earlier ones registered (after stop)', async () => {
      const undone: string[] = [];
      const first: ModuleDefinition<any> = {
        ...mod('first'),
        setup(ctx) {
          ctx.onUnload(ctx.broker.hooks.on('message:host', () => true));
          ctx.onUnload(() => void undone.push('first'));
        },
      };
      const failing: ModuleDefinition<any> = {
        ...mod('failing', ['first']),
        setup() {
          throw new Error('setup failed');
        },
      };
      const b = broker([{ def: first }, { def: failing }]);
      await assert.rejects(b.start(), /setup failed/);
      await b.stop();
      assert.deepEqual(undone, ['first'], 'the loaded module was unloaded');
      assert.equal(b.hooks.has('message:host'), false);
    });

    it('LoadedModule.unload can be called twice without running anything twice', async () => {
      let n = 0;
      const lm = new LoadedModule(mod('x'));
      const ctx = lm.context(
        {} as Broker,
        {},
        { trace() {}, debug() {}, info() {}, warn() {}, error() {}, child: () => ctx.log },
      );
      ctx.onUnload(() => void n++);
      await lm.unload();
      await lm.unload();
      assert.equal(n, 1);
    });
  });
});
