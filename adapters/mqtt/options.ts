import type { SecureContextOptions } from 'node:tls';
import { defaultAcl, type AclRule } from './acl.ts';
import type { RetainedStore } from './retained.ts';

/** Persistent MQTT session state by account (client ids `{user}/{client id}`, context.ts). */
export interface SessionEraser {
  /** the accounts (local parts) that have stored session state */
  users(): Promise<string[]>;
  /** erase every stored session of one account; returns the client ids erased */
  erase(user: string): Promise<string[]>;
  /** client ids with a stored persistent session (subscriptions or queued messages), once at start */
  sessionIds?(): Promise<string[]>;
  /** remove the stored QoS 1/2 queue of one client id (its session ends [MQTT-3.1.2-6]) */
  clearQueue?(clientId: string): Promise<void>;
}

/** A listener address; port 0 picks a free port. */
export interface MqttListener {
  host: string;
  port: number;
}

/**
 * MQTT listener options. Every limit has a documented default
 * (docs/configuration.md, section `mqtt`); the aedes option each one feeds is
 * named where there is one.
 */
export interface MqttOptions {
  /** plain MQTT; null disables */
  tcp: MqttListener | null;
  /** MQTT over TLS; null disables (also disabled without a certificate) */
  tls: MqttListener | null;
  /** certificate and key for the TLS listener */
  certificate: SecureContextOptions | null;
  /**
   * An aedes persistence instance (retained messages, persistent sessions,
   * QoS 1/2 queues, wills). bin/ picks the backend; absent means aedes'
   * in-memory one, which loses everything on restart.
   */
  persistence?: unknown;
  /**
   * Finds and erases persistent-session state (subscriptions, QoS 1/2
   * queues, wills) in the persistence by account; bin/ gives the LevelDB
   * one. Absent: only what live connections hold is cleared.
   */
  sessionEraser?: SessionEraser;
  /** where retained messages are kept (retained.ts); absent means in memory, lost on restart */
  retainedStore?: RetainedStore;
  /** retained messages one account may own; more are delivered but not kept (logged, counted) */
  retainedMaxPerUser: number;
  /** retained messages in total */
  retainedMaxTotal: number;
  /** largest payload kept as a retained message, in bytes */
  retainedMaxPayload: number;
  /** an mqemitter instance (cluster-wide fan-out); absent means aedes' local one */
  mq?: unknown;
  /**
   * The retained store is shared by the nodes of the `mq` fan-out (bin/: the
   * Redis store in a cluster): each node's retained index follows the others'.
   */
  retainedShared?: boolean;
  /**
   * aedes' broker id, stable across restarts (a cluster node's id), under
   * which wills are kept; absent: a random one per start. With it, the wills
   * fired at start are exactly those of this node's previous run.
   */
  brokerId?: string;
  /** let clients without a username connect; they get plain topics under the ACL and never a chat identity */
  allowAnonymous: boolean;
  /** access rules for plain topics and `$SYS` (acl.ts) */
  acl: AclRule[];
  /**
   * What a PUBLISH the client may not make gets [MQTT-3.3.5-2]: 'drop' acknowledges it
   * as usual and throws it away (Mosquitto's behaviour); 'disconnect' closes the connection.
   */
  deniedPublish: 'drop' | 'disconnect';
  /** largest packet accepted, in bytes (remaining length); larger closes the connection */
  maxPacketSize: number;
  /** most `/`-separated levels in a topic (aedes `maxTopicLevels`, at most 100) */
  maxTopicLevels: number;
  /** longest client id for MQTT 3.1.1 (MQTT 3.1 is always limited to 23 [MQTT 3.1 3.1]) */
  maxClientIdLength: number;
  /** inbound QoS 2 messages one client may hold awaiting PUBREL (aedes `maxInflightInbound`) */
  maxInflightInbound: number;
  /** packets a client may send before its CONNACK is out (aedes `queueLimit`) */
  maxQueuedBeforeConnack: number;
  /** messages delivered in parallel by the broker (aedes `concurrency`) */
  concurrency: number;
  /** time allowed between TCP accept and CONNECT (aedes `connectTimeout`) */
  connectTimeoutMs: number;
  /** smallest keepalive a client may ask for, in seconds; 0 allows "no keepalive" */
  minKeepaliveSeconds: number;
  /** largest keepalive a client may ask for, in seconds */
  maxKeepaliveSeconds: number;
  /**
   * Messages delivered to one subscriber that its socket has not taken yet
   * (outbound.ts). Past it a QoS 0 message is dropped for that subscriber and
   * a QoS 1/2 message closes its connection (policy-violation, slow consumer).
   */
  maxQueuedMessages: number;
  /** the same bound in bytes (topic + payload) */
  maxQueuedBytes: number;
  /**
   * QoS 1/2 messages stored for one persistent session (clean session 0)
   * while it is offline; past it new ones are dropped for that client and
   * counted (Mosquitto's `max_queued_messages`), the oldest kept.
   */
  maxOfflineQueuePerClient: number;
  /**
   * Client ids with a persistent session one account may hold; a CONNECT
   * with clean session 0 for one more id is refused with CONNACK 0x05.
   */
  maxPersistentSessionsPerUser: number;
  /** topic filters one connection may hold; more get SUBACK 0x80 [MQTT-3.9.3-2] */
  maxSubscriptionsPerConnection: number;
  /** time a client's socket may stay full before it is dropped as a slow consumer (aedes `drainTimeout`) */
  drainTimeoutMs: number;
  /** aedes broker heartbeat on `$SYS/<id>/heartbeat`; wills of a node silent for 3 beats fire */
  heartbeatIntervalMs: number;
  /** how often `$SYS/broker/...` statistics are published (0 = never) */
  sysIntervalMs: number;
  /**
   * Fire the wills a previous run of this node left behind (kill -9, power
   * loss) as soon as it starts, instead of after 4 heartbeats. Right for a
   * single node; a cluster leaves it to the heartbeat sweep.
   */
  fireStaleWillsOnStart: boolean;
  /** time a TLS handshake may take from TCP accept (Node's `handshakeTimeout`); connections are counted from accept */
  tlsHandshakeTimeoutMs: number;
  /** simultaneous MQTT connections from one IP address */
  maxConnectionsPerIp: number;
  /** simultaneous MQTT connections in total */
  maxConnections: number;
  /**
   * Disable Nagle's algorithm on client sockets (Mosquitto's
   * `set_tcp_nodelay`). On by default: writes are already coalesced per
   * event-loop turn (coalesce.ts), so Nagle saves no segments, and with it a
   * subscriber that never writes back (QoS 0) gets 40 ms stalls from the
   * interplay with delayed ACKs (fan-in p99 48 ms → 8 ms without it).
   */
  tcpNoDelay: boolean;
  /**
   * Plain-TCP sockets read into one shared buffer and hand on pooled copies
   * (read-buffer.ts), instead of one ArrayBuffer per read, which V8 sweeps
   * inside every young-generation pause.
   */
  sharedReadBuffer: boolean;
}

/** The defaults, documented in docs/configuration.md (bin/config.ts reads them from here). */
export const defaultMqttOptions: MqttOptions = {
  tcp: { host: '127.0.0.1', port: 1883 },
  tls: { host: '127.0.0.1', port: 8883 },
  certificate: null,
  allowAnonymous: false,
  acl: defaultAcl,
  deniedPublish: 'drop',
  maxPacketSize: 1024 * 1024,
  maxTopicLevels: 32,
  maxClientIdLength: 128,
  maxInflightInbound: 100,
  maxQueuedBeforeConnack: 42,
  concurrency: 100,
  connectTimeoutMs: 10_000,
  minKeepaliveSeconds: 0,
  maxKeepaliveSeconds: 65_535,
  drainTimeoutMs: 30_000,
  maxQueuedMessages: 10_000,
  maxSubscriptionsPerConnection: 1000,
  maxOfflineQueuePerClient: 1000,
  maxPersistentSessionsPerUser: 100,
  maxQueuedBytes: 16 * 1024 * 1024,
  retainedMaxPerUser: 1000,
  retainedMaxTotal: 100_000,
  retainedMaxPayload: 256 * 1024,
  heartbeatIntervalMs: 60_000,
  sysIntervalMs: 10_000,
  fireStaleWillsOnStart: true,
  tlsHandshakeTimeoutMs: 10_000,
  maxConnectionsPerIp: 1000,
  maxConnections: 100_000,
  tcpNoDelay: true,
  sharedReadBuffer: true,
};
