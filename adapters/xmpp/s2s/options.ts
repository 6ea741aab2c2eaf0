import type { RateLimits } from './throttle.ts';

/**
 * Server-to-server federation options (docs/federation.md); every limit has a
 * documented default (docs/configuration.md, docs/security.md).
 */
export interface S2sOptions {
  /** off by default: no listener, no outbound connections, remote domains get remote-server-not-found */
  enabled: boolean;
  /** the s2s listener [RFC6120 14.7: 5269]; null: outbound only (peers cannot dial back to us, so most refuse us) */
  listen: { host: string; port: number } | null;
  /** static routes, domain → "host:port", tried instead of DNS (operators, tests) */
  routes: Record<string, string>;
  /** STARTTLS required both ways [RFC6120 5.3.1]; false only for a closed test network */
  requireTls: boolean;
  /** PEM of the CAs that peers' certificates must chain to; null: the system's trust store */
  ca: string | null;
  /** the dialback secret [XEP-0185]; null: a random one per start (keys then die with the process) */
  secret: string | null;
  /** one connect attempt (TCP) */
  connectTimeoutMs: number;
  /** from the first byte to an authenticated stream (TLS and dialback), either direction */
  authTimeoutMs: number;
  /** close a stream with no traffic for this long (0 = never) */
  idleTimeoutMs: number;
  /** stanzas queued for a domain while its connection is being set up; more bounce with resource-constraint */
  maxQueue: number;
  /** simultaneous inbound s2s connections from one IP address */
  maxConnectionsPerIp: number;
  /** simultaneous inbound s2s connections in total */
  maxConnections: number;
  /** dialback requests (db:result) waiting for verification on one inbound stream */
  maxPendingDialbacks: number;
  /** domains one inbound stream may authenticate (piggybacking) */
  maxDomainsPerStream: number;
  /** bytes queued to a peer before its stream is closed as a slow consumer */
  maxOutboundBuffer: number;
}

export const defaultS2sOptions: S2sOptions = {
  enabled: false,
  listen: { host: '127.0.0.1', port: 5269 },
  routes: {},
  requireTls: true,
  ca: null,
  secret: null,
  connectTimeoutMs: 10_000,
  authTimeoutMs: 30_000,
  idleTimeoutMs: 600_000,
  maxQueue: 100,
  maxConnectionsPerIp: 10,
  maxConnections: 1000,
  maxPendingDialbacks: 10,
  maxDomainsPerStream: 10,
  maxOutboundBuffer: 4 * 1024 * 1024,
};

/** What the s2s streams also take from the XMPP listener options (the parser limits and the inbound backlog). */
export interface S2sStreamLimits extends RateLimits {
  maxStanzaSize: number;
  maxDepth: number;
  maxInboundStanzas: number;
  tlsHandshakeTimeoutMs: number;
}
