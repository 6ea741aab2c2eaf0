import type { ArchivePage, ArchiveQuery, ArchiveRecord, ArchiveStore } from '../storage/types.ts';
import { Address } from './address.ts';
import { fromRecord, toRecord, type Envelope, type EnvelopeRecord } from './envelope.ts';

/** Conversation id of a pair of users: order-independent. */
export function pairConversation(a: Address, b: Address): string {
  const x = a.bare().toString();
  const y = b.bare().toString();
  return x < y ? `chat:${x}|${y}` : `chat:${y}|${x}`;
}

/**
 * The timeline: every one-to-one message is appended here, and gets its
 * per-conversation seq, before it is pushed anywhere (store, then sync).
 */
export class ArchiveService {
  private readonly store: ArchiveStore<EnvelopeRecord>;

  private readonly onAppend: () => void;

  constructor(store: ArchiveStore<EnvelopeRecord>, onAppend: () => void = () => {}) {
    this.store = store;
    this.onAppend = onAppend;
  }

  /** Append a 1:1 message; sets env.seq and env.timestamp. */
  async appendChat(env: Envelope): Promise<ArchiveRecord<EnvelopeRecord>> {
    const conversation = pairConversation(env.from, env.to);
    env.timestamp ??= Date.now();
    const rec = await this.store.append({
      conversation,
      timestamp: env.timestamp,
      owners: [env.from.bare().toString(), env.to.bare().toString()],
      with: env.from.bare().toString(),
      id: env.id ?? `${env.timestamp}`,
      value: toRecord(env),
    });
    env.seq = rec.seq;
    rec.value.seq = rec.seq;
    this.onAppend();
    return rec;
  }

  async query(a: Address, b: Address, q?: ArchiveQuery): Promise<{ envelopes: Envelope[]; complete: boolean }> {
    const page: ArchivePage<EnvelopeRecord> = await this.store.query(pairConversation(a, b), q);
    return {
      envelopes: page.records.map((r) => {
        const env = fromRecord(r.value, Address.parse);
        env.seq = r.seq;
        return env;
      }),
      complete: page.complete,
    };
  }

  lastSeq(a: Address, b: Address): Promise<number> {
    return this.store.lastSeq(pairConversation(a, b));
  }

  prune(olderThan: number): Promise<number> {
    return this.store.prune(olderThan);
  }

  removeOwner(user: Address): Promise<void> {
    return this.store.removeOwner(user.bare().toString());
  }
}
