import type { SecureContextOptions } from 'node:tls';

/** The HTTP(S) listener; every limit has a documented default (docs/configuration.md). */
export interface WebOptions {
  /** plain HTTP (5280); null disables */
  http: { host: string; port: number } | null;
  /** HTTPS (5443); null disables */
  https: { host: string; port: number } | null;
  tls: SecureContextOptions | null;
  /** largest WebSocket message, bytes (a larger one closes with 1009) */
  maxMessageSize: number;
  /** Origin header values allowed to open a WebSocket; empty = any */
  allowedOrigins: string[];
  /** close a WebSocket with no traffic for this long (0 = never); pings count */
  idleTimeoutMs: number;
  /** how often the server pings WebSocket clients (0 = never) */
  pingIntervalMs: number;
  /** simultaneous WebSocket connections and BOSH sessions from one IP */
  maxConnectionsPerIp: number;
  /** largest HTTP request body (BOSH), bytes */
  maxBodySize: number;
  /** open sockets on all HTTP(S) listeners together (WebSockets included); more are closed at accept */
  maxSockets: number;
  /** open sockets from one address on all HTTP(S) listeners together; more are closed at accept */
  maxSocketsPerIp: number;
  /** a TLS handshake on the HTTPS listener must finish within this, ms */
  tlsHandshakeTimeoutMs: number;
  /** from the connection (or the previous response) to the end of the request headers, ms; then 408 */
  headersTimeoutMs: number;
  /** from the start of a request to its last body byte, ms (0 = none); then 408. Held BOSH requests are not affected */
  requestTimeoutMs: number;
  /** a BOSH request body must be read within this after its headers, ms; then 408 and a terminate body */
  bodyTimeoutMs: number;
  /** an idle keep-alive socket is closed after this, ms */
  keepAliveTimeoutMs: number;
  /** `/metrics` wants `Authorization: Bearer <token>` when set; absent = open */
  metricsToken: string | undefined;
  /** serve `/metrics` (and health) on this listener instead of the HTTP(S) ones; null = on them */
  metrics: { host: string; port: number } | null;
}

export const defaultWebOptions: WebOptions = {
  http: { host: '127.0.0.1', port: 5280 },
  https: { host: '127.0.0.1', port: 5443 },
  tls: null,
  maxMessageSize: 256 * 1024 + 4096,
  allowedOrigins: [],
  idleTimeoutMs: 600_000,
  pingIntervalMs: 60_000,
  maxConnectionsPerIp: 1000,
  maxBodySize: 512 * 1024,
  maxSockets: 10_000,
  maxSocketsPerIp: 2_000,
  tlsHandshakeTimeoutMs: 10_000,
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 600_000,
  bodyTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  metricsToken: undefined,
  metrics: null,
};
