import assert from 'node:assert/strict';
import { MAX_PIPELINE, OriginPipeline } from '../pipeline.ts';

/** A promise with its resolver. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const turn = () => new Promise((r) => setImmediate(r));

describe("OriginPipeline: one origin's steps in order, messages pipelined", () => {
  it('a pipelined step lets the next start once admitted; `after` settles only when the previous step is done', async () => {
    const p = new OriginPipeline();
    const gate = deferred();
    const log: string[] = [];
    const first = p.pipelined(async (ord) => {
      log.push('1 start');
      ord.admit();
      await gate.promise;
      log.push('1 done');
    });
    const second = p.pipelined(async (ord) => {
      log.push('2 start');
      ord.admit();
      await ord.after;
      log.push('2 after');
    });
    await turn();
    assert.deepEqual(
      log,
      ['1 start', '2 start'],
      'the second started while the first is still running',
    );
    gate.resolve();
    await Promise.all([first.done, second.done]);
    assert.deepEqual(log, ['1 start', '2 start', '1 done', '2 after']);
  });

  it('a step that never admits holds the next one until it is done', async () => {
    const p = new OriginPipeline();
    const gate = deferred();
    const log: string[] = [];
    p.pipelined(async () => {
      await gate.promise;
      log.push('1 done');
    });
    const second = p.pipelined(async () => void log.push('2 start'));
    await turn();
    assert.deepEqual(log, []);
    gate.resolve();
    await second.done;
    assert.deepEqual(log, ['1 done', '2 start']);
  });

  it(`at most ${MAX_PIPELINE} admitted steps are in flight; an exclusive step waits for all of them`, async () => {
    const p = new OriginPipeline();
    const gates = Array.from({ length: MAX_PIPELINE + 3 }, () => deferred());
    let started = 0;
    const steps = gates.map((g) =>
      p.pipelined(async (ord) => {
        started++;
        ord.admit();
        await g.promise;
      }),
    );
    let exclusiveRan = false;
    const ex = p.exclusive(async () => {
      exclusiveRan = true;
    });
    for (let i = 0; i < 5; i++) await turn();
    assert.equal(started, MAX_PIPELINE, 'the bound holds the rest back');
    gates[0].resolve();
    for (let i = 0; i < 5; i++) await turn();
    assert.equal(started, MAX_PIPELINE + 1, 'one done, one more starts');
    for (const g of gates) g.resolve();
    await Promise.all(steps.map((s) => s.done));
    assert.equal(started, MAX_PIPELINE + 3);
    await ex;
    assert.ok(exclusiveRan);
    assert.equal(p.depth, 0);
  });

  it('a failed step neither wedges the order nor lets a later one overtake the steps before it', async () => {
    const p = new OriginPipeline();
    const gate = deferred();
    const log: string[] = [];
    p.pipelined(async (ord) => {
      ord.admit();
      await gate.promise;
      log.push('1 done');
    });
    const failing = p.pipelined(async () => {
      throw new Error('boom');
    });
    const third = p.pipelined(async (ord) => {
      await ord.after;
      log.push('3 after');
    });
    await assert.rejects(failing.done, /boom/);
    gate.resolve();
    await third.done;
    assert.deepEqual(
      log,
      ['1 done', '3 after'],
      'the third waited for the first although the second failed at once',
    );
  });
});

describe('OriginPipeline: memory', () => {
  it('keeps no finished step alive once the origin is idle, only its last completion', async () => {
    // In process: expose V8's gc() to a fresh context.
    const { setFlagsFromString } = await import('node:v8');
    const { runInNewContext } = await import('node:vm');
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const p = new OriginPipeline();
    const completions: WeakRef<object>[] = [];
    for (let i = 0; i < 10; i++) {
      p.pipelined(async (ord) => ord.admit());
      completions.push(new WeakRef(p.idle as object));
    }
    await p.idle;
    await turn();
    assert.equal(p.depth, 0);
    gc();
    await turn(); // WeakRef targets stay until the job that read them is over
    gc();
    const alive = completions.map((w) => w.deref() !== undefined);
    // The pipeline still holds its tail (`idle`), nothing before it.
    assert.deepEqual(alive, [...Array(9).fill(false), true]);
  });
});
