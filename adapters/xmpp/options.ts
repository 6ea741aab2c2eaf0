import type { SecureContextOptions } from 'node:tls';

/** XMPP listener options; every limit has a documented default (docs/configuration.md). */
export interface XmppOptions {
  /** c2s plain TCP with STARTTLS [RFC6120 5]; port 0 picks a free port; null disables */
  tcp: { host: string; port: number } | null;
  /** direct TLS [XEP-0368]; null disables */
  directTls: { host: string; port: number } | null;
  /** certificate and key for STARTTLS and direct TLS */
  tls: SecureContextOptions | null;
  /** refuse to authenticate before STARTTLS [RFC6120 5.3.1] */
  requireTls: boolean;
  /** largest stanza, in characters; larger closes the stream with policy-violation */
  maxStanzaSize: number;
  /** deepest element nesting inside a stanza */
  maxDepth: number;
  /** time to authenticate and bind before the stream is closed */
  authTimeoutMs: number;
  /** close a stream with no traffic for this long (0 = never) */
  idleTimeoutMs: number;
  /** send a whitespace keepalive this often (0 = never) */
  keepaliveIntervalMs: number;
  /** failed SASL attempts on one stream before it is closed */
  maxAuthAttempts: number;
  /** bytes queued to a client before it is closed as a slow consumer */
  maxOutboundBuffer: number;
  /** simultaneous connections from one IP address */
  maxConnectionsPerIp: number;
  /** simultaneous XMPP connections in total (TCP sockets counted from accept, TLS handshakes included) */
  maxConnections: number;
  /** a TLS handshake (direct TLS or STARTTLS) not done in this time closes the socket */
  tlsHandshakeTimeoutMs: number;
  /** stanzas parsed and not yet handled before reading from the client pauses */
  maxInboundStanzas: number;
  /** bytes read whose stanzas are not yet handled before reading pauses */
  maxInboundBytes: number;
  /** sustained bytes per second read from one stream; past it reading pauses (0 = no limit) */
  inboundBytesPerSecond: number;
  /** sustained stanzas per second from one stream; past it reading pauses (0 = no limit) */
  inboundStanzasPerSecond: number;
  /** the bursts allowed above those rates, in seconds of the rate */
  inboundBurstSeconds: number;
  /** a stream kept over its rate for this long is closed with policy-violation (0 = never) */
  inboundThrottleLimitMs: number;
}

export const defaultXmppOptions: XmppOptions = {
  tcp: { host: '127.0.0.1', port: 5222 },
  directTls: { host: '127.0.0.1', port: 5223 },
  tls: null,
  requireTls: true,
  maxStanzaSize: 256 * 1024,
  maxDepth: 32,
  authTimeoutMs: 30_000,
  idleTimeoutMs: 600_000,
  keepaliveIntervalMs: 120_000,
  maxAuthAttempts: 3,
  maxOutboundBuffer: 4 * 1024 * 1024,
  maxConnectionsPerIp: 1000,
  maxConnections: 100_000,
  tlsHandshakeTimeoutMs: 10_000,
  maxInboundStanzas: 256,
  maxInboundBytes: 1024 * 1024,
  inboundBytesPerSecond: 1024 * 1024,
  inboundStanzasPerSecond: 2000,
  inboundBurstSeconds: 2,
  inboundThrottleLimitMs: 60_000,
};
