import type { Broker } from './broker.ts';
import type { Logger } from './logger.ts';

/** One declared option of a module: type, default, bounds and doc. */
export type OptionSpec =
  | { type: 'number'; default: number; min?: number; max?: number; doc: string }
  | { type: 'boolean'; default: boolean; doc: string }
  | { type: 'string'; default: string; doc: string }
  /** a string, or null to turn the feature off (`modules.rooms.host: null`) */
  | { type: 'string'; default: string | null; nullable: true; doc: string }
  | { type: 'strings'; default: string[]; doc: string };

type OptionValue<S extends OptionSpec> = S['default'];
export type OptionValues<O extends Record<string, OptionSpec>> = {
  [K in keyof O]: OptionValue<O[K]>;
};

/** A specification a module implements, for docs/compliance.md. */
export interface SpecClaim {
  /** e.g. 'RFC6121', 'XEP-0199' */
  spec: string;
  /** section, when only part of the spec is claimed */
  section?: string;
  status: 'complete' | 'partial';
  note?: string;
}

/** What a module's setup gets: its options and a scope that is undone on unload. */
export interface ModuleContext<O extends Record<string, OptionSpec>> {
  /** the module's name (owner of what it registers, in error messages) */
  name: string;
  broker: Broker;
  options: OptionValues<O>;
  log: Logger;
  /** Register something to undo when the module unloads (hook removers, timers…). */
  onUnload(fn: () => void | Promise<void>): void;
  /** setInterval that is cleared on unload. */
  every(ms: number, fn: () => void): void;
}

export interface ModuleDefinition<
  O extends Record<string, OptionSpec> = Record<string, OptionSpec>,
> {
  name: string;
  /** one line for the docs */
  description: string;
  depends?: string[];
  /** loaded unless the config says `modules.<name>.enabled: false` (default true); false: only when enabled */
  enabledByDefault?: boolean;
  options: O;
  specs: SpecClaim[];
  setup(ctx: ModuleContext<O>): void | Promise<void>;
}

/**
 * Declare a feature (ejabberd `gen_mod`, Prosody `mod_*`): dependencies,
 * typed options with defaults and docs, implemented specs, and setup. Docs and
 * the compliance table are generated from these declarations.
 */
export function defineModule<O extends Record<string, OptionSpec>>(
  def: ModuleDefinition<O>,
): ModuleDefinition<O> {
  return def;
}

/** Resolve user-provided options against the declaration; throws with the exact key on a bad value. */
export function resolveOptions<O extends Record<string, OptionSpec>>(
  def: ModuleDefinition<O>,
  given: Record<string, unknown> = {},
): OptionValues<O> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(given)) {
    if (!(key in def.options)) throw new Error(`modules.${def.name}.${key}: unknown option`);
  }
  for (const [key, spec] of Object.entries(def.options)) {
    const v = given[key];
    const path = `modules.${def.name}.${key}`;
    if (v === undefined) {
      out[key] = spec.default;
      continue;
    }
    switch (spec.type) {
      case 'number':
        if (typeof v !== 'number' || Number.isNaN(v)) throw new Error(`${path}: expected a number`);
        if (spec.min !== undefined && v < spec.min)
          throw new Error(`${path}: must be >= ${spec.min}`);
        if (spec.max !== undefined && v > spec.max)
          throw new Error(`${path}: must be <= ${spec.max}`);
        break;
      case 'boolean':
        if (typeof v !== 'boolean') throw new Error(`${path}: expected a boolean`);
        break;
      case 'string':
        if (v === null && 'nullable' in spec) break;
        if (typeof v !== 'string') throw new Error(`${path}: expected a string`);
        break;
      case 'strings':
        if (!Array.isArray(v) || !v.every((s) => typeof s === 'string'))
          throw new Error(`${path}: expected a list of strings`);
        break;
    }
    out[key] = v;
  }
  return out as OptionValues<O>;
}

/** Order definitions so that dependencies load first; throws on a missing or circular one. */
export function orderModules(defs: ModuleDefinition<any>[]): ModuleDefinition<any>[] {
  const byName = new Map(defs.map((d) => [d.name, d]));
  const out: ModuleDefinition<any>[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (d: ModuleDefinition<any>, chain: string[]): void => {
    const s = state.get(d.name);
    if (s === 'done') return;
    if (s === 'visiting')
      throw new Error(`module dependency cycle: ${[...chain, d.name].join(' -> ')}`);
    state.set(d.name, 'visiting');
    for (const dep of d.depends ?? []) {
      const dd = byName.get(dep);
      if (!dd) throw new Error(`module ${d.name} depends on ${dep}, which is not loaded`);
      visit(dd, [...chain, d.name]);
    }
    state.set(d.name, 'done');
    out.push(d);
  };
  for (const d of defs) visit(d, []);
  return out;
}

/** A loaded module: undo everything it registered. */
export class LoadedModule {
  readonly def: ModuleDefinition<any>;
  private readonly undo: (() => void | Promise<void>)[] = [];

  constructor(def: ModuleDefinition<any>) {
    this.def = def;
  }

  context(broker: Broker, options: Record<string, unknown>, log: Logger): ModuleContext<any> {
    return {
      name: this.def.name,
      broker,
      options,
      log,
      onUnload: (fn) => this.undo.push(fn),
      every: (ms, fn) => {
        const t = setInterval(fn, ms);
        t.unref();
        this.undo.push(() => clearInterval(t));
      },
    };
  }

  /** Prosody `do_unload_module`: remove every handler, timer and resource. */
  async unload(): Promise<void> {
    while (this.undo.length) await this.undo.pop()!();
  }
}
