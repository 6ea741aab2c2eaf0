/**
 * Records of one sublevel kept in memory as stored (JSON text; `null`: no
 * such key), for a store that is the only writer of that sublevel. Then what
 * is kept is what is on disk, with one care: a read that overlapped a write
 * to the store keeps nothing, since it may have read the value from before
 * that write; a write keeps its value once it is on disk. The embedded
 * store's writes complete in the order they were made, so the last to
 * complete is what is on disk.
 */
export class ReadCache {
  readonly #kept = new Map<string, string | null>();
  /** writes started, for a read to tell whether one overlapped it */
  #writes = 0;

  constructor(private readonly entries: number) {}

  /** Read key through `load` (the disk) unless kept; keeps what it read if no write overlapped. */
  async read(key: string, load: () => Promise<string | undefined>): Promise<string | null> {
    const kept = this.#kept.get(key);
    if (kept !== undefined) return kept;
    const writes = this.#writes;
    const text = (await load()) ?? null;
    if (writes === this.#writes) this.#keep(key, text);
    return text;
  }

  /**
   * Run a write whose result for key is `text`: until it is on disk, reads
   * of key go to disk, as they would without a cache.
   */
  async write<R>(key: string, text: string | null, run: () => Promise<R>): Promise<R> {
    this.#writes++;
    this.#kept.delete(key);
    let result: R;
    try {
      result = await run();
    } finally {
      this.#writes++;
    }
    this.#keep(key, text);
    return result;
  }

  /** Like {@link write} for several keys written in one batch. */
  async writeMany<R>(
    texts: [key: string, text: string | null][],
    run: () => Promise<R>,
  ): Promise<R> {
    this.#writes++;
    for (const [key] of texts) this.#kept.delete(key);
    let result: R;
    try {
      result = await run();
    } finally {
      this.#writes++;
    }
    for (const [key, text] of texts) this.#keep(key, text);
    return result;
  }

  /** Forget everything (the database was closed and opened again). */
  reset(): void {
    this.#kept.clear();
    this.#writes++;
  }

  #keep(key: string, text: string | null): void {
    if (this.entries === 0) return;
    if (!this.#kept.has(key) && this.#kept.size >= this.entries) {
      this.#kept.delete(this.#kept.keys().next().value as string); // the oldest kept
    }
    this.#kept.set(key, text);
  }
}
