import type { Element } from '@xmpp/xml';
import type { Envelope } from '../../broker/index.ts';

/**
 * A typed key for one module's state on a session (Prosody keeps such state
 * as fields on its session table; here each module owns a slot instead of a
 * field added to XmppConnection). Create one per module at load time:
 * `const carbons = new Slot<boolean>('carbons')`.
 */
export class Slot<T> {
  readonly name: string;
  // Phantom field: keeps T part of the type so slots of different types do not mix.
  declare readonly _type?: T;

  constructor(name: string) {
    this.name = name;
  }
}

/**
 * Per-session module state. Moves as a whole to the connection that resumes
 * a stream-management session, so every module's state (carbons on, client
 * inactive, …) survives resumption without the module knowing.
 */
export class SessionState {
  private readonly slots = new Map<Slot<unknown>, unknown>();

  get<T>(slot: Slot<T>): T | undefined {
    return this.slots.get(slot) as T | undefined;
  }

  set<T>(slot: Slot<T>, value: T): void {
    this.slots.set(slot, value);
  }

  delete(slot: Slot<unknown>): void {
    this.slots.delete(slot);
  }

  has(slot: Slot<unknown>): boolean {
    return this.slots.has(slot);
  }
}

/** One stanza on its way to the client: its XML and, when it came from the core, its envelope. */
export interface Outbound {
  xml: string;
  env?: Envelope;
}

type Filter<T> = (item: T) => T | null;

interface FilterEntry<T> {
  priority: number;
  fn: Filter<T>;
}

/**
 * An ordered chain of synchronous filters (Prosody's `stanzas/in` and
 * `stanzas/out`): higher priority runs first; a filter returns the item
 * (possibly rewritten) or null to take it out of the stream. A filter that
 * holds an item back (CSI) later sends it on with {@link runAfter}, so the
 * filters after it (stream management's counting) still see it.
 */
export class FilterChain<T> {
  private entries: FilterEntry<T>[] = [];

  get size(): number {
    return this.entries.length;
  }

  add(fn: Filter<T>, priority = 0): () => void {
    const entry = { priority, fn };
    const list = [...this.entries];
    let i = list.length;
    while (i > 0 && list[i - 1].priority < priority) i--;
    list.splice(i, 0, entry);
    this.entries = list;
    return () => {
      this.entries = this.entries.filter((e) => e !== entry);
    };
  }

  run(item: T): T | null {
    let cur: T | null = item;
    for (const e of this.entries) {
      cur = e.fn(cur);
      if (cur === null) return null;
    }
    return cur;
  }

  /** Run the filters that come after `fn` (for an item `fn` held back and now lets go). */
  runAfter(fn: Filter<T>, item: T): T | null {
    const i = this.entries.findIndex((e) => e.fn === fn);
    let cur: T | null = item;
    for (const e of this.entries.slice(i + 1)) {
      cur = e.fn(cur);
      if (cur === null) return null;
    }
    return cur;
  }
}

/** Per-session filters on stanzas in (parsed elements) and out (serialised). */
export class SessionFilters {
  readonly in = new FilterChain<Element>();
  readonly out = new FilterChain<Outbound>();
}
