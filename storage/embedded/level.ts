/**
 * The LevelDB plumbing shared by the embedded stores: one key space cut into
 * sublevels, every write an atomic batch. See storage/embedded.ts for the
 * key layout and the durability promise.
 */

import type { ClassicLevel } from 'classic-level';

/** The root database: utf8 keys, values are JSON text encoded by the stores. */
export type Db = ClassicLevel<string, string>;

/** A key prefix of {@link Db} with utf8 keys and values. */
export type Sub = ReturnType<typeof sublevel>;

/** One operation of an atomic batch, possibly across sublevels. */
export type Op =
  | {
      type: 'put';
      sublevel: Sub;
      key: string;
      value: string;
      /** A key rewritten by nearly every write (a counter, a high-water mark): a group commit writes only its last put. */
      rewritten?: boolean;
    }
  | { type: 'del'; sublevel: Sub; key: string };

/**
 * Commits operations atomically; resolves once LevelDB has logged them.
 * Writes settle in the order they were asked for: a write that resolves
 * implies every earlier write has settled.
 */
export type Write = (ops: Op[]) => Promise<void>;

/** The sublevel at `path` (names must be printable ASCII without `!`). */
export function sublevel(db: Db, path: string[]) {
  return db.sublevel<string, string>(path, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
}

/** Makes the sublevel `name` inside a store's own prefix. */
export type MakeSub = (name: string) => Sub;

/** Separates a conversation or owner from the rest of a key; ids never contain it. */
export const SEP = '\u0000';

/** Upper bound of a NUL-separated id range: the byte after the separator. */
export const SEP_END = '\u0001';

/** Maintenance deletes are flushed in batches of this size, so memory stays bounded. */
export const BATCH = 1000;
