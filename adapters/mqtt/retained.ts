import { Readable } from 'node:stream';
import type { Logger } from '../../broker/index.ts';

/**
 * Retained messages, indexed by topic.
 *
 * aedes asks its persistence for the retained messages matching each filter
 * of a SUBSCRIBE; aedes-persistence-level answers by reading and decoding
 * every retained message once per filter. With 25,000 retained messages a
 * 20-filter SUBSCRIBE that matched nothing kept the process busy for 7.6 s
 * (issue 20, item 10). Here the topics (with owner and size, never the
 * payloads) live in a trie in memory; a lookup walks the trie and reads from
 * the store only the messages that match, so its cost follows the matches
 * (plus, for a `+` level, the distinct names at that level).
 *
 * Limits (options `retainedMaxPerUser`, `retainedMaxTotal`,
 * `retainedMaxPayload`): a retained PUBLISH over one of them is still
 * delivered to the current subscribers, but not kept. MQTT 3.1.1 has no way
 * to tell the client (no error code for it, and [MQTT-3.3.1-5] only says the
 * server "MUST store" without a limit), so the refusal is logged and counted
 * (`$SYS/broker/retained messages/dropped`). The broker's own topics (`$SYS`,
 * no client) are not limited.
 */

/** One stored retained message. `owner` is the account's local part, '@anonymous', or '' (the broker, or unknown). */
export interface RetainedMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  owner: string;
}

/** Where retained messages are kept (bin/ gives the LevelDB one; the default keeps them in memory). */
export interface RetainedStore {
  /** topic, owner and payload size of every stored message, once at start */
  scan(): AsyncIterable<{ topic: string; owner: string; bytes: number }>;
  get(topic: string): Promise<RetainedMessage | undefined>;
  put(msg: RetainedMessage): Promise<void>;
  del(topic: string): Promise<void>;
}

export class MemoryRetainedStore implements RetainedStore {
  private readonly map = new Map<string, RetainedMessage>();
  async *scan() {
    for (const m of this.map.values())
      yield { topic: m.topic, owner: m.owner, bytes: m.payload.length };
  }
  async get(topic: string) {
    return this.map.get(topic);
  }
  async put(msg: RetainedMessage) {
    this.map.set(msg.topic, msg);
  }
  async del(topic: string) {
    this.map.delete(topic);
  }
}

export interface RetainedLimits {
  retainedMaxPerUser: number;
  retainedMaxTotal: number;
  retainedMaxPayload: number;
}

interface Entry {
  topic: string;
  owner: string;
}

class TrieNode {
  children?: Map<string, TrieNode>;
  entry?: Entry;
}

type RetainedPacket = { topic: string; payload: Buffer | string; qos?: number; clientId?: string };

/** The broker's own topics ($SYS, published without a client) count against no limit. */
function exempt(e: Entry): boolean {
  return e.owner === '' && e.topic.startsWith('$');
}

/** Who owns what a client id of the form `{user}/{client id}` publishes (context.ts internalId). */
export function ownerOf(clientId: string | undefined): string {
  if (!clientId) return '';
  const slash = clientId.indexOf('/');
  return slash === -1 ? '' : clientId.slice(0, slash);
}

/** Where each node's index tells the others what it kept or removed (a cluster's fan-out; nobody can subscribe to it). */
export const RETAINED_TOPIC = '$parley/retained';

/** The fan-out the indexes of a cluster share (aedes' mqemitter). */
interface Fanout {
  on(topic: string, fn: (msg: { payload?: unknown }, done: () => void) => void): unknown;
  emit(msg: { topic: string; payload: Buffer }, cb?: (err?: Error) => void): unknown;
}

/** A change one node made to the retained messages: `owner` absent means removed. */
interface Change {
  node: string;
  topic: string;
  owner?: string;
}

export class RetainedIndex {
  private readonly root = new TrieNode();
  /** set by follow(): how this node's changes reach the other nodes' indexes */
  private announce?: (topic: string, owner?: string) => void;
  private readonly byOwner = new Map<string, Set<string>>();
  private count = 0;
  /** entries counted against retainedMaxTotal (all but the broker's own `$` topics) */
  private limited = 0;
  /** retained PUBLISHes not kept because of a limit */
  dropped = 0;

  constructor(
    private readonly store: RetainedStore,
    private readonly limits: RetainedLimits,
    private readonly log: Logger,
  ) {}

  /** Read every stored topic into the index (topics only; payloads stay in the store). */
  async load(): Promise<void> {
    for await (const r of this.store.scan()) this.add(r.topic, r.owner);
  }

  /**
   * In a cluster (the store shared, aedes' fan-out crossing nodes), keep
   * this index in step with the other nodes': each change this node makes
   * is announced on RETAINED_TOPIC after the store has it, and the others'
   * are applied here (the store already holds them, and their limits were
   * checked where they were published). Broker-owned `$` topics are not
   * announced: each node keeps its own statistics.
   */
  follow(fanout: Fanout, node: string): void {
    fanout.on(RETAINED_TOPIC, (msg, done) => {
      try {
        const c = JSON.parse(String(msg.payload)) as Change;
        if (c.node !== node && typeof c.topic === 'string') {
          if (typeof c.owner === 'string') this.add(c.topic, c.owner);
          else this.remove(c.topic);
        }
      } catch (err) {
        this.log.debug({ err }, 'bad retained change from another node');
      }
      done();
    });
    this.announce = (topic, owner) => {
      if (topic.startsWith('$')) return;
      const change: Change = { node, topic, owner };
      fanout.emit(
        { topic: RETAINED_TOPIC, payload: Buffer.from(JSON.stringify(change)) },
        (err) => {
          if (err)
            this.log.warn({ err: err.message }, 'retained change not announced to the cluster');
        },
      );
    };
  }

  /** Messages retained now. */
  get size(): number {
    return this.count;
  }

  /**
   * Replace the persistence's retained-message calls with this index and its
   * store (aedes calls `storeRetained` and `createRetainedStreamCombi`).
   */
  install(persistence: object): void {
    const p = persistence as Record<string, unknown>;
    p.storeRetained = (packet: RetainedPacket) => this.storeRetained(packet);
    p.createRetainedStreamCombi = (patterns: string[]) => this.stream(patterns);
    p.createRetainedStream = (pattern: string) => this.stream([pattern]);
  }

  /** A retained PUBLISH: kept (within the limits), replaced, or removed (empty payload) [MQTT-3.3.1-10]. */
  async storeRetained(packet: RetainedPacket): Promise<void> {
    const topic = packet.topic;
    const payload = Buffer.isBuffer(packet.payload)
      ? packet.payload
      : Buffer.from(packet.payload ?? '');
    if (payload.length === 0) {
      // Another node's message may be in the store without this index knowing it yet: delete anyway in a cluster.
      if (this.remove(topic) || this.announce) {
        await this.store.del(topic);
        this.announce?.(topic);
      }
      return;
    }
    const owner = ownerOf(packet.clientId);
    const refusal = this.refusal(topic, owner, payload.length);
    if (refusal) {
      this.dropped++;
      this.log.info(
        { topic: topic.slice(0, 200), owner, limit: refusal },
        'retained message not kept: over a limit (delivered, not retained)',
      );
      return;
    }
    this.add(topic, owner);
    await this.store.put({ topic, payload, qos: Math.min(packet.qos ?? 0, 2) as 0 | 1 | 2, owner });
    this.announce?.(topic, owner);
  }

  /** Remove every retained message of one owner (an account removed); returns how many. */
  async removeOwner(owner: string): Promise<number> {
    const topics = [...(this.byOwner.get(owner) ?? [])];
    for (const t of topics) {
      this.remove(t);
      await this.store.del(t);
      this.announce?.(t);
    }
    return topics.length;
  }

  /** Owners with retained messages. */
  owners(): string[] {
    return [...this.byOwner.keys()];
  }

  /** Topics of retained messages matching any of the filters, each once: per filter in topic order. */
  match(filters: readonly string[]): string[] {
    const seen = new Set<string>();
    const out: string[] = [];
    for (const f of filters) {
      const hits = new Set<string>();
      this.walk(this.root, f.split('/'), 0, hits);
      for (const t of [...hits].sort()) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push(t);
      }
    }
    return out;
  }

  private stream(patterns: string[]): Readable {
    const topics = this.match(patterns);
    const store = this.store;
    return Readable.from(
      (async function* () {
        for (const topic of topics) {
          const m = await store.get(topic);
          if (m)
            yield { cmd: 'publish', topic: m.topic, payload: m.payload, qos: m.qos, retain: true };
        }
      })(),
    );
  }

  /** Which limit a new message would break ('' for none). Replacing an existing topic adds nothing to the counts. */
  private refusal(topic: string, owner: string, bytes: number): string {
    if (exempt({ topic, owner })) return ''; // the broker's own $SYS topics
    if (bytes > this.limits.retainedMaxPayload) return 'retainedMaxPayload';
    const existing = this.find(topic);
    if (existing?.entry?.owner === owner) return '';
    if (!existing?.entry && this.limited >= this.limits.retainedMaxTotal) return 'retainedMaxTotal';
    if (owner !== '' && (this.byOwner.get(owner)?.size ?? 0) >= this.limits.retainedMaxPerUser)
      return 'retainedMaxPerUser';
    return '';
  }

  private find(topic: string): TrieNode | undefined {
    let node: TrieNode | undefined = this.root;
    for (const level of topic.split('/')) {
      node = node.children?.get(level);
      if (!node) return undefined;
    }
    return node;
  }

  private add(topic: string, owner: string): void {
    let node = this.root;
    for (const level of topic.split('/')) {
      node.children ??= new Map();
      let next = node.children.get(level);
      if (!next) node.children.set(level, (next = new TrieNode()));
      node = next;
    }
    if (node.entry) {
      const old = this.byOwner.get(node.entry.owner);
      old?.delete(topic);
      if (old?.size === 0) this.byOwner.delete(node.entry.owner);
      if (!exempt(node.entry)) this.limited--;
    } else this.count++;
    node.entry = { topic, owner };
    if (!exempt(node.entry)) this.limited++;
    let set = this.byOwner.get(owner);
    if (!set) this.byOwner.set(owner, (set = new Set()));
    set.add(topic);
  }

  /** Take a topic out of the index, pruning empty nodes; false when it was not there. */
  private remove(topic: string): boolean {
    const levels = topic.split('/');
    const path: TrieNode[] = [this.root];
    for (const level of levels) {
      const next = path[path.length - 1].children?.get(level);
      if (!next) return false;
      path.push(next);
    }
    const node = path[path.length - 1];
    if (!node.entry) return false;
    const set = this.byOwner.get(node.entry.owner);
    set?.delete(topic);
    if (set?.size === 0) this.byOwner.delete(node.entry.owner);
    if (!exempt(node.entry)) this.limited--;
    node.entry = undefined;
    this.count--;
    for (let i = levels.length; i > 0; i--) {
      const n = path[i];
      if (n.entry || n.children?.size) break;
      path[i - 1].children!.delete(levels[i - 1]);
    }
    return true;
  }

  /** Collect the entries under `node` matching filter levels from `i` on [MQTT-4.7.1]. */
  private walk(node: TrieNode, filter: string[], i: number, out: Set<string>): void {
    if (i === filter.length) {
      if (node.entry) out.add(node.entry.topic);
      return;
    }
    const f = filter[i];
    if (f === '#') {
      // [MQTT-4.7.1-2] '#' also matches the parent level
      if (node.entry) out.add(node.entry.topic);
      this.all(node, i === 0, out);
      return;
    }
    if (!node.children) return;
    if (f === '+') {
      for (const [name, child] of node.children) {
        if (i === 0 && name.startsWith('$')) continue; // [MQTT-4.7.2-1]
        this.walk(child, filter, i + 1, out);
      }
      return;
    }
    const child = node.children.get(f);
    if (child) this.walk(child, filter, i + 1, out);
  }

  /** Every entry below `node` (iteratively: topics may be up to maxTopicLevels deep). */
  private all(node: TrieNode, atRoot: boolean, out: Set<string>): void {
    const stack: TrieNode[] = [];
    for (const [name, child] of node.children ?? []) {
      if (atRoot && name.startsWith('$')) continue; // [MQTT-4.7.2-1]
      stack.push(child);
    }
    while (stack.length) {
      const n = stack.pop()!;
      if (n.entry) out.add(n.entry.topic);
      if (n.children) for (const c of n.children.values()) stack.push(c);
    }
  }
}
