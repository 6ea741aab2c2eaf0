import type { Logger } from './logger.ts';

type Handler<A extends unknown[], R> = (...args: A) => R | undefined | Promise<R | undefined>;

interface Entry {
  priority: number;
  handler: (...args: any[]) => any;
}

/** A map of hook name → [argument tuple, result type]. */
export type HookSignatures = Record<string, [unknown[], unknown]>;

/**
 * Typed hooks with Prosody `util/events.lua` semantics: handlers run in
 * priority order (higher first); the first non-undefined return stops the run
 * and is its result; a throwing handler is logged and skipped (ejabberd
 * `safe_apply`). `fold` threads a value through every handler (ejabberd
 * `run_fold`).
 */
export class HookBus<M extends HookSignatures> {
  private readonly handlers = new Map<keyof M, Entry[]>();
  private readonly log?: Logger;
  private readonly onError?: (hook: string, err: unknown) => void;

  constructor(log?: Logger, onError?: (hook: string, err: unknown) => void) {
    this.log = log;
    this.onError = onError;
  }

  private failed(name: keyof M, err: unknown): void {
    this.log?.error({ err, hook: String(name) }, 'hook handler failed; skipped');
    this.onError?.(String(name), err);
  }

  /** Register a handler; returns a function that removes it. */
  on<K extends keyof M>(name: K, handler: Handler<M[K][0], M[K][1]>, priority = 0): () => void {
    const list = this.handlers.get(name) ?? [];
    const entry: Entry = { priority, handler };
    // Stable: equal priorities keep registration order.
    let i = list.length;
    while (i > 0 && list[i - 1].priority < priority) i--;
    list.splice(i, 0, entry);
    this.handlers.set(name, list);
    return () => {
      const cur = this.handlers.get(name);
      if (!cur) return;
      const idx = cur.indexOf(entry);
      if (idx !== -1) cur.splice(idx, 1);
    };
  }

  has(name: keyof M): boolean {
    return (this.handlers.get(name)?.length ?? 0) > 0;
  }

  /** Run until a handler returns something other than undefined. */
  async run<K extends keyof M>(name: K, ...args: M[K][0]): Promise<M[K][1] | undefined> {
    const list = this.handlers.get(name);
    if (!list) return undefined;
    for (const { handler } of [...list]) {
      let result: unknown;
      try {
        result = await handler(...args);
      } catch (err) {
        this.failed(name, err);
        continue;
      }
      if (result !== undefined) return result as M[K][1];
    }
    return undefined;
  }

  /**
   * Like run, but a throwing handler is rethrown to the caller, for requests
   * where the failure must become an `internal-server-error` answer.
   */
  async request<K extends keyof M>(name: K, ...args: M[K][0]): Promise<M[K][1] | undefined> {
    const list = this.handlers.get(name);
    if (!list) return undefined;
    for (const { handler } of [...list]) {
      const result = await handler(...args);
      if (result !== undefined) return result as M[K][1];
    }
    return undefined;
  }

  /**
   * Run every handler, one after the other, awaiting each; a throwing handler
   * does not stop the others, and the failures are rethrown together at the
   * end (for work that must be complete, such as account removal).
   */
  async all<K extends keyof M>(name: K, ...args: M[K][0]): Promise<void> {
    const errors: unknown[] = [];
    for (const { handler } of [...(this.handlers.get(name) ?? [])]) {
      try {
        await handler(...args);
      } catch (err) {
        this.failed(name, err);
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1)
      throw new AggregateError(errors, `${String(name)}: ${errors.length} handlers failed`);
  }

  /**
   * Thread a value through every handler: the first argument is the value,
   * each handler gets the current one in its place; returning undefined keeps it.
   */
  async fold<K extends keyof M>(name: K, ...args: M[K][0]): Promise<M[K][1]> {
    const list = this.handlers.get(name);
    let acc = args[0] as M[K][1];
    if (!list) return acc;
    const rest = args.slice(1);
    for (const { handler } of [...list]) {
      try {
        const next = await handler(acc, ...rest);
        if (next !== undefined) acc = next as M[K][1];
      } catch (err) {
        this.failed(name, err);
      }
    }
    return acc;
  }

  /**
   * {@link fold} without a turn of the event loop while every handler answers
   * synchronously: the value itself; once a handler returns a promise, a
   * promise, and the rest run as in fold. For the router's filter on every
   * stanza: an await per stanza on a value at hand cost chat throughput.
   */
  foldNow<K extends keyof M>(name: K, ...args: M[K][0]): M[K][1] | Promise<M[K][1]> {
    const list = this.handlers.get(name);
    let acc = args[0] as M[K][1];
    if (!list) return acc;
    const rest = args.slice(1);
    const handlers = [...list];
    for (let i = 0; i < handlers.length; i++) {
      let next: unknown;
      try {
        next = handlers[i].handler(acc, ...rest);
      } catch (err) {
        this.failed(name, err);
        continue;
      }
      if (next instanceof Promise) return this.foldRest(name, handlers, i, next, acc, rest);
      if (next !== undefined) acc = next as M[K][1];
    }
    return acc;
  }

  /** The rest of {@link foldNow} once handler `i` returned the promise `pending`. */
  private async foldRest<K extends keyof M>(
    name: K,
    handlers: Entry[],
    i: number,
    pending: Promise<unknown>,
    acc: M[K][1],
    rest: unknown[],
  ): Promise<M[K][1]> {
    try {
      const next = await pending;
      if (next !== undefined) acc = next as M[K][1];
    } catch (err) {
      this.failed(name, err);
    }
    for (let j = i + 1; j < handlers.length; j++) {
      try {
        const next = await handlers[j].handler(acc, ...rest);
        if (next !== undefined) acc = next as M[K][1];
      } catch (err) {
        this.failed(name, err);
      }
    }
    return acc;
  }

  private readonly inFlight = new Set<Promise<unknown>>();

  /**
   * Keep `p` in view until it settles: {@link settled} waits for it. For work
   * nobody awaits that must finish before the node stops (a message handed
   * to the offline path as its session ends): a draining node exits when empty.
   */
  track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const done = () => void this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  /** Resolves once every tracked promise (and every emit handler's) has settled, later ones included. */
  async settled(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
  }

  /** Synchronous fire-and-forget notification to every handler (their promises are tracked). */
  emit<K extends keyof M>(name: K, ...args: M[K][0]): void {
    const list = this.handlers.get(name);
    if (!list) return;
    for (const { handler } of [...list]) {
      try {
        const r = handler(...args);
        if (r && typeof (r as Promise<unknown>).catch === 'function') {
          this.track(r as Promise<unknown>).catch((err) => this.failed(name, err));
        }
      } catch (err) {
        this.failed(name, err);
      }
    }
  }
}
