import type { QueueStore } from '../storage/types.ts';
import { Address } from './address.ts';
import { fromRecord, toRecord, type Envelope, type EnvelopeRecord } from './envelope.ts';

/**
 * Per-user inbox for users with no available session [XEP-0160]. Items are
 * removed only after they were handed to a session, so a crash in between
 * delivers twice rather than never.
 */
export class OfflineQueue {
  private readonly store: QueueStore<EnvelopeRecord>;
  private readonly maxPerUser: number;
  private readonly domain: string;

  constructor(store: QueueStore<EnvelopeRecord>, maxPerUser: number, domain: string) {
    this.store = store;
    this.maxPerUser = maxPerUser;
    this.domain = domain;
  }

  /** Store; false when the user's queue is full (the caller bounces it). */
  async enqueue(env: Envelope): Promise<boolean> {
    const owner = env.to.bare().toString();
    if ((await this.store.count(owner)) >= this.maxPerUser) return false;
    env.timestamp ??= Date.now();
    await this.store.push(owner, toRecord(env));
    return true;
  }

  async count(user: Address): Promise<number> {
    return this.store.count(user.bare().toString());
  }

  /**
   * Hand every queued envelope to `deliver` (oldest first, with a delay stamp
   * [XEP-0203]) and remove what was handed over.
   */
  async flush(user: Address, deliver: (env: Envelope) => void | Promise<void>, batch = 100): Promise<number> {
    const owner = user.bare().toString();
    let total = 0;
    for (;;) {
      const items = await this.store.list(owner, batch);
      if (items.length === 0) return total;
      for (const item of items) {
        const env = fromRecord(item.value, Address.parse);
        env.delay = { stamp: env.timestamp ?? Date.now(), from: this.domain, reason: 'Offline Storage' };
        await deliver(env); // removed only once the session has it (or has stored it)
      }
      await this.store.remove(owner, items.map((i) => i.id));
      total += items.length;
      if (items.length < batch) return total;
    }
  }

  clear(user: Address): Promise<void> {
    return this.store.clear(user.bare().toString());
  }
}
