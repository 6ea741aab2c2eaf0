import type { QueueStore } from '../storage/types.ts';
import { Address } from './address.ts';
import { fromRecord, toRecord, type Envelope, type EnvelopeRecord } from './envelope.ts';

/** Delivered ids removed from the store together (one write per this many, not one per message). */
const REMOVE_BATCH = 16;

/**
 * Per-user inbox for users with no available session [XEP-0160]. Items are
 * removed only after they were handed to a session, so a crash in between
 * delivers twice rather than never.
 */
export class OfflineQueue {
  private readonly store: QueueStore<EnvelopeRecord>;
  private maxPerUser: number;
  private maxBytesPerUser: number;
  private readonly domain: string;

  /** New bounds from the next enqueue on (`parley reload`). */
  setLimits(maxPerUser: number, maxBytesPerUser = Infinity): void {
    this.maxPerUser = maxPerUser;
    this.maxBytesPerUser = maxBytesPerUser;
  }

  constructor(
    store: QueueStore<EnvelopeRecord>,
    maxPerUser: number,
    domain: string,
    maxBytesPerUser = Infinity,
  ) {
    this.store = store;
    this.maxPerUser = maxPerUser;
    this.maxBytesPerUser = maxBytesPerUser;
    this.domain = domain;
  }

  /** Store; false when the user's queue is full, by count or by size (the caller bounces it). */
  async enqueue(env: Envelope): Promise<boolean> {
    const owner = env.to.bare().toString();
    if ((await this.store.count(owner)) >= this.maxPerUser) return false;
    env.timestamp ??= Date.now();
    const record = toRecord(env);
    if (Number.isFinite(this.maxBytesPerUser)) {
      // limits.offlineMaxBytesPerUser: counted in characters of the stored JSON, as the store counts them
      const size = JSON.stringify(record).length;
      if ((await this.store.bytes(owner)) + size > this.maxBytesPerUser) return false;
    }
    await this.store.push(owner, record);
    return true;
  }

  async count(user: Address): Promise<number> {
    return this.store.count(user.bare().toString());
  }

  /**
   * Hand queued envelopes to `deliver` one at a time, oldest first, with a
   * delay stamp [XEP-0203], and remove each once it was handed over: `deliver`
   * resolves when the session has it (written out, or stored by the session),
   * or with false when the session ended first, which stops the flush and
   * leaves that message and the rest queued for the next login. At least once:
   * a crash, or a connection cut after a message left the node but before the
   * client read it, delivers it again at the next login rather than never.
   */
  async flush(
    user: Address,
    deliver: (env: Envelope) => void | boolean | Promise<void | boolean>,
    batch = 100,
  ): Promise<number> {
    const owner = user.bare().toString();
    let total = 0;
    const done: string[] = [];
    const removeDone = async (): Promise<void> => {
      if (done.length === 0) return;
      const ids = done.splice(0);
      await this.store.remove(owner, ids);
      total += ids.length;
    };
    try {
      for (;;) {
        const items = await this.store.list(owner, batch);
        if (items.length === 0) break;
        let stopped = false;
        for (const item of items) {
          const env = fromRecord(item.value, Address.parse);
          env.delay = {
            stamp: env.timestamp ?? Date.now(),
            from: this.domain,
            reason: 'Offline Storage',
          };
          if ((await deliver(env)) === false) {
            stopped = true; // the session went away: this one and the rest stay queued
            break;
          }
          done.push(item.id);
          if (done.length >= REMOVE_BATCH) await removeDone();
        }
        await removeDone();
        if (stopped || items.length < batch) break;
      }
    } finally {
      await removeDone(); // what was handed over, however the flush ended
    }
    return total;
  }

  /** The queued messages, oldest first, left in the queue (`parley offline show`). */
  async peek(user: Address, limit = 100): Promise<Envelope[]> {
    return (await this.store.list(user.bare().toString(), limit)).map((item) =>
      fromRecord(item.value, Address.parse),
    );
  }

  clear(user: Address): Promise<void> {
    return this.store.clear(user.bare().toString());
  }
}
