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
};
