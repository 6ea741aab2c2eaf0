import type { Metrics } from '../broker/index.ts';
import type { Storage } from '../storage/types.ts';

/** Function-valued properties along an object's prototype chain (not Object.prototype's). */
function methodNames(target: object): string[] {
  const names = new Set<string>();
  for (
    let o: object | null = target;
    o && o !== Object.prototype;
    o = Object.getPrototypeOf(o) as object | null
  ) {
    for (const name of Object.getOwnPropertyNames(o)) {
      if (name === 'constructor') continue;
      const d = Object.getOwnPropertyDescriptor(o, name);
      if (d && typeof d.value === 'function') names.add(name);
    }
  }
  return [...names];
}

/**
 * Time every call of a store's methods into metrics.storeOp(`${prefix}.${method}`).
 * A plain object with one wrapper per method, made once: a store call is on
 * the path of every message, and a Proxy's get trap on every call cost more
 * than the timing itself.
 */
function timed<T extends object>(target: T, prefix: string, metrics: Metrics): T {
  const wrapped = Object.create(target) as Record<string, unknown>;
  for (const name of methodNames(target)) {
    const fn = (target as Record<string, (...args: unknown[]) => unknown>)[name];
    const op = `${prefix}.${name}`;
    wrapped[name] = function (...args: unknown[]): unknown {
      const start = performance.now();
      let r: unknown;
      try {
        r = fn.apply(target, args);
      } catch (err) {
        metrics.storeOp(op, performance.now() - start, false);
        throw err;
      }
      if (!(r instanceof Promise)) return r;
      // Observed beside the caller, not in its chain: the caller gets the
      // store's own promise (no extra promise and turn per store call), and
      // this reaction, registered first, still runs before the caller's.
      r.then(
        () => metrics.storeOp(op, performance.now() - start, true),
        (err: unknown) => {
          metrics.storeOp(op, performance.now() - start, false);
          metrics.error('store', `${op}: ${(err as Error).message}`);
        },
      );
      return r;
    };
  }
  return wrapped as T;
}

/** A Storage whose stores report the latency of every operation (for /metrics). */
export function instrumentStorage(storage: Storage, metrics: Metrics): Storage {
  return new Proxy(storage, {
    get(obj, prop, receiver) {
      const v = Reflect.get(obj, prop, receiver);
      if (prop === 'kv' || prop === 'archive' || prop === 'queue') {
        return (name: string) =>
          timed((v as (n: string) => object).call(obj, name), `${String(prop)}.${name}`, metrics);
      }
      return typeof v === 'function' ? v.bind(obj) : v;
    },
  });
}
