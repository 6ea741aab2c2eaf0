// Minimal typings for aedes-persistence-level (it ships none).
declare module 'aedes-persistence-level' {
  /** An aedes persistence over an abstract-level database (e.g. `level`). */
  export default function aedesPersistenceLevel(db: unknown): unknown;
}
