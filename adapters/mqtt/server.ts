// First: mqtt-packet (loaded by aedes below) must find `debug` already quieted.
import { loadedTooEarly } from './quiet-debug.ts';
import net from 'node:net';
import tls, { type SecureContextOptions } from 'node:tls';
import { Aedes, type Client, type ConnackPacket, type Subscription } from 'aedes';
import { createWebSocketStream, type WebSocket } from 'ws';
import { Address, closeReason, roomService, snippet, type Broker } from '../../broker/index.ts';
import { validateAcl } from './acl.ts';
import { coalesceWrites } from './coalesce.ts';
import { authenticate, infoOf, preConnect } from './auth.ts';
import {
  authorizeForward,
  authorizePublish,
  authorizeSubscribe,
  REPUBLISHED,
  type Republished,
} from './authorize.ts';
import { classifyError, type AedesClient, type ConnInfo, type MqttContext } from './context.ts';
import { CONNACK_UNACCEPTABLE_PROTOCOL, unsupportedProtocolLevel, WireGuard } from './guard.ts';
import { presenceJson } from './mapping.ts';
import { readIntoSharedBuffer } from './read-buffer.ts';
import { defaultMqttOptions, type MqttOptions } from './options.ts';
import { boundOutbound, markFanout } from './outbound.ts';
import { MemoryRetainedStore, RetainedIndex } from './retained.ts';
import {
  presenceShown,
  rejoinRestored,
  restoredFilters,
  renderRoomEvent,
  roomSubscribed,
  roomTopic,
  roomUnsubscribed,
} from './rooms.ts';
import { MqttSession } from './session.ts';
import { answerCleanSessionAcks } from './persistence.ts';
import { StoredSessions } from './stored-sessions.ts';
import { followUnread, unreadSnapshot } from './unread.ts';
import { SysStats } from './sys.ts';
import { isLiteral, reserved } from './topics.ts';
import { fireStaleWills } from './wills.ts';
import { listen } from '../listen.ts';

/**
 * The MQTT listeners (TCP 1883, TLS 8883) on aedes, sharing accounts,
 * sessions, presence, the timeline and the offline queue with XMPP.
 * Steps of a connection: accept (limits, packet size guard) → preConnect →
 * authenticate → CONNACK → session bound + available presence → … →
 * clientDisconnect → unbound (unavailable presence, will).
 */
export class MqttServer {
  readonly opts: MqttOptions;
  /** bound ports, after start() */
  readonly ports: { tcp?: number; tls?: number } = {};
  private readonly broker: Broker;
  /** A failed accept (EMFILE…): logged and counted; the listener keeps accepting. */
  private readonly acceptFailed = (err: Error): void => {
    this.broker.log.error({ err }, 'accept failed');
    this.broker.metrics.error('accept', err.message);
  };
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly perIp = new Map<string, number>();
  private readonly pending = new Set<Promise<void>>();
  private ctx?: MqttContext;
  private sys?: SysStats;
  private offRemoved?: () => void;
  private offRenderer?: () => void;
  private offUnread?: () => void;

  constructor(broker: Broker, opts: Partial<MqttOptions> = {}) {
    this.broker = broker;
    this.opts = { ...defaultMqttOptions, ...opts };
  }

  /** The aedes instance, after start(). */
  get aedes(): Aedes {
    if (!this.ctx) throw new Error('MqttServer not started');
    return this.ctx.aedes;
  }

  async start(): Promise<void> {
    const errors = validateAcl(this.opts.acl);
    if (errors.length) throw new Error(`mqtt.${errors.join('\nmqtt.')}`);
    const o = this.opts;
    const ctx = {
      broker: this.broker,
      opts: o,
      log: this.broker.log.child({ adapter: 'mqtt' }),
      infos: new WeakMap(),
      sessions: new WeakMap(),
      stats: { received: 0, sent: 0, denied: 0, dropped: 0 },
    } as Omit<MqttContext, 'aedes'> as MqttContext;
    // Persistent sessions: stored queues and sessions per account bounded, a clean session discards the queue (stored-sessions.ts).
    ctx.stored = new StoredSessions(
      o,
      o.sessionEraser,
      (id) =>
        !!(ctx.aedes as unknown as { clients: Record<string, unknown> } | undefined)?.clients[id],
      {
        dropped: (id, first) => {
          ctx.stats.dropped++;
          if (first)
            ctx.log.info(
              { client: id, max: o.maxOfflineQueuePerClient },
              'mqtt offline queue full: QoS 1/2 messages dropped for this client (maxOfflineQueuePerClient)',
            );
        },
      },
      ctx.log,
    );
    await ctx.stored.load();
    const persistence = answerCleanSessionAcks(o.persistence);
    if (persistence) ctx.stored.install(persistence as object);
    ctx.aedes = await Aedes.createBroker({
      persistence,
      mq: o.mq,
      ...(o.brokerId && { id: o.brokerId }),
      concurrency: o.concurrency,
      heartbeatInterval: o.heartbeatIntervalMs,
      connectTimeout: o.connectTimeoutMs,
      drainTimeout: o.drainTimeoutMs,
      queueLimit: o.maxQueuedBeforeConnack,
      maxInflightInbound: o.maxInflightInbound,
      maxClientsIdLength: 65_535, // checked in authenticate, on the id the client sent (auth.ts)
      maxTopicLevels: o.maxTopicLevels,
      preConnect: preConnect(ctx),
      authenticate: authenticate(ctx),
      authorizePublish: authorizePublish(ctx),
      authorizeSubscribe: authorizeSubscribe(ctx),
      authorizeForward: authorizeForward(ctx),
      published: (_packet, client, done) => {
        if (client && !(_packet as Republished)[REPUBLISHED]) ctx.stats.received++;
        done(null);
      },
    });
    markFanout(ctx.aedes);
    // Retained messages through an index by topic, with limits (retained.ts).
    ctx.retained = new RetainedIndex(o.retainedStore ?? new MemoryRetainedStore(), o, ctx.log);
    await ctx.retained.load();
    ctx.retained.install((ctx.aedes as unknown as { persistence: object }).persistence);
    // A cluster's fan-out: the retained indexes of all nodes follow each other (retained.ts).
    if (o.mq && o.retainedShared) ctx.retained.follow(o.mq as never, ctx.aedes.id);
    this.ctx = ctx;
    const svc = roomService(this.broker);
    if (svc) this.offRenderer = svc.setRenderer('mqtt', renderRoomEvent, presenceShown);
    // A removed account leaves no MQTT state for the next account of that name (issue 20, item 9).
    this.offRemoved = this.broker.hooks.on('account:removed', (username) =>
      this.forgetAccount(username),
    );
    this.offUnread = followUnread(ctx); // unread/{me} (unread.ts)
    await this.forgetRemovedAccounts();
    if (loadedTooEarly.length)
      ctx.log.warn(
        { modules: loadedTooEarly },
        'mqtt-packet was loaded before its debug loggers could be quieted',
      );
    this.wire(ctx);
    if (o.fireStaleWillsOnStart) await fireStaleWills(ctx.aedes, ctx.log, o.brokerId);
    if (o.tcp) {
      // pauseOnConnect: nothing reads until the socket that will read owns the handle
      const srv = net.createServer({ pauseOnConnect: o.sharedReadBuffer }, (s) =>
        this.accept(o.sharedReadBuffer ? readIntoSharedBuffer(s) : s, 'tcp'),
      );
      this.ports.tcp = await listen(srv, o.tcp.host, o.tcp.port, this.acceptFailed);
      this.servers.push(srv);
    }
    if (o.tls && o.certificate) {
      // TLS from the first byte: MQTT has no STARTTLS, so no plaintext read before the handshake can leak into the session.
      // A handshake that does not finish in time is aborted (tlsClientError).
      const srv = tls.createServer(
        { ...o.certificate, handshakeTimeout: o.tlsHandshakeTimeoutMs },
        (s) => this.accept(s, 'tls', true),
      );
      // Counted at TCP accept, before the handshake: pending handshakes count against the limits too.
      srv.on('connection', (raw: net.Socket) => {
        if (!this.admit(raw)) raw.destroy();
      });
      srv.on('tlsClientError', (err, sock) => {
        ctx.log.debug({ err: err.message }, 'mqtt TLS handshake failed');
        sock.destroy(); // Node leaves the socket open after a handshake timeout once this event has a listener
      });
      this.ports.tls = await listen(srv, o.tls.host, o.tls.port, this.acceptFailed);
      this.servers.push(srv);
    }
    this.sys = new SysStats(
      ctx.aedes,
      ctx.stats,
      ctx.retained,
      `parley (aedes ${(ctx.aedes as unknown as { version: string }).version})`,
    );
    this.sys.start(o.sysIntervalMs);
  }

  /** New certificate or TLS policy (reload, SIGHUP) for the next handshakes; connected clients keep theirs. */
  setTls(certificate: SecureContextOptions): void {
    this.opts.certificate = certificate;
    for (const srv of this.servers)
      if (srv instanceof tls.Server) srv.setSecureContext(certificate);
  }

  /** Close listeners and clients (their sessions unbind, their wills fire), then aedes. */
  async stop(): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) return;
    this.sys?.stop();
    this.offRemoved?.();
    this.offRenderer?.();
    this.offUnread?.();
    for (const srv of this.servers) srv.close();
    await new Promise<void>((r) => ctx.aedes.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await Promise.all(
      this.servers.map((s) => new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()))),
    );
    this.servers.length = 0;
    // Let the unbinds the closes started reach the core, and the wills they fired reach the store.
    for (let i = 0; i < 100 && this.pending.size > 0; i++) await Promise.all([...this.pending]);
    await new Promise((r) => setTimeout(r, 50));
    this.ctx = undefined;
  }

  connectionCount(): number {
    return this.sockets.size;
  }

  /** Current `$SYS/broker/...` values. */
  stats(): Record<string, string> {
    return this.sys?.values() ?? {};
  }

  /** Hand a stream (TCP, TLS, later WebSocket) to aedes, with the adapter's limits. */
  handle(stream: net.Socket, transport: ConnInfo['transport']): void {
    this.accept(stream, transport);
  }

  /** MQTT over WebSocket (`Sec-WebSocket-Protocol: mqtt`): the same aedes, limits, auth and ACL. */
  acceptWebSocket(ws: WebSocket, info: { ip: string; secure: boolean }): void {
    const stream = createWebSocketStream(ws);
    // aedes and the accounting below read these socket fields.
    Object.assign(stream, { remoteAddress: info.ip, setNoDelay: () => stream });
    stream.on('error', () => stream.destroy());
    this.accept(stream as unknown as net.Socket, info.secure ? 'wss' : 'ws');
  }

  /**
   * Count a new connection against maxConnections and maxConnectionsPerIp
   * (false: over a limit, not counted); it is uncounted when it closes.
   */
  private admit(sock: net.Socket): boolean {
    const ip = sock.remoteAddress ?? 'unknown';
    if (
      this.sockets.size >= this.opts.maxConnections ||
      (this.perIp.get(ip) ?? 0) >= this.opts.maxConnectionsPerIp
    ) {
      this.ctx?.log.info({ ip }, 'mqtt connection refused: too many connections'); // limits: maxConnections, maxConnectionsPerIp
      return false;
    }
    this.sockets.add(sock);
    this.perIp.set(ip, (this.perIp.get(ip) ?? 0) + 1);
    sock.once('close', () => {
      this.sockets.delete(sock);
      const n = (this.perIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, n);
    });
    return true;
  }

  /** `admitted`: already counted at TCP accept (TLS, before its handshake). */
  private accept(sock: net.Socket, transport: ConnInfo['transport'], admitted = false): void {
    const ctx = this.ctx;
    if (!ctx) return void sock.destroy();
    const ip = sock.remoteAddress ?? 'unknown';
    if (!admitted && !this.admit(sock)) return void sock.destroy();
    if (this.opts.tcpNoDelay) sock.setNoDelay(true);
    if (transport === 'tcp' || transport === 'tls') coalesceWrites(sock);
    this.broker.metrics.connection('mqtt', transport, 1);
    const client = ctx.aedes.handle(sock);
    const info: ConnInfo = {
      transport,
      ip,
      clientId: '',
      protocolVersion: 4,
      clean: true,
      keepalive: 0,
    };
    ctx.infos.set(client, info);
    // One slow subscriber only slows itself: a bounded queue of its own (outbound.ts).
    boundOutbound(client, this.opts, {
      dropped: (first) => {
        ctx.stats.dropped++;
        if (first)
          ctx.log.info(
            { ip, client: info.clientId },
            'mqtt subscriber too slow: QoS 0 messages dropped (maxQueuedMessages, maxQueuedBytes)',
          );
      },
      overflow: (text) => {
        info.closeKind ??= 'policy-violation';
        info.closeText ??= text;
        ctx.log.info(
          { ip, client: info.clientId, text },
          'mqtt subscriber too slow; connection closed',
        );
      },
    });
    // Listening after aedes' 'readable' listener: 'data' then only reports what aedes reads.
    const guard = new WireGuard(this.opts.maxPacketSize);
    let first = true;
    sock.on('data', (chunk: Buffer) => {
      if (first && unsupportedProtocolLevel(chunk)) {
        info.closeKind = 'unsupported-version';
        sock.end(CONNACK_UNACCEPTABLE_PROTOCOL); // [MQTT-3.1.2-2] answer 0x01, then disconnect
        return;
      }
      first = false;
      const before = guard.packets;
      const ok = guard.push(chunk);
      for (let n = guard.packets - before; n > 0; n--) this.broker.metrics.traffic('mqtt', 'in');
      if (ok) return;
      info.closeKind ??= guard.failure!.kind;
      info.closeText ??= guard.failure!.text;
      ctx.log.info(
        { ip, client: info.clientId, text: guard.failure!.text },
        'bad mqtt packet; connection closed',
      );
      sock.destroy();
    });
    sock.once('close', () => {
      const kind =
        info.closeKind ??
        ((client as AedesClient)._disconnected ? 'client-closed' : 'socket-error');
      this.broker.metrics.connection('mqtt', transport, -1);
      this.broker.metrics.closed('mqtt', kind);
      ctx.log.debug(
        { ip, client: info.clientId, reason: kind, text: info.closeText },
        'mqtt connection closed',
      );
    });
  }

  /**
   * Forget everything MQTT keeps for an account: its connections are closed
   * (wills not published), its persistent sessions (subscriptions, queued
   * QoS 1/2 messages, stored wills, for every client id) and the retained
   * messages it published are erased. A new account of the same name then
   * starts with `sessionPresent` 0 [MQTT-3.2.2-3].
   */
  async forgetAccount(username: string): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) return;
    let local: string;
    try {
      local = Address.of(username, this.broker.domain).local;
    } catch {
      return;
    }
    const prefix = `${local}/`;
    const clients = (
      ctx.aedes as unknown as {
        clients: Record<string, AedesClient & { will: unknown; _will: unknown }>;
      }
    ).clients;
    const closing: Promise<void>[] = [];
    for (const id in clients) {
      if (!id.startsWith(prefix)) continue;
      const c = clients[id];
      c.will = null; // the account is gone: nothing is published in its name
      c._will = null;
      const info = infoOf(ctx, c);
      info.closeKind ??= 'not-authorized';
      info.closeText ??= 'account removed';
      closing.push(new Promise<void>((r) => c.close(() => r())));
    }
    await Promise.all(closing);
    const persistence = (
      ctx.aedes as unknown as { persistence: Record<string, (...a: unknown[]) => Promise<unknown>> }
    ).persistence;
    let ids: string[];
    if (this.opts.sessionEraser) ids = await this.opts.sessionEraser.erase(local);
    else {
      // No eraser (in-memory persistence): what the ids of the closed connections hold.
      ids = Object.keys(clients).filter((id) => id.startsWith(prefix));
      for (const id of ids) {
        await persistence.cleanSubscriptions({ id }).catch(() => {});
        await persistence.delWill({ id, brokerId: ctx.aedes.id }).catch(() => {});
      }
    }
    ctx.stored?.forgetUser(local);
    const retained = await ctx.retained.removeOwner(local);
    ctx.log.info(
      { user: local, sessions: ids.length, retained },
      'mqtt state of a removed account erased',
    );
  }

  /** At start: state left by accounts removed while this listener was not running (CLI on a stopped node). */
  private async forgetRemovedAccounts(): Promise<void> {
    const ctx = this.ctx!;
    const users = new Set([
      ...((await this.opts.sessionEraser?.users()) ?? []),
      ...ctx.retained.owners(),
    ]);
    for (const u of users) {
      if (u === '' || u.startsWith('@')) continue; // the broker's own, anonymous clients
      if (!(await this.broker.accounts.exists(u))) await this.forgetAccount(u);
    }
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    p.finally(() => this.pending.delete(p)).catch(() => {});
  }

  private wire(ctx: MqttContext): void {
    const a = ctx.aedes;
    a.on('connackSent', (packet: ConnackPacket, client: Client) => {
      const info = infoOf(ctx, client);
      if (packet.returnCode !== 0 || !info.address || client.closed) return;
      // From here on the client may receive packets: bind and say available [RFC6121 4.2].
      const session = new MqttSession(ctx, client as AedesClient, info.address, info.transport);
      ctx.sessions.set(client, session);
      // Taken now: a SUBSCRIBE of this connection may land before the queue gets here, and joins itself.
      const restored = restoredFilters(client);
      session.enqueue(async () => {
        await session.start();
        await rejoinRestored(ctx, session, restored);
      });
    });
    a.on('clientDisconnect', (client: Client) => {
      const session = ctx.sessions.get(client);
      if (!session) return;
      const info = infoOf(ctx, client);
      const kind =
        info.closeKind ??
        ((client as AedesClient)._disconnected ? 'client-closed' : 'socket-error');
      const text =
        info.closeText ??
        (kind === 'socket-error' ? 'connection lost without DISCONNECT' : undefined);
      this.track(session.run(() => session.end(closeReason(kind, text))).catch(() => {}));
    });
    a.on('subscribe', (subs: Subscription[], client: Client) => {
      const session = ctx.sessions.get(client);
      if (!session) return;
      session.enqueue(async () => {
        await session.subscriptionsChanged();
        for (const s of subs)
          if ((s.qos as number) !== 128) await this.presenceSnapshot(session, s);
        for (const s of subs) await unreadSnapshot(ctx, session, s);
        for (const s of subs) {
          const rt = roomTopic(s.topic);
          if ((s.qos as number) !== 128 && rt && rt !== 'invalid')
            await roomSubscribed(ctx, session, rt); // join after the SUBACK
        }
      });
    });
    a.on('unsubscribe', (topics: string[], client: Client) => {
      const filters = ctx.infos.get(client)?.filters;
      if (filters) for (const t of topics) filters.delete(t);
      const session = ctx.sessions.get(client);
      if (session) {
        for (const t of topics) {
          const rt = roomTopic(t);
          if (rt && rt !== 'invalid') roomUnsubscribed(ctx, session, rt); // leave
        }
        session.enqueue(() => session.subscriptionsChanged());
      }
    });
    a.on('keepaliveTimeout', (client: Client) => {
      infoOf(ctx, client).closeKind ??= 'idle-timeout'; // [MQTT-3.1.2-24]
    });
    const onError = (client: Client, err: Error): void => {
      const info = infoOf(ctx, client);
      const c = classifyError(err);
      info.closeKind ??= c.kind;
      info.closeText ??= c.text;
      ctx.log.debug(
        { client: info.clientId, ip: info.ip, err: snippet(err.message) },
        'mqtt client error',
      );
    };
    a.on('clientError', onError);
    // Persistence failures surface here; without a listener they would end the whole node.
    (a as unknown as NodeJS.EventEmitter).on('error', (err: Error) =>
      ctx.log.error({ err }, 'mqtt broker error'),
    );
    a.on('connectionError', onError);
  }

  /**
   * A new subscription to `presence/{user}` gets that user's current presence
   * at once, flagged retained [MQTT-3.3.1-8], one message per resource.
   */
  private async presenceSnapshot(session: MqttSession, sub: Subscription): Promise<void> {
    const r = reserved(sub.topic);
    if (!r || r.tree !== 'presence' || r.user === undefined || !isLiteral(sub.topic)) return;
    const user = Address.of(r.user, this.broker.domain);
    const online = (await this.broker.router.targets(user)).filter(
      (t) => t.available && t.local?.presence,
    );
    if (online.length === 0) {
      session.publish(sub.topic, presenceJson(undefined, user), Math.min(sub.qos, 1), true);
      return;
    }
    for (const t of online)
      session.publish(sub.topic, presenceJson(t.local!.presence, user), Math.min(sub.qos, 1), true);
  }
}
