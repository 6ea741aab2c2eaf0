import type { Envelope } from './envelope.ts';

/** One storable message handed to another node for some of its sessions. */
export interface Handed {
  env: Envelope;
  /** the resources on that node it was for */
  resources: string[];
  /** every resource it went to, on any node (the others had it) */
  all: string[];
  at: number;
}

/**
 * What this node handed to each other node over the bus during the last
 * `windowMs` (at most `maxPerNode` per node): when that node is declared
 * dead, these are the messages it may have held unacknowledged by its
 * clients (docs/cluster.md, "Node loss"), and the router queues them again.
 * A queue per node, oldest first, trimmed as it grows.
 */
export class HandedOver {
  private readonly byNode = new Map<string, { items: Handed[]; head: number }>();

  constructor(
    private readonly windowMs: number,
    private readonly maxPerNode: number,
  ) {}

  get enabled(): boolean {
    return this.windowMs > 0 && this.maxPerNode > 0;
  }

  add(node: string, h: Handed): void {
    let q = this.byNode.get(node);
    if (!q) this.byNode.set(node, (q = { items: [], head: 0 }));
    q.items.push(h);
    const oldest = h.at - this.windowMs;
    while (
      q.head < q.items.length &&
      (q.items.length - q.head > this.maxPerNode || q.items[q.head].at < oldest)
    )
      q.head++;
    // Compact once the dropped part is the larger half (amortised O(1) per add).
    if (q.head > 1024 && q.head * 2 > q.items.length) {
      q.items = q.items.slice(q.head);
      q.head = 0;
    }
  }

  /** The node's messages of the window, oldest first; forgotten here. */
  take(node: string, now = Date.now()): Handed[] {
    const q = this.byNode.get(node);
    this.byNode.delete(node);
    if (!q) return [];
    const oldest = now - this.windowMs;
    return q.items.slice(q.head).filter((h) => h.at >= oldest);
  }
}
