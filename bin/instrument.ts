import type { Metrics } from '../broker/index.ts';
import type { Storage } from '../storage/types.ts';

/** Time every call of an object's async methods into metrics.storeOp(`${prefix}.${method}`). */
function timed<T extends object>(target: T, prefix: string, metrics: Metrics): T {
  // One wrapper per method, made on first use: a store call is on the path of every message.
  const wrappers = new Map<PropertyKey, (...args: unknown[]) => unknown>();
  const wrap = (v: (...args: unknown[]) => unknown, op: string) =>
    function (this: unknown, ...args: unknown[]): unknown {
      const start = performance.now();
      let r: unknown;
      try {
        r = v.apply(target, args);
      } catch (err) {
        metrics.storeOp(op, performance.now() - start, false);
        throw err;
      }
      if (!(r instanceof Promise)) return r;
      return r.then(
        (x) => (metrics.storeOp(op, performance.now() - start, true), x),
        (err) => {
          metrics.storeOp(op, performance.now() - start, false);
          metrics.error('store', `${op}: ${(err as Error).message}`);
          throw err;
        },
      );
    };
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const v = Reflect.get(obj, prop, receiver);
      if (typeof v !== 'function') return v;
      let w = wrappers.get(prop);
      if (!w) wrappers.set(prop, (w = wrap(v as (...args: unknown[]) => unknown, `${prefix}.${String(prop)}`)));
      return w;
    },
  });
}

/** A Storage whose stores report the latency of every operation (for /metrics). */
export function instrumentStorage(storage: Storage, metrics: Metrics): Storage {
  return new Proxy(storage, {
    get(obj, prop, receiver) {
      const v = Reflect.get(obj, prop, receiver);
      if (prop === 'kv' || prop === 'archive' || prop === 'queue') {
        return (name: string) => timed((v as (n: string) => object).call(obj, name), `${String(prop)}.${name}`, metrics);
      }
      return typeof v === 'function' ? v.bind(obj) : v;
    },
  });
}
