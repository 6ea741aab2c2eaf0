import type net from 'node:net';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import pinoPretty from 'pino-pretty';
import { S2sService, xmppModules, XmppServer } from '../adapters/xmpp/index.ts';
import type { SecureContextOptions } from 'node:tls';
import {
  Broker,
  setAdmins,
  setUploadBackend,
  uploadService,
  type Logger,
} from '../broker/index.ts';
import offline from '../broker/modules/offline.ts';
import rooms from '../broker/modules/rooms.ts';
import archive from '../broker/modules/archive.ts';
import upload from '../broker/modules/upload.ts';
import recall from '../broker/modules/recall.ts';
import unread from '../broker/modules/unread.ts';
import { LocalBus, LocalRegistry } from '../cluster/local.ts';
import { redisCluster } from '../cluster/redis/index.ts';
import type { Advertise, Cluster } from '../cluster/types.ts';
import { EmbeddedStorage } from '../storage/embedded.ts';
import { MongoStorage } from '../storage/mongodb.ts';
import { RedisStorage } from '../storage/redis/index.ts';
import type { Storage } from '../storage/types.ts';
import { startAdminServer, type NodeControl } from './admin.ts';
import { DRAIN_MESSAGE } from './cluster-admin.ts';
import { fingerprint256, loadTlsOptions } from './certs.ts';
import { prepareDataDir } from './datadir.ts';
import { adminSocketPath, enabledListeners, type Config } from './config.ts';
import { startMqtt } from './mqtt.ts';
import { startWeb } from './web.ts';
import { uploadBackendFor } from './upload.ts';
import { instrumentStorage } from './instrument.ts';
import { startReclaimer } from './reclaim.ts';
import { planReload, XMPP_LIVE_KEYS, type ReloadReport } from './reload.ts';
import { PACKAGE } from './version.ts';
import { PromMetrics } from '../metrics/prometheus.ts';

/** Every module a node loads, core ones first. */
export const allModules = [offline, archive, rooms, upload, recall, unread, ...xmppModules];

/**
 * JSON lines for log collectors (journald, Loki…), or one readable line per
 * event (pino-pretty, written synchronously on the main thread: no worker) when
 * a person watches: `log.format` auto picks pretty when stdout is a terminal.
 */
export function makeLogger(cfg: Config, stdoutIsTty = process.stdout.isTTY === true): Logger {
  // Children (a module's, a connection's) copy the level when made: keep weak references so a reload reaches them.
  const children = new Set<WeakRef<pino.Logger>>();
  let made = 0;
  const onChild = (child: pino.Logger) => {
    children.add(new WeakRef(child));
    if (++made % 1024 === 0) for (const r of children) if (!r.deref()) children.delete(r);
  };
  const opts = { level: cfg.log.level, base: { node: cfg.nodeId }, onChild };
  const format = cfg.log.format === 'auto' ? (stdoutIsTty ? 'pretty' : 'json') : cfg.log.format;
  const stream =
    format === 'json'
      ? undefined
      : pinoPretty({
          sync: true,
          singleLine: true,
          colorize: stdoutIsTty,
          translateTime: 'SYS:HH:MM:ss.l',
          ignore: 'pid,hostname,node',
        });
  const root = stream ? pino(opts, stream) : pino(opts);
  levelSetters.set(root as unknown as Logger, (level) => {
    root.level = level;
    for (const r of children) {
      const c = r.deref();
      if (c) c.level = level;
      else children.delete(r);
    }
  });
  return root as unknown as Logger;
}

const levelSetters = new WeakMap<Logger, (level: string) => void>();

/** Change the level of a logger made by makeLogger and of every child it made (`parley reload`). */
export function setLogLevel(log: Logger, level: string): void {
  levelSetters.get(log)?.(level);
}

/** The only place that picks concrete backends. */
export function makeStorage(cfg: Config): Storage {
  if (cfg.storage.backend === 'mongodb') {
    // modules.archive.maxAgeDays as a TTL index too: MongoDB deletes what the retention timer would.
    const days = Number(
      (cfg.modules.archive as { maxAgeDays?: unknown } | undefined)?.maxAgeDays ?? 0,
    );
    return new MongoStorage({
      url: cfg.storage.url!,
      archiveMaxAgeDays: Number.isFinite(days) && days > 0 ? days : 0,
    });
  }
  if (cfg.storage.backend === 'redis')
    return new RedisStorage({ url: cfg.storage.url!, prefix: cfg.storage.prefix });
  return new EmbeddedStorage({
    dir: `${cfg.dataDir}/store`,
    writeBufferSize: cfg.storage.writeBufferMiB * 1024 * 1024,
    readCacheEntries: cfg.storage.readCacheEntries,
  });
}

/** The single-node bus and registry, or the Redis cluster when `cluster.redis` is set (the only place that picks). */
export function makeCluster(cfg: Config, log: Logger, metrics?: PromMetrics): Cluster {
  if (!cfg.cluster) return { bus: new LocalBus(cfg.nodeId), registry: new LocalRegistry() };
  const c = redisCluster({
    url: cfg.cluster.redis,
    nodeId: cfg.nodeId,
    prefix: cfg.cluster.prefix,
    heartbeatMs: cfg.cluster.heartbeatMs,
    missedBeats: cfg.cluster.missedBeats,
    cacheUsers: cfg.cluster.registryCacheUsers,
    version: PACKAGE.version,
    log: log.child({ component: 'cluster' }),
  });
  if (metrics) c.bus.observe(metrics.clusterObserver());
  const { heartbeatMs, missedBeats, deathReplaySeconds, deathReplayMax, roomHoldSeconds } =
    cfg.cluster;
  // Back to before its last beat (it may have died just after it), from when it is declared dead.
  const deathReplayMs =
    deathReplaySeconds > 0 ? heartbeatMs * (missedBeats + 1) + deathReplaySeconds * 1000 : 0;
  // Detection first (the home's last beat, then missedBeats), then the margin to run the requests at the next home.
  const roomHoldMs =
    roomHoldSeconds > 0 ? heartbeatMs * (missedBeats + 1) + roomHoldSeconds * 1000 : 0;
  return { ...c, deathReplayMs, deathReplayMax, roomHoldMs, roomHoldMax: cfg.cluster.roomHoldMax };
}

export function makeBroker(cfg: Config, log: Logger, metrics?: PromMetrics): Broker {
  const storage = makeStorage(cfg);
  const broker = new Broker({
    domain: cfg.domain,
    storage: metrics ? instrumentStorage(storage, metrics) : storage,
    metrics,
    cluster: makeCluster(cfg, log, metrics),
    log,
    limits: cfg.limits,
    version: PACKAGE.version,
    modules: enabledModules(cfg),
  });
  setUploadBackend(broker, uploadBackendFor(cfg.dataDir, storage)); // account removal deletes files even with uploads off
  setAdmins(broker, cfg.admins); // the admin page and XEP-0133 commands ask isAdmin
  return broker;
}

/**
 * The modules this config turns on, with their options (like Prosody's
 * `modules_enabled`): each module is on unless `modules.<name>.enabled` is
 * false, or off by default (`enabledByDefault: false`) unless it is true.
 * A module another enabled one depends on cannot be turned off.
 */
export function enabledModules(
  cfg: Config,
): { def: (typeof allModules)[number]; options: Record<string, unknown> }[] {
  const out = [];
  for (const def of allModules) {
    const { enabled, ...options } = cfg.modules[def.name] ?? {};
    if (enabled !== undefined && typeof enabled !== 'boolean')
      throw new Error(`modules.${def.name}.enabled: expected a boolean`);
    if (enabled ?? def.enabledByDefault ?? true) out.push({ def, options });
  }
  return out;
}

export interface RunningNode {
  broker: Broker;
  xmpp: XmppServer;
  admin: net.Server;
  /**
   * Read the certificate files again (`tls.cert`/`tls.key`, or `<dataDir>/tls/`)
   * and serve them on every TLS listener from the next handshake on; open
   * connections keep theirs. On a bad file the old certificate stays.
   */
  reloadTls(): Promise<{ fingerprint256: string }>;
  /**
   * Read the configuration again (bin/reload.ts): apply the log level,
   * certificates and TLS settings, limits, admins and the memory reclaimer;
   * report the other changed keys as needing a restart. A configuration
   * that does not validate, or certificates that do not load, change nothing.
   */
  reload(): Promise<ReloadReport>;
  /**
   * Drain (`parley cluster drain`): not ready at once, then after
   * `cluster.drainGraceMs` the node shuts down as on SIGTERM, through
   * `onDrained` when set (bin/parley.ts exits there), else `stop()`.
   */
  drain(): void;
  onDrained?: () => void;
  stop(): Promise<void>;
}

/**
 * A listener could not bind (port taken, or below 1024 without the right):
 * the message names the listener, its config key and flag, for one line on
 * stderr instead of a stack trace.
 */
export class ListenError extends Error {}

const LISTEN_CODES: Record<string, string> = {
  EADDRINUSE: 'the address is in use (another process listens there)',
  EACCES: 'permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: "the address is not one of this machine's",
};

function listenError(cfg: Config, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
  const why = e?.code ? LISTEN_CODES[e.code] : undefined;
  if (!why || e.syscall !== 'listen' || typeof e.port !== 'number') return err;
  const l =
    enabledListeners(cfg).find((x) => x.port === e.port && (!e.address || x.host === e.address)) ??
    enabledListeners(cfg).find((x) => x.port === e.port);
  if (!l) return err;
  const change = l.flag
    ? `set ${l.key}.port in the config or ${l.flag}`
    : `set ${l.key}.port in the config`;
  return new ListenError(
    `cannot listen on ${l.host}:${l.port} for the ${l.name} listener: ${why}; ${change} (0 = any free port), or ${l.key}: null to disable it`,
  );
}

/**
 * `cluster.advertise` as announced: an `xmpp` or `xmpps` host without a port
 * takes the port this node listens on for it (the same host may then be
 * written in every node's config).
 */
export function advertised(a: Advertise, xmpp: { ports: XmppServer['ports'] }): Advertise {
  const withPort = (hp: string, port: number | undefined) =>
    /(^[^:[\]]+|\])$/.test(hp) && port ? `${hp}:${port}` : hp;
  const out: Advertise = {};
  if (a.xmpp) out.xmpp = withPort(a.xmpp, xmpp.ports.tcp);
  if (a.xmpps) out.xmpps = withPort(a.xmpps, xmpp.ports.directTls);
  if (a.websocket) out.websocket = a.websocket;
  return out;
}

/** config → backends → broker → adapters → admin socket. */
export async function startNode(
  cfg: Config,
  log: Logger,
  opts: NodeOptions = {},
): Promise<RunningNode> {
  try {
    return await startNodeUnchecked(cfg, log, opts);
  } catch (err) {
    throw listenError(cfg, err);
  }
}

export interface NodeOptions {
  /** read the configuration again as at start (file, environment, flags); without it, reload keeps the running one */
  loadConfig?: () => Config;
}

async function startNodeUnchecked(
  startCfg: Config,
  log: Logger,
  opts: NodeOptions,
): Promise<RunningNode> {
  let cfg = startCfg;
  const socket = adminSocketPath(cfg);
  prepareDataDir(cfg.dataDir, socket, log);
  for (const name of Object.keys(cfg.modules)) {
    if (!allModules.some((m) => m.name === name))
      throw new Error(`modules.${name}: unknown module`);
  }
  const broker = makeBroker(cfg, log, new PromMetrics());
  await broker.start();
  const storageCheck = (broker.storage as { serverWarnings?: () => Promise<string[]> })
    .serverWarnings;
  for (const warning of (await storageCheck?.()) ?? [])
    log.warn({ backend: cfg.storage.backend }, warning);
  const tls = await loadTlsOptions(cfg);
  if (tls.generated)
    log.info(
      { dir: cfg.dataDir, ca: `${cfg.dataDir}/tls/ca.pem` },
      'generated a local CA and a certificate it signed',
    );
  const xmpp = new XmppServer(broker, { ...cfg.xmpp, tls: tls.options });
  await xmpp.start();
  // Federation (docs/federation.md): off unless s2s.enabled; certificates follow xmpp's (reload included).
  const s2s = cfg.s2s.enabled
    ? new S2sService(
        broker,
        { ...cfg.s2s, ca: cfg.s2s.ca === null ? null : readFileSync(cfg.s2s.ca, 'utf8') },
        xmpp.opts,
        () => xmpp.opts.tls,
      )
    : undefined;
  await s2s?.start();
  const mqtt = await startMqtt(cfg, broker, tls.options);
  if (cfg.cluster?.advertise)
    broker.cluster.bus.advertise?.(advertised(cfg.cluster.advertise, xmpp));
  const control: NodeControl = { maxRequestBytes: cfg.admin.maxRequestBytes };
  const web = await startWeb(cfg, broker, xmpp, mqtt.server, tls.options, control);
  const upload = uploadService(broker);
  if (upload && !upload.baseUrl) {
    if (web.ports.https)
      upload.baseUrl = `https://${cfg.domain}:${web.ports.https}`; // [XEP-0363 5] HTTPS URLs
    else log.warn('modules.upload: no HTTPS listener and no baseUrl; slots cannot be handed out');
  }
  const serveTls = (options: SecureContextOptions) => {
    xmpp.setTls(options);
    mqtt.server?.setTls(options);
    web.setTls(options);
    const fp = fingerprint256(String(options.cert));
    log.info({ fingerprint256: fp }, 'TLS certificate reloaded');
    return { fingerprint256: fp };
  };
  let draining = false;
  const drain = () => {
    if (draining) return;
    draining = true;
    broker.cluster.bus.drain?.();
    const graceMs = cfg.cluster?.drainGraceMs ?? 0;
    log.warn(
      { graceMs, sessions: broker.sessions.count() },
      'draining: not ready; closing every connection after the grace period',
    );
    setTimeout(() => {
      void redirectClients()
        .catch((err: unknown) =>
          log.warn({ err }, 'draining: redirecting clients failed; they get system-shutdown'),
        )
        .then(() => broker.hooks.all('drain:redirected')) // sessions resumed elsewhere leave first
        .catch((err: unknown) => log.warn({ err }, 'draining: a module failed after redirecting'))
        .then(() => (running.onDrained ? running.onDrained() : running.stop()));
    }, graceMs);
  };
  /**
   * Drain: close every XMPP stream naming a live, non-draining peer that
   * advertises an address for the stream's transport (`cluster.advertise`),
   * the peers taken in turn so the clients spread: see-other-host on TCP and
   * TLS [RFC6120 4.9.3.19], see-other-uri on WebSocket [RFC7395 3.6.1].
   * Without such a peer (or on BOSH), system-shutdown as before.
   */
  const redirectClients = async () => {
    const peers = (await broker.cluster.bus.peers?.()) ?? [];
    const turn: Record<string, number> = {};
    const pick = (key: 'xmpp' | 'xmpps' | 'websocket') => {
      const offering = peers.filter((p) => p.advertise[key]);
      if (offering.length === 0) return undefined;
      const i = (turn[key] = ((turn[key] ?? -1) + 1) % offering.length);
      return offering[i].advertise[key];
    };
    const counts: Record<string, number> = {};
    await xmpp.stop((transport) => {
      const key =
        transport === 'tls'
          ? 'xmpps'
          : transport === 'ws' || transport === 'wss'
            ? 'websocket'
            : transport === 'tcp' || transport === 'starttls'
              ? 'xmpp'
              : undefined;
      const to = key && pick(key);
      if (!to) return undefined;
      counts[to] = (counts[to] ?? 0) + 1;
      const kind = key === 'websocket' ? 'see-other-uri' : 'see-other-host';
      return { kind, to, text: 'this node is draining' } as const;
    });
    log.warn({ redirected: counts }, 'draining: XMPP clients sent to other nodes');
  };
  broker.cluster.bus.onMessage((m) => {
    if (m.type === DRAIN_MESSAGE) {
      log.warn({ by: m.from }, 'drain asked by another node');
      drain();
    }
  });
  const reloadTls = async () => serveTls((await loadTlsOptions(cfg)).options);
  const startReclaim = (c: Config) =>
    c.memory.reclaimWhenIdle
      ? startReclaimer(log, { growthBytes: c.memory.reclaimGrowthMiB * 1024 * 1024 })
      : undefined;
  let reclaimer: ReturnType<typeof startReclaim>;
  const reloadNow = async (): Promise<ReloadReport> => {
    const next = opts.loadConfig ? opts.loadConfig() : cfg; // throws ConfigError: nothing changes
    const plan = planReload(cfg, next);
    const tls = await loadTlsOptions(plan.effective); // a certificate that does not load: nothing changes either
    const fp = serveTls(tls.options);
    const changed = (prefix: string) =>
      plan.applied.some((k) => k === prefix || k.startsWith(`${prefix}.`));
    if (changed('log.level')) setLogLevel(log, plan.effective.log.level);
    if (changed('limits')) broker.setLimits({ ...broker.limits, ...plan.effective.limits });
    if (changed('admins')) setAdmins(broker, plan.effective.admins);
    // XMPP limits and rates: every connection reads the listener's options object at its next check
    for (const k of XMPP_LIVE_KEYS)
      if (changed(`xmpp.${k}`))
        (xmpp.opts as unknown as Record<string, unknown>)[k] = plan.effective.xmpp[k];
    if (changed('memory')) {
      reclaimer?.stop();
      reclaimer = startReclaim(plan.effective);
    }
    cfg = plan.effective;
    const report = { applied: plan.applied, restartNeeded: plan.restartNeeded, tls: fp };
    log.info(report, 'configuration reloaded');
    if (plan.restartNeeded.length)
      log.warn(
        { keys: plan.restartNeeded },
        'changed keys that need a restart keep their old value',
      );
    return report;
  };
  // One reload at a time (a SIGHUP and a `parley reload` together): each plans from what the previous one left.
  let reloading: Promise<unknown> = Promise.resolve();
  const reload = (): Promise<ReloadReport> => {
    const run = reloading.then(reloadNow, reloadNow);
    reloading = run.catch(() => {});
    return run;
  };
  Object.assign(control, { reloadTls, reload, drain });
  const admin = await startAdminServer(broker, socket, control);
  log.info(
    {
      version: PACKAGE.version,
      domain: cfg.domain,
      xmpp: xmpp.ports,
      ...(s2s?.port !== undefined && { s2s: s2s.port }),
      mqtt: mqtt.server?.ports ?? {},
      web: web.ports,
      admin: socket,
    },
    'parley node ready',
  );
  reclaimer = startReclaim(cfg);
  let stopping: Promise<void> | undefined;
  const running: RunningNode = {
    broker,
    xmpp,
    admin,
    reloadTls,
    reload,
    drain,
    stop() {
      stopping ??= (async () => {
        reclaimer?.stop();
        await new Promise<void>((r) => admin.close(() => r()));
        await web.stop();
        await s2s?.stop();
        await xmpp.stop();
        await mqtt.stop();
        await broker.stop();
      })();
      return stopping;
    },
  };
  return running;
}
