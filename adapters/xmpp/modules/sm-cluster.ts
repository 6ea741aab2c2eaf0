import { randomBytes } from 'node:crypto';
import {
  Address,
  closeReason,
  fromRecord,
  isStorableMessage,
  toRecord,
  type Broker,
  type Envelope,
  type EnvelopeRecord,
  type Logger,
  type Session,
} from '../../../broker/index.ts';
import type { XmppConnection } from '../connection.ts';

/**
 * XEP-0198 resumption across a cluster (docs/cluster.md, "Stream management
 * across nodes"). A resumption id names the node that issued it
 * (`<node>.<random>`), so the node a client comes back to knows whom to ask,
 * without a shared-store write per session. That node (B) asks the named
 * node (A) over the bus ('sm-take'); A checks the account, closes the old
 * stream if it is still attached, and hands the session over ('sm-given'):
 * its counts, its unacknowledged stanzas, its presence state and the
 * per-session state of the modules that register a {@link HandoverPart}.
 * A then unbinds it as 'session-moved' (no unavailable presence, nothing to
 * offline storage); B binds it and replays. Everything here is plain data:
 * XML strings and envelope records.
 */

/** The random part of a resumption id: 12 bytes, base64url. */
const RANDOM = /^[A-Za-z0-9_-]{16}$/;
/** A cluster node id (bin/config.ts allows these in a cluster) and the random part. */
const CLUSTERED = /^([A-Za-z0-9._-]{1,64})\.([A-Za-z0-9_-]{16})$/;
/** The longest id issued: node id, dot, random part. */
const MAX_ID = 64 + 1 + 16;

/** A fresh resumption id; `node` set in a cluster [XEP-0198 5]. */
export function newSmId(node: string | undefined): string {
  const r = randomBytes(12).toString('base64url');
  return node ? `${node}.${r}` : r;
}

/**
 * The node a resumption id names ('' for an id without one), or undefined
 * when it is not an id this server issues. Client input: strict and bounded.
 */
export function smIdNode(id: string): string | undefined {
  if (id.length > MAX_ID) return undefined;
  if (RANDOM.test(id)) return '';
  return CLUSTERED.exec(id)?.[1];
}

/** A module's per-session state that moves with a session resumed on another node. */
export interface HandoverPart {
  /** plain JSON data, or undefined for nothing to move; may let held stanzas go (they then join the unacked queue) */
  save(conn: XmppConnection): unknown;
  /** on the new node's stream, before the replay */
  restore(conn: XmppConnection, value: unknown): void;
}

const partsOf = new WeakMap<Broker, Map<string, HandoverPart>>();

/** Register a module's part of the handover; returns its removal (for ctx.onUnload). */
export function addHandoverPart(broker: Broker, name: string, part: HandoverPart): () => void {
  let parts = partsOf.get(broker);
  if (!parts) partsOf.set(broker, (parts = new Map()));
  parts.set(name, part);
  return () => void parts.delete(name);
}

export function saveParts(broker: Broker, conn: XmppConnection): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, part] of partsOf.get(broker) ?? []) {
    const v = part.save(conn);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

function restoreParts(broker: Broker, conn: XmppConnection, saved: Record<string, unknown>): void {
  for (const [name, part] of partsOf.get(broker) ?? [])
    if (saved[name] !== undefined) part.restore(conn, saved[name]);
}

/** A stanza sent and not acknowledged, as it crosses the bus. */
export interface HandedStanza {
  xml: string;
  env?: EnvelopeRecord;
  /** when it was first sent (the delay stamp on the replay) */
  at: number;
}

/** What moves from the old node to the new one. */
export interface Handover {
  /** full address */
  address: string;
  inbound: number;
  acked: number;
  queue: HandedStanza[];
  priority: number;
  available: boolean;
  presence?: EnvelopeRecord;
  interested: boolean;
  directed?: string[];
  parts: Record<string, unknown>;
}

/** Why a take was refused: the `<failed/>` condition, and the `h` for unexpected-request [XEP-0198 5]. */
export type Refusal = { error: 'item-not-found' } | { error: 'unexpected-request'; h: number };

interface TakeRequest {
  id: number;
  previd: string;
  /** the resuming stream's account (local part) */
  user: string;
  h: number;
}

interface GivenReply {
  id: number;
  state?: Handover;
  refusal?: Refusal;
}

/** What the stream-management module does on each side. */
export interface SmLocal {
  /** A: give `previd` to `user` after applying `h`; detaches it from here before it returns the state */
  give(previd: string, user: string, h: number): Promise<Handover | Refusal>;
  /** B: continue the handed-over session on `conn` (bound, counted, replayed) */
  adopt(conn: XmppConnection, previd: string, state: Handover, queue: Unacked[]): Promise<void>;
}

/** A stanza to replay, its envelope restored. */
export interface Unacked {
  xml: string;
  env?: Envelope;
  at: number;
}

export interface SmClusterOptions {
  /** how long B waits for A's answer */
  timeoutMs: number;
  /** takes waiting for an answer on this node at once */
  maxInFlight: number;
  /** the longest queue accepted (the module's maxUnacked) */
  maxQueue: number;
  /** draining nodes keep their redirected sessions for others to take (drainHandoverSeconds > 0): ask them too */
  askDraining: boolean;
}

const TAKE = 'sm-take';
const GIVEN = 'sm-given';

export function toHanded(u: Unacked): HandedStanza {
  return u.env ? { xml: u.xml, env: toRecord(u.env), at: u.at } : { xml: u.xml, at: u.at };
}

/** The bus side of cross-node resumption, on every node. */
export class SmCluster {
  private readonly broker: Broker;
  private readonly log: Logger;
  private readonly opts: SmClusterOptions;
  private readonly local: SmLocal;
  /** takes waiting for answers, by request id: each answer goes to `reply` */
  private readonly calls = new Map<number, { reply: (r: GivenReply) => void; end: () => void }>();
  private nextCall = 1;
  private stopped = false;

  constructor(broker: Broker, log: Logger, opts: SmClusterOptions, local: SmLocal) {
    this.broker = broker;
    this.log = log;
    this.opts = opts;
    this.local = local;
    broker.cluster.bus.onMessage((m) => this.onMessage(m));
  }

  /** This node's id when several nodes may share sessions (the ids then name it), else undefined. */
  get idNode(): string | undefined {
    return this.broker.cluster.bus.status ? this.broker.cluster.bus.nodeId : undefined;
  }

  stop(): void {
    this.stopped = true;
    for (const c of [...this.calls.values()]) c.end();
  }

  /**
   * B: `conn` resumes `previd`, issued by `node` [XEP-0198 5]. The named node
   * is asked first; when it is gone or has no such session, the other live
   * nodes are asked at once (a session resumed on another node before lives
   * on there, under the id its first node issued). Answers the client:
   * `<resumed/>` through the module's adopt, else the `<failed/>` that `fail`
   * writes (item-not-found when no live node has such a session of this
   * account, or none answers in time).
   */
  async resume(
    conn: XmppConnection,
    node: string,
    previd: string,
    h: number,
    fail: (condition: string, h?: number) => void,
  ): Promise<void> {
    if (this.calls.size >= this.opts.maxInFlight) {
      this.log.warn({ inFlight: this.calls.size }, 'resumption refused: too many takes at once');
      return fail('resource-constraint');
    }
    const user = conn.authenticatedAs;
    const live = this.stopped ? [] : await this.candidates();
    let r = live.includes(node) ? await this.ask([node], previd, user, h) : undefined;
    const rest = live.filter((n) => n !== node);
    if (!r?.state && r?.refusal?.error !== 'unexpected-request' && rest.length > 0)
      r = await this.ask(rest, previd, user, h);
    if (!r) {
      this.log.info({ user, node }, 'resumption refused: no live node answered');
      return fail('item-not-found');
    }
    if (r.refusal) {
      this.log.info({ user, node, refusal: r.refusal.error }, 'resumption refused by the cluster');
      return r.refusal.error === 'unexpected-request'
        ? fail('unexpected-request', r.refusal.h)
        : fail('item-not-found');
    }
    const state = r.state;
    const queue = state && this.check(state, user);
    if (!state || !queue) return fail('item-not-found');
    if (conn.closeReason) return this.orphan(state, queue); // the new stream went away meanwhile
    try {
      await this.local.adopt(conn, previd, state, queue);
    } catch (err) {
      // The stream may be half bound: end it (the client binds anew) and end the session as a session ends.
      this.log.warn({ err }, 'resumption: adopting the handed-over session failed');
      conn.close(closeReason('internal-error', 'resumption failed'));
      await this.orphan(state, queue);
    }
  }

  /**
   * The other live nodes that may hold a resumable session: a draining node
   * only when draining nodes keep their sessions for others (else its
   * sessions ended when it sent their clients away, and it may stop under
   * the question).
   */
  private async candidates(): Promise<string[]> {
    const bus = this.broker.cluster.bus;
    try {
      if (!this.opts.askDraining && bus.peers) return (await bus.peers()).map((p) => p.id);
      return (await bus.members()).filter((n) => n !== bus.nodeId);
    } catch (err) {
      this.log.warn({ err }, 'resumption: the live nodes are not known (cluster backend away)');
      return [];
    }
  }

  /**
   * Ask `nodes` for the session at once: the first handover (or a refusal
   * for a wrong h: the session was found) ends the wait; else the first
   * refusal once every node refused or the time is up; undefined when none
   * answered in time.
   */
  private ask(
    nodes: string[],
    previd: string,
    user: string,
    h: number,
  ): Promise<GivenReply | undefined> {
    const id = this.nextCall++;
    return new Promise((resolve) => {
      let waiting = nodes.length;
      let refused: GivenReply | undefined;
      const done = (r: GivenReply | undefined) => {
        clearTimeout(timer);
        this.calls.delete(id);
        resolve(r);
      };
      const timer = setTimeout(() => done(refused), this.opts.timeoutMs);
      timer.unref();
      const reply = (r: GivenReply) => {
        if (r.state || r.refusal?.error === 'unexpected-request') return done(r);
        refused ??= r;
        if (--waiting === 0) done(refused);
      };
      this.calls.set(id, { reply, end: () => done(undefined) });
      const req: TakeRequest = { id, previd, user, h };
      for (const n of nodes)
        this.broker.cluster.bus.send(n, TAKE, req).catch((err: unknown) => {
          this.log.warn({ err, node: n }, 'resumption: take request not sent');
          reply({ id, refusal: { error: 'item-not-found' } });
        });
    });
  }

  /** An answer to a take, or a late one nobody waits for any more: its session must not be lost. */
  private settle(r: GivenReply): void {
    const call = this.calls.get(r.id);
    if (call) return call.reply(r);
    if (!r.state) return;
    this.log.warn({ jid: r.state.address }, 'resumption: late handover; its session ends here');
    const queue = this.check(r.state, undefined);
    if (queue) void this.orphan(r.state, queue);
  }

  /** The handed-over state is well formed and the account's; its queue with envelopes restored. */
  private check(s: Handover, user: string | undefined): Unacked[] | undefined {
    try {
      const a = Address.parse(s.address);
      if (a.isBare || a.domain !== this.broker.domain) return undefined;
      if (user !== undefined && a.local !== user) return undefined;
      if (!Array.isArray(s.queue) || s.queue.length > this.opts.maxQueue) return undefined;
      return s.queue.map((u) => ({
        xml: String(u.xml),
        at: Number(u.at) || Date.now(),
        ...(u.env && { env: fromRecord(u.env, (x) => Address.parse(x)) }),
      }));
    } catch {
      return undefined;
    }
  }

  /**
   * A handed-over session that no stream took (the new stream went away,
   * or A answered too late): it ends as a session ends, its unacknowledged
   * messages to offline storage [XEP-0160] and its contacts told it is gone.
   */
  private async orphan(s: Handover, queue: Unacked[]): Promise<void> {
    const broker = this.broker;
    for (const u of queue)
      if (u.env && isStorableMessage(u.env))
        await broker.router
          .undeliverable({ ...u.env, delay: u.env.delay ?? { stamp: u.at, from: broker.domain } })
          .catch((err: unknown) => this.log.warn({ err }, 'orphaned message not stored'));
    const gone: Session = {
      id: `handover-${randomBytes(4).toString('hex')}`,
      address: Address.parse(s.address),
      protocol: 'xmpp',
      transport: 'handover',
      priority: s.priority,
      available: s.available,
      interested: false,
      ...(s.directed && { directed: new Set(s.directed) }),
      deliver: () => {},
      close: () => {},
    };
    await broker.presence
      .sessionEnded(gone)
      .catch((err: unknown) => this.log.warn({ err }, 'unavailable broadcast failed'));
  }

  private onMessage(m: { from: string; type: string; payload: unknown }): void {
    if (this.stopped) return;
    if (m.type === GIVEN) return this.settle((m.payload ?? {}) as GivenReply);
    if (m.type !== TAKE) return;
    const req = (m.payload ?? {}) as Partial<TakeRequest>;
    if (
      typeof req.id !== 'number' ||
      typeof req.previd !== 'string' ||
      typeof req.user !== 'string' ||
      typeof req.h !== 'number'
    )
      return;
    const { id, previd, user, h } = req;
    void this.local
      .give(previd, user, h)
      .then((r): GivenReply => ('error' in r ? { id, refusal: r } : { id, state: r }))
      .catch((err: unknown): GivenReply => {
        this.log.warn({ err }, 'resumption: handing over failed');
        return { id, refusal: { error: 'item-not-found' } };
      })
      .then((reply) =>
        this.broker.cluster.bus.send(m.from, GIVEN, reply).catch((err: unknown) => {
          this.log.warn({ err }, 'resumption: answer not sent; the session ends here');
          const queue = reply.state && this.check(reply.state, undefined);
          if (reply.state && queue) return this.orphan(reply.state, queue);
        }),
      );
  }
}

/** Restore the modules' parts on the adopting stream. */
export function restoreHandedParts(
  broker: Broker,
  conn: XmppConnection,
  parts: Record<string, unknown>,
): void {
  restoreParts(broker, conn, parts && typeof parts === 'object' ? parts : {});
}
