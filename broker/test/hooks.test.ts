import assert from 'node:assert/strict';
import { HookBus, type HookSignatures } from '../hooks.ts';
import type { Logger } from '../logger.ts';

interface TestHooks extends HookSignatures {
  ask: [[q: string], string];
  count: [[n: number, step: number], number];
  note: [[s: string], void];
}

/** A logger that records error() calls. */
function recordingLogger(): Logger & { errors: { obj: unknown; msg?: string }[] } {
  const errors: { obj: unknown; msg?: string }[] = [];
  const noop = (): void => {};
  const log = {
    errors,
    trace: noop,
    debug: noop,
    info: noop,
    warn: noop,
    error: (obj: object | string, msg?: string) => errors.push({ obj, msg }),
    child: () => log,
  };
  return log;
}

describe('HookBus', function () {
  it('runs handlers in priority order, higher first; equal priorities in registration order', async () => {
    const bus = new HookBus<TestHooks>();
    const order: string[] = [];
    bus.on('note', () => void order.push('p0-a'));
    bus.on('note', () => void order.push('p10'), 10);
    bus.on('note', () => void order.push('p0-b'));
    bus.on('note', () => void order.push('p-5'), -5);
    bus.on('note', () => void order.push('p10-b'), 10);
    await bus.run('note', 'x');
    assert.deepEqual(order, ['p10', 'p10-b', 'p0-a', 'p0-b', 'p-5']);
  });

  it('run: the first non-undefined result stops the run and is returned', async () => {
    const bus = new HookBus<TestHooks>();
    const called: string[] = [];
    bus.on('ask', () => void called.push('first'), 3);
    bus.on('ask', (q) => (called.push('second'), `answer to ${q}`), 2);
    bus.on('ask', () => (called.push('third'), 'late'), 1);
    assert.equal(await bus.run('ask', 'q'), 'answer to q');
    assert.deepEqual(called, ['first', 'second']);
  });

  it('run: falsy results other than undefined stop too', async () => {
    const bus = new HookBus<{ flag: [[], boolean | number | string | null] }>();
    bus.on('flag', () => false);
    bus.on('flag', () => true);
    assert.equal(await bus.run('flag'), false);
  });

  it('run: awaits async handlers', async () => {
    const bus = new HookBus<TestHooks>();
    bus.on('ask', async () => undefined, 2);
    bus.on('ask', async () => new Promise<string>((r) => setTimeout(() => r('later'), 5)), 1);
    assert.equal(await bus.run('ask', 'q'), 'later');
  });

  it('run: undefined when nobody answers or nobody registered', async () => {
    const bus = new HookBus<TestHooks>();
    assert.equal(await bus.run('ask', 'q'), undefined);
    bus.on('ask', () => undefined);
    assert.equal(await bus.run('ask', 'q'), undefined);
  });

  it('run: a throwing handler (sync or async) is logged and skipped', async () => {
    const log = recordingLogger();
    const bus = new HookBus<TestHooks>(log);
    bus.on(
      'ask',
      () => {
        throw new Error('boom');
      },
      3,
    );
    bus.on(
      'ask',
      async () => {
        throw new Error('async boom');
      },
      2,
    );
    bus.on('ask', () => 'survivor', 1);
    assert.equal(await bus.run('ask', 'q'), 'survivor');
    assert.equal(log.errors.length, 2);
    assert.match(String((log.errors[0].obj as { err: Error }).err.message), /boom/);
    assert.equal((log.errors[0].obj as { hook: string }).hook, 'ask');
  });

  it('request: a throwing handler is rethrown to the caller (for internal-server-error)', async () => {
    const bus = new HookBus<TestHooks>(recordingLogger());
    const later: string[] = [];
    bus.on(
      'ask',
      () => {
        throw new Error('boom');
      },
      2,
    );
    bus.on('ask', () => (later.push('ran'), 'x'), 1);
    await assert.rejects(bus.request('ask', 'q'), /boom/);
    assert.deepEqual(later, [], 'handlers after the throwing one do not run');
  });

  it('request: otherwise like run', async () => {
    const bus = new HookBus<TestHooks>();
    bus.on('ask', () => undefined, 2);
    bus.on('ask', (q) => `r:${q}`, 1);
    assert.equal(await bus.request('ask', 'q'), 'r:q');
    assert.equal(await new HookBus<TestHooks>().request('ask', 'q'), undefined);
  });

  it('fold: threads the value through every handler; undefined keeps it; other arguments pass unchanged', async () => {
    const bus = new HookBus<TestHooks>();
    const seen: [number, number][] = [];
    bus.on('count', (n, step) => (seen.push([n, step]), n + step), 2);
    bus.on('count', (n, step) => void seen.push([n, step]), 1);
    bus.on('count', (n, step) => (seen.push([n, step]), n * 10), 0);
    assert.equal(await bus.fold('count', 1, 2), 30);
    assert.deepEqual(seen, [
      [1, 2],
      [3, 2],
      [3, 2],
    ]);
  });

  it('fold: with no handlers returns the initial value', async () => {
    assert.equal(await new HookBus<TestHooks>().fold('count', 7, 1), 7);
  });

  it('fold: a throwing handler is logged and skipped; the value continues from before it', async () => {
    const log = recordingLogger();
    const bus = new HookBus<TestHooks>(log);
    bus.on('count', (n) => n + 1, 3);
    bus.on(
      'count',
      () => {
        throw new Error('boom');
      },
      2,
    );
    bus.on('count', async (n) => n + 100, 1);
    assert.equal(await bus.fold('count', 0, 0), 101);
    assert.equal(log.errors.length, 1);
  });

  it('fold: a null result replaces the value (it is not undefined)', async () => {
    const bus = new HookBus<{ f: [[v: string | null], string | null] }>();
    const seen: (string | null)[] = [];
    bus.on('f', () => null, 2);
    bus.on('f', (v) => void seen.push(v), 1);
    assert.equal(await bus.fold('f', 'x'), null);
    assert.deepEqual(seen, [null]);
  });

  it('emit: calls every handler synchronously; sync and async failures are logged, not thrown', async () => {
    const log = recordingLogger();
    const bus = new HookBus<TestHooks>(log);
    const calls: string[] = [];
    bus.on('note', (s) => void calls.push(`a:${s}`), 2);
    bus.on(
      'note',
      () => {
        throw new Error('sync');
      },
      1,
    );
    bus.on(
      'note',
      async () => {
        throw new Error('async');
      },
      0,
    );
    bus.on('note', (s) => void calls.push(`b:${s}`), -1);
    bus.emit('note', 'hi');
    assert.deepEqual(calls, ['a:hi', 'b:hi'], 'all called before emit returns');
    await new Promise((r) => setImmediate(r));
    assert.equal(log.errors.length, 2);
  });

  it('on returns an unsubscribe function; calling it twice is harmless; has() follows', async () => {
    const bus = new HookBus<TestHooks>();
    assert.equal(bus.has('ask'), false);
    const off = bus.on('ask', () => 'a', 2);
    bus.on('ask', () => 'b', 1);
    assert.equal(bus.has('ask'), true);
    assert.equal(await bus.run('ask', 'q'), 'a');
    off();
    off();
    assert.equal(await bus.run('ask', 'q'), 'b');
  });

  it('unsubscribing removes only that registration, even when the same function is registered twice', async () => {
    const bus = new HookBus<TestHooks>();
    let n = 0;
    const h = (): void => void n++;
    const off1 = bus.on('note', h);
    bus.on('note', h);
    off1();
    await bus.run('note', 'x');
    assert.equal(n, 1);
  });

  it('a handler that unsubscribes itself during a run does not make the run skip the next handler', async () => {
    const bus = new HookBus<TestHooks>();
    const calls: string[] = [];
    const off: () => void = bus.on(
      'note',
      (): undefined => {
        calls.push('once');
        off();
      },
      2,
    );
    bus.on('note', () => void calls.push('next'), 1);
    await bus.run('note', 'x');
    await bus.run('note', 'x');
    assert.deepEqual(calls, ['once', 'next', 'next']);
  });

  it('a handler registered during a run is not called in that run', async () => {
    const bus = new HookBus<TestHooks>();
    const calls: string[] = [];
    bus.on('note', () => {
      calls.push('first');
      bus.on('note', () => void calls.push('added'), -1);
    });
    await bus.run('note', 'x');
    assert.deepEqual(calls, ['first']);
  });
});
