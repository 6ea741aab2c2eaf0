// About 660 lines, one class on purpose: the membership view (live, down, draining nodes) decides each
// room's home, and the request/event traffic to and from homes (and the requests held while a home cannot
// be reached, broker/room-hold.ts) must read that same view in the same turn (a view that moved under a
// request is what sends it on once). What crosses the bus is in room-wire.ts. Next split: the home's side
// (onCmd, run, toRemote, flush: about 130 lines) into a class that reads the view through RoomLocator.
import { Address } from './address.ts';
import type { Broker } from './broker.ts';
import { fromRecord, toRecord, type Envelope } from './envelope.ts';
import { BrokerError } from './errors.ts';
import type { HostHandler } from './hosts.ts';
import { RoomDirectory } from './room-directory.ts';
import { remoteDevice, rendezvous, roomGone, type RoomLocator } from './room-home.ts';
import { RoomHold, undelivered, type Held } from './room-hold.ts';
import {
  decodeEv,
  runOp,
  type EvTarget,
  type RoomCmd,
  type RoomEv,
  type RoomOp,
  type RoomReply,
  type Visit,
} from './room-wire.ts';
import { Room, type Device, type RoomEvent, type RoomService } from './rooms.ts';

export type { RoomOp } from './room-wire.ts';

/**
 * Rooms across nodes (docs/cluster.md, "Rooms"). Each room has one **home**
 * node that holds its live state (occupants, roles, the fan-out queue); its
 * persistent state (config, affiliations, subject, timeline) is in the
 * shared store. Requests about a room from a device of another node go to
 * the home over the bus ('room-cmd': an XMPP stanza as sent, or a
 * protocol-neutral operation for MQTT); the home's RoomService runs them
 * and its events for devices of other nodes go back as 'room-ev', one bus
 * message per event and node with that node's devices, rendered there by
 * that node's renderers. On one node the home is always this node and
 * nothing here changes the room service's behaviour.
 */

const CALL_TIMEOUT_MS = 10_000;
/** held requests are sent again at least this often (a home that answers again, or Redis back) */
const HOLD_RETRY_MS = 1000;
/** the cluster status (which nodes drain) is read at every fifth read of the live nodes: once a second */
const STATUS_EVERY = 5;
/** a request is passed on at most this often (a draining node passes on what was passed to it) */
const MAX_HOPS = 3;

export class RoomCluster implements RoomLocator {
  readonly self: string;
  private readonly broker: Broker;
  private readonly svc: RoomService;
  /** live nodes as last read from the bus; empty before the first read (then every room is homed here) */
  private live: string[] = [];
  /** nodes declared dead and still in `live` until the next read */
  private readonly down = new Set<string>();
  /** nodes that drain: they keep no room (their rooms move before their clients are sent away) */
  private draining = new Set<string>();
  /** nodes that said they drain ('node-draining'), until they leave the live nodes: the status read may lag */
  private readonly heardDraining = new Set<string>();
  private view = '';
  private reads = 0;
  private refreshing = false;
  private stanzaHandler?: (env: Envelope) => void | Promise<void>;
  /** home: handlers that take a room's stanza before the host handler (what a module takes on 'route:filter' where the room is local) */
  private interceptors: ((env: Envelope) => Promise<void> | undefined)[] = [];
  /** home: the node of each device of another node that sent a request here */
  private readonly deviceNode = new Map<string, string>();
  /** this node's devices in rooms homed elsewhere: device → room → visit */
  private readonly visits = new Map<string, Map<string, Visit>>();
  /** the nodes each device of this node sent joins to (told when its session ends) */
  private readonly homesOf = new Map<string, Set<string>>();
  /** home: per-room chain while the room is being loaded (keeps one origin's requests in order) */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly calls = new Map<
    number,
    { resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  private nextCall = 1;
  /** events for devices of other nodes, in order, flushed once per turn */
  private batch: { ev: RoomEvent; node: string; to: Device[] }[] = [];
  private flushing = false;
  private readonly encoded = new WeakMap<RoomEvent, Record<string, unknown>>();
  private timer?: NodeJS.Timeout;
  /** several nodes may share the store (a bus with a status: cluster/redis), even while only this one is live */
  private readonly clustered: boolean;
  /** requests held while their room's home cannot be reached (broker/room-hold.ts) */
  readonly hold: RoomHold;
  /** the rooms of every node, for listings (broker/room-directory.ts) */
  readonly directory: RoomDirectory;

  constructor(broker: Broker, svc: RoomService, refreshMs = 200) {
    this.broker = broker;
    this.svc = svc;
    this.self = broker.cluster.bus.nodeId;
    this.clustered = broker.cluster.bus.status !== undefined;
    broker.cluster.bus.onMessage((msg) => {
      if (msg.type === 'room-cmd') this.onCmd(msg.from, msg.payload as RoomCmd);
      else if (msg.type === 'room-ev') this.onEv(msg.from, msg.payload as RoomEv);
      else if (msg.type === 'room-reply') this.onReply(msg.payload as RoomReply);
      else if (msg.type === 'node-up') this.nodeUp((msg.payload as { node: string }).node);
      else if (msg.type === 'node-left') this.nodeLeft((msg.payload as { node: string }).node);
      else if (msg.type === 'node-draining')
        this.nodeDraining((msg.payload as { node: string }).node);
    });
    svc.remoteSink = (d, ev) => this.toRemote(d, ev);
    this.hold = new RoomHold(
      broker.cluster.roomHoldMs ?? 0,
      broker.cluster.roomHoldMax ?? 10_000,
      (local) => this.home(local),
      (room, from) => this.roomsGone((home, local) => local === room && home === from),
    );
    broker.cluster.bus.onReconnect?.(() => this.hold.retry());
    this.directory = new RoomDirectory(broker, svc, this);
    const tick = () => {
      this.hold.expire();
      this.hold.retry(HOLD_RETRY_MS);
      if (this.refreshing) return; // a slow read (loaded machine): no two at once, no older view after a newer one
      this.refreshing = true;
      void this.refresh().finally(() => (this.refreshing = false));
    };
    tick();
    this.timer = setInterval(tick, refreshMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.svc.remoteSink = undefined;
    this.hold.clear();
    this.directory.stop();
    for (const c of this.calls.values()) {
      clearTimeout(c.timer);
      c.reject(new BrokerError('service-unavailable', 'groupchat stopped'));
    }
    this.calls.clear();
  }

  home(local: string): string {
    const out = this.down.size || this.draining.size;
    const nodes = out
      ? this.live.filter((n) => !this.down.has(n) && !this.draining.has(n))
      : this.live;
    // every node draining: they still serve (until they stop)
    return rendezvous(local, nodes.length ? nodes : this.live) ?? this.self;
  }

  /**
   * Read the live nodes (and, every `statusEvery` reads, which of them
   * drain); a room live here whose home moved away is evicted: its
   * occupants get 332 and rejoin at the new home.
   */
  private async refresh(): Promise<void> {
    const bus = this.broker.cluster.bus;
    let nodes: string[];
    let draining = this.draining;
    try {
      nodes = await bus.members();
      if (bus.status && this.reads++ % STATUS_EVERY === 0) {
        const st = await bus.status();
        if (st.connected)
          draining = new Set(st.nodes.filter((n) => n.state === 'draining').map((n) => n.id));
      }
    } catch {
      return;
    }
    if (nodes.length === 0) return; // the backend is away: keep the last view
    for (const n of this.heardDraining) if (!nodes.includes(n)) this.heardDraining.delete(n);
    if (bus.draining || this.heardDraining.size)
      draining = new Set([
        ...draining,
        ...this.heardDraining,
        ...(bus.draining ? [this.self] : []),
      ]); // at once
    for (const n of this.down) if (!nodes.includes(n)) this.down.delete(n);
    const sorted = [...nodes].sort();
    const view = `${sorted.join('\n')}|${[...draining].sort().join('\n')}`;
    if (view === this.view) return;
    this.view = view;
    this.live = sorted;
    this.draining = draining;
    for (const room of this.svc.list()) {
      if (room.occupants.size > 0 && this.home(room.local) !== this.self) {
        this.broker.log.info({ room: room.jid.toString() }, 'room homed on another node now');
        this.svc.evict(room);
      }
    }
    this.hold.retry();
  }

  // ---- requests ----

  /** The host handler of the rooms' domain: stanzas to a room go to its home ('room-cmd'), the rest stays here. */
  host(handler: (env: Envelope) => void | Promise<void>): HostHandler {
    this.stanzaHandler = handler;
    return (env) => {
      const local = env.to.local;
      if (!local) return handler(env); // the service itself (disco, items)
      const held = this.held(local, env.from.toString(), {
        // a join (or presence update) [XEP-0045 7.2]
        join: env.kind === 'presence' && env.type === undefined && !!env.to.resource,
        dispatch: () => this.stanzaTo(local, env, handler),
        fail: (condition, text) => void this.broker.router.bounce(env, condition, text),
      });
      if (this.hold.add(held)) return; // behind the room's held requests
      const home = this.home(local);
      if (home === this.self) return this.atHome(local, () => handler(env));
      return this.stanzaTo(local, env, handler).catch((err: unknown) => {
        if (undelivered(err) && this.hold.add(held, home)) return;
        return this.broker.router.bounce(env, 'service-unavailable', (err as Error).message);
      });
    };
  }

  private held(room: string, device: string, h: Pick<Held, 'join' | 'dispatch' | 'fail'>): Held {
    return { room, device, seq: this.hold.seq(), expires: Date.now() + this.hold.holdMs, ...h };
  }

  /** A stanza to a room, sent to its home as this node sees it now (or run here); rejects with the bus error. */
  private stanzaTo(
    local: string,
    env: Envelope,
    handler: (env: Envelope) => void | Promise<void>,
  ): Promise<void> {
    const home = this.home(local);
    if (home === this.self)
      return Promise.resolve()
        .then(() => this.atHome(local, () => handler(env)))
        .catch((err: unknown) => {
          this.broker.log.error({ err, room: local }, 'held room request failed');
        });
    // A join (or presence update) [XEP-0045 7.2]: remembered, for the session's end and the home's death.
    if (env.kind === 'presence' && env.type === undefined && env.to.resource)
      this.visit(env.from.toString(), local, home);
    return this.send(home, {
      room: local,
      device: env.from.toString(),
      op: { t: 'stanza', env: toRecord(env) },
    });
  }

  /**
   * A stanza to a room that a module takes on 'route:filter' where the room
   * is homed (XEP-0425 moderation): at the home, stanzas from other nodes
   * pass `take` first; it returns a promise when it took the stanza.
   * Returns the remover.
   */
  intercept(take: (env: Envelope) => Promise<void> | undefined): () => void {
    this.interceptors = [...this.interceptors, take];
    return () => {
      this.interceptors = this.interceptors.filter((t) => t !== take);
    };
  }

  /** The live nodes as this node sees them (those declared dead left out); empty before the first read. */
  nodes(): string[] {
    return this.live.filter((n) => !this.down.has(n));
  }

  /** Is this room homed on this node (by this node's view)? */
  isHome(local: string): boolean {
    return this.home(local) === this.self;
  }

  /**
   * A protocol-neutral operation of a device on a room (MQTT), run at the
   * room's home; resolves when done there, rejects with its BrokerError.
   * `onHeld`: called when it waits behind the room's held requests (the
   * caller may go on; the outcome still settles the promise).
   */
  async call(
    local: string,
    device: Address,
    op: Exclude<RoomOp, { t: 'stanza' }>,
    onHeld?: () => void,
  ): Promise<void> {
    const key = device.toString();
    if (!this.hold.holds(local) && this.home(local) === this.self)
      return this.atHome(local, () => this.run(local, key, op));
    return new Promise<void>((resolve, reject) => {
      const held = this.held(local, key, {
        join: op.t === 'join',
        dispatch: () => this.callAt(local, key, op, resolve, reject),
        fail: (condition, text) => reject(new BrokerError(condition, text)),
      });
      if (this.hold.add(held)) return onHeld?.();
      const home = this.home(local);
      held.dispatch().catch((err: unknown) => {
        if (undelivered(err) && this.hold.add(held, home)) return onHeld?.();
        reject(new BrokerError('service-unavailable', (err as Error).message));
      });
    });
  }

  /**
   * Would the room's home admit this device's join under `nick` (members-only,
   * ban, password, nick taken, full)? False when it says no; true when it says
   * yes, cannot be reached or does not answer within the remote timeout (the
   * join itself then tells, on `chat/{me}`). Never held.
   */
  async admits(local: string, device: Address, nick: string, password?: string): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      this.callAt(
        local,
        device.toString(),
        { t: 'admit', nick, password },
        () => resolve(true),
        (err) =>
          resolve(!(err instanceof BrokerError) || err.condition === 'remote-server-timeout'),
      ).catch(() => resolve(true)); // the home unreachable: the join (held) tells
    });
  }

  /**
   * An operation sent to the room's home as this node sees it now (or run
   * here); the returned promise is the send's (rejects with the bus error),
   * the outcome goes to `resolve`/`reject` (the home's 'room-reply').
   */
  private callAt(
    local: string,
    key: string,
    op: Exclude<RoomOp, { t: 'stanza' }>,
    resolve: () => void,
    reject: (e: Error) => void,
  ): Promise<void> {
    const home = this.home(local);
    if (home === this.self) {
      void Promise.resolve()
        .then(() => this.atHome(local, () => this.run(local, key, op)))
        .then(resolve, reject);
      return Promise.resolve();
    }
    if (op.t === 'join') this.visit(key, local, home);
    const id = this.nextCall++;
    const timer = setTimeout(() => {
      this.calls.delete(id);
      reject(new BrokerError('remote-server-timeout', "the room's node did not answer"));
    }, CALL_TIMEOUT_MS);
    this.calls.set(id, { resolve, reject, timer });
    return this.send(home, { room: local, device: key, id, op }).catch((err: unknown) => {
      const c = this.calls.get(id);
      if (c) {
        clearTimeout(c.timer);
        this.calls.delete(id);
      }
      throw err;
    });
  }

  private send(node: string, cmd: RoomCmd): Promise<void> {
    return this.broker.cluster.bus.send(node, 'room-cmd', cmd);
  }

  private visit(device: string, local: string, home: string): void {
    let m = this.visits.get(device);
    if (!m) this.visits.set(device, (m = new Map()));
    let homes = this.homesOf.get(device);
    if (!homes) this.homesOf.set(device, (homes = new Set()));
    homes.add(home);
    const v = m.get(local);
    if (!v || v.home !== home) m.set(local, { home });
  }

  /**
   * Run a request at the home. While the room is not live here (not loaded,
   * or no occupant), its persistent state is read again from the store first
   * (another home may have changed it), and the room's requests wait in one
   * chain so they keep their order. One node: straight through.
   */
  private atHome(local: string, fn: () => void | Promise<void>): void | Promise<void> {
    const pending = this.chains.get(local);
    const room = this.svc.get(local);
    if (!pending && (!this.clustered || (room && room.occupants.size > 0))) return fn();
    const p = (pending ?? Promise.resolve())
      .then(() => this.svc.reload(local))
      .then(fn)
      .finally(() => {
        if (this.chains.get(local) === p) this.chains.delete(local);
      });
    const chained = p.catch(() => {});
    this.chains.set(local, chained);
    return p;
  }

  private onCmd(from: string, cmd: RoomCmd): void {
    if (cmd.op.t === 'gone' && !cmd.room) {
      this.deviceNode.delete(cmd.device);
      return;
    }
    const origin = cmd.origin ?? from;
    // The sender's view of the live nodes was older than this node's (one heartbeat after a change):
    // pass the request on to the home this node sees, once (two nodes that disagree never bounce it back and forth).
    // A draining node passes on even what was passed to it (by a node that had not yet heard of the drain): it
    // homes no room, and a room it took now would stay split from its new home until it exits (it evicts only
    // when its view changes). The next node runs it where it lands; MAX_HOPS bounds two draining nodes.
    const home = this.home(cmd.room);
    const hops = cmd.hops ?? 0;
    const passOn = hops === 0 || (this.broker.cluster.bus.draining === true && hops < MAX_HOPS);
    if (home !== this.self && passOn && cmd.op.t !== 'gone') {
      this.send(home, { ...cmd, origin, hops: hops + 1 }).catch(() =>
        this.onCmd(from, { ...cmd, origin, hops: MAX_HOPS }),
      );
      return;
    }
    // Events go only to occupants: the node of a device that asks to join (forgotten at its 'gone').
    const joins =
      cmd.op.t === 'join' ||
      (cmd.op.t === 'stanza' && cmd.op.env.kind === 'presence' && cmd.op.env.type === undefined);
    if (origin !== this.self && joins) this.deviceNode.set(cmd.device, origin);
    const reply = (error?: RoomReply['error']) => {
      if (cmd.id === undefined) return;
      this.broker.cluster.bus
        .send(origin, 'room-reply', { id: cmd.id, error } satisfies RoomReply)
        .catch(() => {});
    };
    let p: void | Promise<void>;
    try {
      p = this.atHome(cmd.room, () => this.run(cmd.room, cmd.device, cmd.op));
    } catch (err) {
      p = Promise.reject(err);
    }
    Promise.resolve(p).then(
      () => reply(),
      (err: unknown) => {
        if (err instanceof BrokerError) return reply({ condition: err.condition, text: err.text });
        this.broker.log.error({ err, room: cmd.room }, 'room request from another node failed');
        reply({ condition: 'internal-server-error' });
      },
    );
  }

  /** One request at the home (the room service's own calls, as on one node). */
  private async run(local: string, device: string, op: RoomOp): Promise<void> {
    if (op.t === 'gone') this.deviceNode.delete(device);
    if (op.t !== 'stanza') return runOp(this.svc, local, device, op);
    const env = fromRecord(op.env, Address.parse);
    for (const take of this.interceptors) {
      const p = take(env);
      if (p) return p;
    }
    await this.stanzaHandler?.(env);
  }

  private onReply(r: RoomReply): void {
    const c = this.calls.get(r.id);
    if (!c) return;
    clearTimeout(c.timer);
    this.calls.delete(r.id);
    if (r.error) c.reject(new BrokerError(r.error.condition, r.error.text));
    else c.resolve();
  }

  // ---- events ----

  /** Home: an event for a device of another node; sent once per event and node at the end of the turn. */
  private toRemote(d: Device, ev: RoomEvent): void {
    const node = this.deviceNode.get(d.key);
    if (!node || node === this.self) return; // its session ended here meanwhile
    const last = this.batch[this.batch.length - 1];
    if (last && last.ev === ev && last.node === node) last.to.push(d);
    else this.batch.push({ ev, node, to: [d] });
    if (!this.flushing) {
      this.flushing = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.flushing = false;
    const batch = this.batch;
    this.batch = [];
    for (const { ev, node, to } of batch) {
      const room = ev.room;
      const targets = to.map((d): EvTarget => {
        const occ = room.occupantOf(d.key);
        return { key: d.key, nick: occ?.nick, role: occ?.role, echo: d.echo };
      });
      const payload: RoomEv = {
        // the config as renderers read it (whois); the password stays at the home
        room: {
          local: room.local,
          config: { ...room.config, password: '' },
          avatarHash: room.avatarHash,
        },
        ev: this.encode(ev),
        to: targets,
      };
      this.broker.cluster.bus.send(node, 'room-ev', payload).catch((err: unknown) => {
        this.broker.log.debug(
          { err: (err as Error)?.message, node },
          'room event to a node failed',
        );
      });
    }
  }

  private encode(ev: RoomEvent): Record<string, unknown> {
    let e = this.encoded.get(ev);
    if (!e) {
      const { room: _room, ...rest } = ev;
      e = rest as Record<string, unknown>;
      if (ev.kind === 'presence') e = { ...e, self: [...ev.self] };
      this.encoded.set(ev, e);
    }
    return e;
  }

  /** A node: events from a room's home for devices here, rendered by this node's renderers. */
  private onEv(from: string, p: RoomEv): void {
    const { room, devices, ev } = decodeEv(p, this.svc.host);
    for (const d of devices) {
      if (ev.kind === 'presence' && ev.self.has(d.key)) this.track(d.key, room, ev, from);
      this.svc.renderLocal(d, ev);
    }
  }

  /**
   * A device's own presence in a room homed elsewhere: its nick, told on the
   * home's failure; none once it left (the visit stays until the session
   * ends, so the home hears of the end and forgets the device's node).
   */
  private track(
    device: string,
    room: Room,
    ev: Extract<RoomEvent, { kind: 'presence' }>,
    home: string,
  ): void {
    const v = this.visits.get(device)?.get(room.local);
    if (!v) return;
    if (ev.available) {
      // The node that sent this is the home, wherever the join was sent (a node passes on a request for a
      // room it is not home of): its death moves the room, and the session's end must reach it.
      if (v.home !== home) {
        v.home = home;
        this.homesOf.get(device)?.add(home);
      }
      v.nick = ev.nick;
      v.config = room.config;
    } else if (ev.newNick === undefined) {
      v.nick = undefined;
      // the home sent it away as it stopped or the room moved (332): its held requests wait for its rejoin
      if (ev.reasons.includes(332)) this.hold.evicted(room.local, device);
    }
  }

  // ---- sessions and nodes ----

  /** A device of this node ended: the homes of the rooms it was in take it out. */
  deviceGone(device: string): void {
    const m = this.visits.get(device);
    const homes = this.homesOf.get(device);
    this.visits.delete(device);
    this.homesOf.delete(device);
    this.hold.forget(device);
    for (const [local, v] of m ?? []) {
      homes?.delete(v.home);
      this.send(v.home, { room: local, device, op: { t: 'gone' } }).catch(() => {});
    }
    // Homes of rooms that moved since: only to forget the device's node there.
    for (const home of homes ?? [])
      this.send(home, { room: '', device, op: { t: 'gone' } }).catch(() => {});
  }

  /**
   * A node was declared dead. Its devices leave the rooms homed here (the
   * rooms module does that on every node); this node's devices in rooms
   * homed there are told the room went away, as for a service shutting down
   * [XEP-0045 7.2.11]: their own unavailable presence with status 332. They
   * rejoin at the room's new home, which reads its state from the store.
   */
  nodeDown(node: string): void {
    if (node === this.self) return;
    this.down.add(node);
    for (const id of [...this.deviceNode.keys()])
      if (this.deviceNode.get(id) === node) this.deviceNode.delete(id);
    for (const homes of this.homesOf.values()) homes.delete(node);
    this.roomsGone((home) => home === node);
    this.hold.retry(); // at the rooms' next homes (their senders told 332 wait for their rejoin)
  }

  /**
   * A node declared dead is listed again (restarted, or back after a cut):
   * it homes rooms again, so rooms live here that are now its own move
   * (332) at the next read, even when no read of the live nodes saw it
   * missing.
   */
  nodeUp(node: string): void {
    if (node === this.self || !this.down.delete(node)) return;
    this.view = '';
    this.hold.retry();
  }

  /**
   * A node drains (it said so at once; the cluster status tells about a
   * second later): no room is homed there from now on, so no request goes
   * there from now on, before its rooms' occupants are sent away (332) and
   * rejoin. The bus brings this before any event the node sends after it.
   */
  private nodeDraining(node: string): void {
    this.heardDraining.add(node);
    if (node === this.self || this.draining.has(node) || !this.live.includes(node)) return;
    this.draining = new Set([...this.draining, node]);
    this.hold.retry();
  }

  /**
   * A node stops (it said so before it left the live nodes): no request goes
   * there from now on, though this node's next read may still list it.
   */
  nodeLeft(node: string): void {
    if (node === this.self) return;
    this.down.add(node);
    this.view = '';
    this.hold.retry();
  }

  /**
   * This node was declared dead while cut off from the others and hears it once the link
   * heals: the homes elsewhere took its devices out of their rooms when they reaped it, so
   * those devices are told the room went away (332), as when a home dies, and rejoin.
   */
  reapedSelf(): void {
    this.roomsGone((home) => home !== this.self);
  }

  /**
   * This node's devices in the rooms whose home `gone` names leave them with
   * 332 [XEP-0045 7.2.11]; their held requests there wait for their rejoin.
   */
  private roomsGone(gone: (home: string, local: string) => boolean): void {
    for (const [device, m] of [...this.visits]) {
      for (const [local, v] of [...m]) {
        if (!gone(v.home, local)) continue;
        m.delete(local);
        if (v.nick === undefined || !v.config) continue;
        this.hold.evicted(local, device);
        const d = remoteDevice(device);
        this.svc.renderLocal(
          d,
          roomGone(new Room(local, this.svc.host, v.config, '', 0), v.nick, d),
        );
      }
      if (m.size === 0) this.visits.delete(device);
    }
  }
}

const clusters = new WeakMap<Broker, RoomCluster>();

/** The rooms' cluster seam of a broker, when the `rooms` module is loaded. */
export function roomCluster(broker: Broker): RoomCluster | undefined {
  return clusters.get(broker);
}

/** For the `rooms` module only. */
export function setRoomCluster(broker: Broker, c: RoomCluster | undefined): void {
  if (c) clusters.set(broker, c);
  else clusters.delete(broker);
}
