import type { Metrics } from '../broker/index.ts';
import type { Storage } from '../storage/types.ts';

/** Time every call of an object's async methods into metrics.storeOp(`${prefix}.${method}`). */
function timed<T extends object>(target: T, prefix: string, metrics: Metrics): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const v = Reflect.get(obj, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const start = performance.now();
        const op = `${prefix}.${String(prop)}`;
        let r: unknown;
        try {
          r = v.apply(obj, args);
        } catch (err) {
          metrics.storeOp(op, performance.now() - start, false);
          throw err;
        }
        if (r instanceof Promise) {
          return r.then(
            (x) => (metrics.storeOp(op, performance.now() - start, true), x),
            (err) => {
              metrics.storeOp(op, performance.now() - start, false);
              metrics.error('store', `${op}: ${(err as Error).message}`);
              throw err;
            },
          );
        }
        return r;
      };
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
