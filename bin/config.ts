import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { validateAcl } from '../adapters/mqtt/acl.ts';
import { defaultMqttOptions } from '../adapters/mqtt/options.ts';
import { DEFAULT_READ_CACHE_ENTRIES } from '../storage/embedded.ts';

/**
 * Forward-secret suites only: TLS 1.3 (always ephemeral) and ECDHE with AEAD
 * for TLS 1.2, no static-RSA key exchange (a stolen key would decrypt every
 * recorded session) and no DHE (Node sets no DH parameters) [RFC7525 4.2].
 */
export const DEFAULT_TLS_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

const listenPort = z.number().int().min(0).max(65535);

/**
 * `host[:port]` for a see-other-host [RFC6120 4.9.3.19]: a DNS name, an IPv4
 * address or an IPv6 address, which the RFC wants in brackets
 * (`[2001:db8::1]:5222`); a bare IPv6 address is bracketed here.
 */
export function normalizeHostPort(v: string): string | undefined {
  const t = v.trim();
  let host: string;
  let port: string | undefined;
  const b = /^\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?$/.exec(t);
  if (b) [host, port] = [`[${b[1]}]`, b[2]];
  else if (/^[0-9A-Fa-f:.]+$/.test(t) && t.split(':').length > 2) host = `[${t}]`;
  else {
    const m = /^([A-Za-z0-9.-]{1,253})(?::(\d{1,5}))?$/.exec(t);
    if (!m || m[1].startsWith('.') || m[1].startsWith('-')) return undefined;
    [host, port] = [m[1], m[2]];
  }
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return undefined;
  return port === undefined ? host : `${host}:${port}`;
}

const hostPort = z.string().transform((v, ctx) => {
  const n = normalizeHostPort(v);
  if (n === undefined)
    ctx.addIssue({ code: 'custom', message: 'host[:port], an IPv6 address in brackets' });
  return n ?? v;
});
/**
 * A listener `{host, port}`: each field defaults on its own, so
 * `xmpp: {tcp: {port: 5333}}` keeps the default host; `null` disables it.
 */
const listener = (port: number) =>
  z
    .strictObject({ host: z.string().min(1).default('127.0.0.1'), port: listenPort.default(port) })
    .nullable()
    .prefault({});

const mqttDefaults = defaultMqttOptions;
/** One MQTT access rule (adapters/mqtt/acl.ts); `%u` username, `%c` client id. */
const aclRule = z.strictObject({
  effect: z.enum(['allow', 'deny']),
  topic: z.string().min(1),
  access: z.enum(['read', 'write', 'readwrite']),
  users: z.array(z.string().min(1)).optional(),
});

/**
 * The whole configuration. Unknown keys and bad values fail at start with
 * the exact path of the key (`xmpp.maxStanzaSize: expected number…`).
 * Defaults are documented in docs/configuration.md.
 */
export const configSchema = z.strictObject({
  domain: z.string().min(1).default('localhost'),
  dataDir: z.string().min(1).default('./data'),
  nodeId: z.string().min(1).default('node1'),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      /** json: one JSON object a line (for collectors); pretty: one readable line an event; auto: pretty on a terminal, else json */
      format: z.enum(['auto', 'json', 'pretty']).default('auto'),
    })
    .prefault({}),
  tls: z
    .strictObject({
      /** PEM files; absent: a local CA (tls/ca.pem) and a certificate it signed are generated in dataDir on first start (bin/certs.ts) */
      cert: z.string().optional(),
      key: z.string().optional(),
      /** OpenSSL cipher list (TLS 1.2 suites and TLS 1.3 suites in one string); the default has forward-secret key exchange only */
      ciphers: z.string().min(1).default(DEFAULT_TLS_CIPHERS),
      /** oldest protocol version accepted (TLS 1.0 and 1.1 are never) */
      minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    })
    .prefault({}),
  storage: z
    .strictObject({
      backend: z.enum(['embedded', 'redis', 'mongodb']).default('embedded'),
      /** redis: `redis://[user:password@]host:port[/db]` (or `rediss://`); mongodb: `mongodb://…` */
      url: z.string().min(1).optional(),
      /** the older name of `url` for mongodb */
      mongodbUrl: z.string().optional(),
      /** redis: prefix of every key, so that one server can hold several deployments */
      prefix: z.string().min(1).max(100).default('parley:'),
      /** embedded: MiB LevelDB buffers before writing a sorted file (its memtable); up to twice this in memory */
      writeBufferMiB: z.number().int().min(1).max(1024).default(32),
      /** embedded: records each key-value store (accounts, rosters, ...) and per-user counts each queue keep in memory for reads; 0 = none */
      readCacheEntries: z.number().int().min(0).default(DEFAULT_READ_CACHE_ENTRIES),
    })
    .prefault({}),
  /**
   * Clustering (docs/cluster.md): `redis` set turns it on. Every node of a
   * cluster names the same Redis and the same shared store, and its own
   * `nodeId` (--node-id).
   */
  cluster: z
    .strictObject({
      /** `redis://[user:password@]host:port[/db]` or `rediss://`: the bus, the session registry and membership */
      redis: z.string().min(1),
      /** prefix of the cluster's Redis keys and channels, so that one Redis can hold several clusters */
      prefix: z
        .string()
        .regex(/^[A-Za-z0-9._-]{1,64}$/, '1 to 64 of A-Z a-z 0-9 . _ -')
        .default('parley'),
      /** ms between heartbeats */
      heartbeatMs: z.number().int().min(50).max(600_000).default(5000),
      /** heartbeats a node may miss before the others declare it dead */
      missedBeats: z.number().int().min(2).max(100).default(3),
      /** users whose sessions a node keeps cached (besides its own); the oldest cached go first */
      registryCacheUsers: z.number().int().min(0).default(100_000),
      /**
       * A node declared dead: the storable messages other nodes handed to it
       * in the last `heartbeatMs × (missedBeats + 1)` ms plus this many
       * seconds are queued again for their recipients (what it may have held
       * unacknowledged by its clients; a copy a client had acknowledged comes
       * again, delay-stamped, with its ids). 0 turns it off.
       */
      deathReplaySeconds: z.number().int().min(0).max(3600).default(10),
      /** at most this many such messages kept per other node (references; the oldest go first) */
      deathReplayMax: z.number().int().min(0).max(10_000_000).default(20_000),
      /**
       * A room's requests (XMPP stanzas, MQTT room operations) whose home
       * node cannot be reached (killed, not yet reaped; Redis away) are held,
       * in order, and run at the room's next home once the dead node is
       * reaped (or at the same home once it answers), for at most
       * `heartbeatMs × (missedBeats + 1)` ms plus this many seconds; then
       * the sender gets service-unavailable. 0 turns it off (bounced at once).
       */
      roomHoldSeconds: z.number().int().min(0).max(3600).default(10),
      /** at most this many room requests held on this node; past it they bounce with resource-constraint */
      roomHoldMax: z.number().int().min(0).max(1_000_000).default(10_000),
      /** drain: ms a draining node stays up, not ready, before it closes its connections (time for the load balancer to notice) */
      drainGraceMs: z.number().int().min(0).max(600_000).default(2000),
      /**
       * Where clients reach this node, announced in its heartbeat: a draining
       * node sends its XMPP clients to a live peer's address with see-other-host
       * [RFC6120 4.9.3.19] (`xmpp` for STARTTLS clients, `xmpps` for direct
       * TLS) or, on WebSocket, `<close see-other-uri/>` [RFC7395 3.6.1]
       * (`websocket`). Absent: its clients get system-shutdown and reconnect
       * through the load balancer.
       */
      advertise: z
        .strictObject({
          xmpp: hostPort.optional(),
          xmpps: hostPort.optional(),
          websocket: z
            .string()
            .regex(/^wss?:\/\/[^\s'"<>&]+$/, 'a ws:// or wss:// URI')
            .optional(),
        })
        .optional(),
    })
    .nullable()
    .default(null),
  admin: z
    .strictObject({
      socket: z.string().optional(),
      /** the longest request line the admin socket reads; a longer one is answered too-large and the socket closed */
      maxRequestBytes: z
        .number()
        .int()
        .min(1024)
        .default(64 * 1024),
    })
    .prefault({}),
  memory: z
    .strictObject({
      /** after a burst, at the first idle second, run V8's memory-pressure collection (bin/reclaim.ts) */
      reclaimWhenIdle: z.boolean().default(true),
      /** MiB the heap must have grown since the last reclaim */
      reclaimGrowthMiB: z.number().int().min(1).max(65536).default(32),
    })
    .prefault({}),
  limits: z
    .strictObject({
      offlineMaxPerUser: z.number().int().min(0).default(1000),
      offlineMaxBytesPerUser: z
        .number()
        .int()
        .min(0)
        .default(16 * 1024 * 1024),
      rosterMaxItems: z.number().int().min(1).default(1000),
      maxPendingSubscriptions: z.number().int().min(1).default(1000),
      maxDirectedPresences: z.number().int().min(1).default(1000),
      maxSessionsPerUser: z.number().int().min(1).default(10),
      resourceConflict: z.enum(['replace', 'reject']).default('replace'),
      scramIterations: z.number().int().min(4096).default(4096),
      authFreeFailures: z.number().int().min(0).default(3),
      authFreeFailuresPerAccount: z.number().int().min(0).default(3),
      authFailureWindowMs: z.number().int().min(1000).default(60_000),
      authMaxDelayMs: z.number().int().min(0).default(5_000),
      authMaxInFlightPerAddress: z.number().int().min(1).default(32),
      authMaxInFlightPerAccount: z.number().int().min(1).default(8),
    })
    .prefault({}),
  xmpp: z
    .strictObject({
      tcp: listener(5222),
      directTls: listener(5223),
      requireTls: z.boolean().default(true),
      maxStanzaSize: z
        .number()
        .int()
        .min(1024)
        .default(256 * 1024),
      maxDepth: z.number().int().min(4).max(1000).default(32),
      authTimeoutMs: z.number().int().min(100).default(30_000),
      idleTimeoutMs: z.number().int().min(0).default(600_000),
      keepaliveIntervalMs: z.number().int().min(0).default(120_000),
      maxAuthAttempts: z.number().int().min(1).default(3),
      maxOutboundBuffer: z
        .number()
        .int()
        .min(1024)
        .default(4 * 1024 * 1024),
      maxConnectionsPerIp: z.number().int().min(1).default(1000),
      maxConnections: z.number().int().min(1).default(100_000),
      tlsHandshakeTimeoutMs: z.number().int().min(100).default(10_000),
      maxInboundStanzas: z.number().int().min(1).default(256),
      maxInboundBytes: z
        .number()
        .int()
        .min(1024)
        .default(1024 * 1024),
      inboundBytesPerSecond: z
        .number()
        .int()
        .min(0)
        .default(1024 * 1024),
      inboundStanzasPerSecond: z.number().int().min(0).default(2000),
      inboundBurstSeconds: z.number().min(0.1).max(3600).default(2),
      inboundThrottleLimitMs: z.number().int().min(0).default(60_000),
    })
    .prefault({}),
  /** server-to-server federation (docs/federation.md); off by default */
  s2s: z
    .strictObject({
      enabled: z.boolean().default(false),
      listen: listener(5269),
      routes: z.record(z.string().min(1), z.string().regex(/^.+:\d+$/, 'host:port')).default({}),
      /** a PEM file of the CAs peers' certificates must chain to; null: the system's */
      ca: z.string().min(1).nullable().default(null),
      requireTls: z.boolean().default(true),
      secret: z.string().min(16).nullable().default(null),
      connectTimeoutMs: z.number().int().min(100).default(10_000),
      authTimeoutMs: z.number().int().min(100).default(30_000),
      idleTimeoutMs: z.number().int().min(0).default(600_000),
      maxQueue: z.number().int().min(1).default(100),
      maxConnectionsPerIp: z.number().int().min(1).default(10),
      maxConnections: z.number().int().min(1).default(1000),
      maxPendingDialbacks: z.number().int().min(1).default(10),
      maxDomainsPerStream: z.number().int().min(1).default(10),
      maxOutboundBuffer: z
        .number()
        .int()
        .min(1024)
        .default(4 * 1024 * 1024),
    })
    .prefault({}),
  mqtt: z
    .strictObject({
      tcp: listener(1883),
      tls: listener(8883),
      allowAnonymous: z.boolean().default(mqttDefaults.allowAnonymous),
      acl: z.array(aclRule).default(mqttDefaults.acl),
      deniedPublish: z.enum(['drop', 'disconnect']).default(mqttDefaults.deniedPublish),
      maxPacketSize: z.number().int().min(64).max(268_435_455).default(mqttDefaults.maxPacketSize),
      maxTopicLevels: z.number().int().min(1).max(100).default(mqttDefaults.maxTopicLevels),
      maxClientIdLength: z
        .number()
        .int()
        .min(23)
        .max(65_535)
        .default(mqttDefaults.maxClientIdLength),
      maxInflightInbound: z
        .number()
        .int()
        .min(1)
        .max(65_535)
        .default(mqttDefaults.maxInflightInbound),
      maxQueuedBeforeConnack: z.number().int().min(1).default(mqttDefaults.maxQueuedBeforeConnack),
      concurrency: z.number().int().min(1).default(mqttDefaults.concurrency),
      connectTimeoutMs: z.number().int().min(100).default(mqttDefaults.connectTimeoutMs),
      minKeepaliveSeconds: z
        .number()
        .int()
        .min(0)
        .max(65_535)
        .default(mqttDefaults.minKeepaliveSeconds),
      maxKeepaliveSeconds: z
        .number()
        .int()
        .min(1)
        .max(65_535)
        .default(mqttDefaults.maxKeepaliveSeconds),
      drainTimeoutMs: z.number().int().min(0).default(mqttDefaults.drainTimeoutMs),
      maxSubscriptionsPerConnection: z
        .number()
        .int()
        .min(1)
        .default(mqttDefaults.maxSubscriptionsPerConnection),
      maxQueuedMessages: z.number().int().min(1).default(mqttDefaults.maxQueuedMessages),
      maxQueuedBytes: z.number().int().min(1024).default(mqttDefaults.maxQueuedBytes),
      maxOfflineQueuePerClient: z
        .number()
        .int()
        .min(1)
        .default(mqttDefaults.maxOfflineQueuePerClient),
      maxPersistentSessionsPerUser: z
        .number()
        .int()
        .min(1)
        .default(mqttDefaults.maxPersistentSessionsPerUser),
      retainedMaxPerUser: z.number().int().min(0).default(mqttDefaults.retainedMaxPerUser),
      retainedMaxTotal: z.number().int().min(0).default(mqttDefaults.retainedMaxTotal),
      retainedMaxPayload: z.number().int().min(0).default(mqttDefaults.retainedMaxPayload),
      heartbeatIntervalMs: z.number().int().min(100).default(mqttDefaults.heartbeatIntervalMs),
      sysIntervalMs: z.number().int().min(0).default(mqttDefaults.sysIntervalMs),
      fireStaleWillsOnStart: z.boolean().default(mqttDefaults.fireStaleWillsOnStart),
      tlsHandshakeTimeoutMs: z.number().int().min(100).default(mqttDefaults.tlsHandshakeTimeoutMs),
      maxConnectionsPerIp: z.number().int().min(1).default(mqttDefaults.maxConnectionsPerIp),
      maxConnections: z.number().int().min(1).default(mqttDefaults.maxConnections),
      tcpNoDelay: z.boolean().default(mqttDefaults.tcpNoDelay),
      sharedReadBuffer: z.boolean().default(mqttDefaults.sharedReadBuffer),
    })
    .prefault({}),
  web: z
    .strictObject({
      http: listener(5280),
      https: listener(5443),
      maxMessageSize: z
        .number()
        .int()
        .min(1024)
        .default(256 * 1024 + 4096),
      allowedOrigins: z.array(z.string()).default([]),
      idleTimeoutMs: z.number().int().min(0).default(600_000),
      pingIntervalMs: z.number().int().min(0).default(60_000),
      maxConnectionsPerIp: z.number().int().min(1).default(1000),
      maxBodySize: z
        .number()
        .int()
        .min(1024)
        .default(512 * 1024),
      maxSockets: z.number().int().min(1).default(10_000),
      maxSocketsPerIp: z.number().int().min(1).default(2_000),
      tlsHandshakeTimeoutMs: z.number().int().min(100).default(10_000),
      headersTimeoutMs: z.number().int().min(100).default(20_000),
      requestTimeoutMs: z.number().int().min(0).default(600_000),
      bodyTimeoutMs: z.number().int().min(0).default(10_000),
      keepAliveTimeoutMs: z.number().int().min(100).default(5_000),
      /** `/metrics` wants `Authorization: Bearer <token>` [RFC6750] when set */
      metricsToken: z
        .string()
        .regex(/^[A-Za-z0-9\-._~+/]+=*$/, 'a bearer token (RFC 6750 b64token characters)')
        .min(16)
        .optional(),
      /** a listener of its own for /metrics (and health); null = on the HTTP(S) listeners */
      metrics: z
        .strictObject({ host: z.string().min(1).default('127.0.0.1'), port: listenPort })
        .nullable()
        .default(null),
      bosh: z
        .strictObject({
          maxWait: z.number().int().min(1).max(300).default(60),
          maxHold: z.number().int().min(1).max(10).default(1),
          inactivity: z.number().int().min(5).max(600).default(60),
          maxRequestsPerSecond: z.number().int().min(1).default(20),
          polling: z.number().int().min(0).max(60).default(2),
        })
        .prefault({}),
    })
    .prefault({}),
  /** accounts allowed on the admin page (HTTP Basic with their XMPP password) */
  admins: z.array(z.string()).default([]),
  modules: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
});

export type Config = z.infer<typeof configSchema>;

/** Thrown for any invalid configuration; the message names the key path. */
export class ConfigError extends Error {}

function formatIssues(err: z.ZodError): string {
  return err.issues
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('\n');
}

/** Read a YAML or JSON file into a plain object. */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  try {
    const v = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
    if (v === null || v === undefined) return {};
    if (typeof v !== 'object' || Array.isArray(v)) throw new Error('top level must be a mapping');
    return v as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${file}: ${(err as Error).message}`);
  }
}

/** Environment variables: PARLEY_DOMAIN, PARLEY_DATA_DIR, PARLEY_LOG_LEVEL, PARLEY_MONGODB_URL, PARLEY_REDIS_URL… */
export function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const o: Record<string, any> = {};
  if (env.PARLEY_DOMAIN) o.domain = env.PARLEY_DOMAIN;
  if (env.PARLEY_DATA_DIR) o.dataDir = env.PARLEY_DATA_DIR;
  if (env.PARLEY_NODE_ID) o.nodeId = env.PARLEY_NODE_ID;
  if (env.PARLEY_CLUSTER_REDIS) o.cluster = { redis: env.PARLEY_CLUSTER_REDIS };
  if (env.PARLEY_LOG_LEVEL || env.PARLEY_LOG_FORMAT)
    o.log = {
      ...(env.PARLEY_LOG_LEVEL && { level: env.PARLEY_LOG_LEVEL }),
      ...(env.PARLEY_LOG_FORMAT && { format: env.PARLEY_LOG_FORMAT }),
    };
  if (env.PARLEY_MONGODB_URL) o.storage = { backend: 'mongodb', url: env.PARLEY_MONGODB_URL };
  if (env.PARLEY_REDIS_URL) o.storage = { backend: 'redis', url: env.PARLEY_REDIS_URL };
  return o;
}

/** Deep merge of plain objects; later wins. */
export function merge(...objs: Record<string, unknown>[]): Record<string, unknown> {
  const out: Record<string, any> = {};
  for (const o of objs) {
    for (const [k, v] of Object.entries(o)) {
      if (
        v &&
        typeof v === 'object' &&
        !Array.isArray(v) &&
        out[k] &&
        typeof out[k] === 'object' &&
        !Array.isArray(out[k])
      )
        out[k] = merge(out[k], v as Record<string, unknown>);
      else if (v !== undefined) out[k] = v;
    }
  }
  return out;
}

/** Validate; throws ConfigError listing every bad key path. */
export function validateConfig(raw: Record<string, unknown>): Config {
  const r = configSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(formatIssues(r.error));
  const cfg = r.data;
  if (cfg.storage.backend === 'mongodb') cfg.storage.url ??= cfg.storage.mongodbUrl;
  if (cfg.storage.backend !== 'embedded' && !cfg.storage.url)
    throw new ConfigError(`storage.url: required when storage.backend is ${cfg.storage.backend}`);
  if (cfg.storage.backend === 'mongodb' && !/^mongodb(\+srv)?:\/\//.test(cfg.storage.url!))
    throw new ConfigError('storage.url: a MongoDB connection string, mongodb:// or mongodb+srv://');
  if (cfg.cluster && cfg.storage.backend === 'embedded') {
    // Every node must see the same accounts, rosters, archives and queues.
    throw new ConfigError(
      'cluster: a cluster needs a shared store; set storage.backend to redis or mongodb (the embedded store belongs to one node)',
    );
  }
  if (cfg.cluster && !/^[A-Za-z0-9._-]{1,64}$/.test(cfg.nodeId))
    throw new ConfigError('nodeId: 1 to 64 of A-Z a-z 0-9 . _ - in a cluster');
  if (!!cfg.tls.cert !== !!cfg.tls.key) throw new ConfigError('tls: cert and key go together');
  const aclErrors = validateAcl(cfg.mqtt.acl);
  if (aclErrors.length) throw new ConfigError(aclErrors.map((e) => `mqtt.${e}`).join('\n'));
  // Node refuses a headers timeout longer than the whole-request one
  if (cfg.web.requestTimeoutMs > 0 && cfg.web.headersTimeoutMs > cfg.web.requestTimeoutMs)
    throw new ConfigError('web.headersTimeoutMs: must not exceed web.requestTimeoutMs');
  if (cfg.mqtt.minKeepaliveSeconds > cfg.mqtt.maxKeepaliveSeconds)
    throw new ConfigError('mqtt.minKeepaliveSeconds: must not exceed mqtt.maxKeepaliveSeconds');
  cfg.dataDir = path.resolve(cfg.dataDir);
  return cfg;
}

/** Every listener: what it is called, its config key and the flag that sets its port (messages at start). */
export const LISTENERS = [
  { name: 'XMPP c2s (STARTTLS)', section: 'xmpp', key: 'tcp', flag: '--xmpp-port' },
  { name: 'XMPP direct TLS', section: 'xmpp', key: 'directTls', flag: '--xmpps-port' },
  { name: 'MQTT', section: 'mqtt', key: 'tcp', flag: '--mqtt-port' },
  { name: 'MQTT over TLS', section: 'mqtt', key: 'tls', flag: '--mqtts-port' },
  { name: 'HTTP', section: 'web', key: 'http', flag: '--http-port' },
  { name: 'HTTPS', section: 'web', key: 'https', flag: '--https-port' },
  { name: 'metrics', section: 'web', key: 'metrics', flag: undefined },
] as const;

/** The listeners this config enables, with their address. */
export function enabledListeners(
  cfg: Config,
): { name: string; key: string; flag?: string; host: string; port: number }[] {
  const out = [];
  for (const l of LISTENERS) {
    const v = (cfg[l.section] as unknown as Record<string, { host: string; port: number } | null>)[
      l.key
    ];
    if (v)
      out.push({
        name: l.name,
        key: `${l.section}.${l.key}`,
        flag: l.flag,
        host: v.host,
        port: v.port,
      });
  }
  return out;
}

export function adminSocketPath(cfg: Config): string {
  return cfg.admin.socket ?? path.join(cfg.dataDir, 'admin.sock');
}
