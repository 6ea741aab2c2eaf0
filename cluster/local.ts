import type { BusMessage, ClusterBus, SessionEntry, SessionRegistry } from './types.ts';

/** The single-node bus: messages to this node are delivered in-process. */
export class LocalBus implements ClusterBus {
  readonly nodeId: string;
  private readonly handlers: ((msg: BusMessage) => void)[] = [];

  constructor(nodeId = 'local') {
    this.nodeId = nodeId;
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  async send(node: string, type: string, payload: unknown): Promise<void> {
    if (node !== this.nodeId) throw new Error(`unknown node ${node}`);
    this.dispatch({ from: this.nodeId, type, payload });
  }

  async broadcast(type: string, payload: unknown): Promise<void> {
    this.dispatch({ from: this.nodeId, type, payload });
  }

  onMessage(handler: (msg: BusMessage) => void): void {
    this.handlers.push(handler);
  }

  async members(): Promise<string[]> {
    return [this.nodeId];
  }

  onNodeDown(_handler: (node: string) => void): void {
    // A single node never sees another node die.
  }

  /** key → expiry (ms since the epoch); expired ones are swept as the map grows */
  private readonly claims = new Map<string, number>();

  async claim(key: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    const until = this.claims.get(key);
    if (until !== undefined && until > now) return false;
    if (this.claims.size >= 1024 && until === undefined)
      for (const [k, t] of this.claims) if (t <= now) this.claims.delete(k);
    this.claims.set(key, now + ttlMs);
    return true;
  }

  private dispatch(msg: BusMessage): void {
    // Asynchronous like a real bus, so callers never depend on re-entrancy.
    queueMicrotask(() => {
      for (const h of this.handlers) h(msg);
    });
  }
}

/** In-process session registry keyed per user and per node. */
export class LocalRegistry implements SessionRegistry {
  private readonly byUser = new Map<string, Map<string, SessionEntry>>();

  async put(entry: SessionEntry): Promise<void> {
    let m = this.byUser.get(entry.user);
    if (!m) this.byUser.set(entry.user, (m = new Map()));
    m.set(entry.resource, { ...entry });
  }

  async remove(user: string, resource: string, sessionId: string): Promise<void> {
    const m = this.byUser.get(user);
    const e = m?.get(resource);
    if (!m || !e || e.sessionId !== sessionId) return;
    m.delete(resource);
    if (m.size === 0) this.byUser.delete(user);
  }

  async lookup(user: string): Promise<SessionEntry[]> {
    return this.lookupNow(user);
  }

  lookupNow(user: string): SessionEntry[] {
    // The stored entries themselves, not copies (this runs for every routed
    // message): put() stores a copy of what it is given, and callers only read.
    const m = this.byUser.get(user);
    return m ? Array.from(m.values()) : [];
  }

  async byNode(node: string): Promise<SessionEntry[]> {
    const out: SessionEntry[] = [];
    for (const m of this.byUser.values())
      for (const e of m.values()) if (e.node === node) out.push({ ...e });
    return out;
  }

  async purgeNode(node: string): Promise<number> {
    const entries = await this.byNode(node);
    for (const e of entries) await this.remove(e.user, e.resource, e.sessionId);
    return entries.length;
  }
}
