/**
 * `parley reload` and SIGHUP: read the configuration again and apply what a
 * running node can change without dropping a connection; report the rest as
 * needing a restart (docs/operations.md, "Reloading"). Like `prosodyctl
 * reload` and `ejabberdctl reload_config`, one command for everything; the
 * certificate files are read again every time (what `reload-tls` did).
 */
import type { Config } from './config.ts';

/** What a reload did: changed keys applied live, changed keys that wait for a restart. */
export interface ReloadReport {
  /** dotted key paths that changed and now have their new value */
  applied: string[];
  /** dotted key paths that changed but keep their old value until the node restarts */
  restartNeeded: string[];
  /** the certificate now served (read again on every reload) */
  tls: { fingerprint256: string };
}

/**
 * Keys a running node applies (a prefix matches every key under it). Each
 * is applied where it is read, from the next use on: the log level at the
 * next line, certificates and TLS settings at the next handshake, limits at
 * the next check, admins at the next admin request or ad-hoc command, the
 * memory reclaimer at once, XMPP limits and rates at the next check of
 * each connection (every connection reads the listener's one options object).
 */
/**
 * XMPP options every connection reads from the listener's shared options at
 * each use (the next stanza, stream, login or sweep): sizes, rates, timeouts
 * and connection caps. Not `requireTls` (a security posture is a restart's
 * decision), nor the listeners or `tlsHandshakeTimeoutMs` (set on the
 * listening sockets).
 */
export const XMPP_LIVE_KEYS = [
  'maxStanzaSize',
  'maxDepth',
  'authTimeoutMs',
  'idleTimeoutMs',
  'keepaliveIntervalMs',
  'maxAuthAttempts',
  'maxOutboundBuffer',
  'maxConnectionsPerIp',
  'maxConnections',
  'maxInboundStanzas',
  'maxInboundBytes',
  'inboundBytesPerSecond',
  'inboundStanzasPerSecond',
  'inboundBurstSeconds',
  'inboundThrottleLimitMs',
] as const;

export const LIVE_KEYS = [
  'log.level',
  'tls',
  'limits',
  'admins',
  'memory',
  ...XMPP_LIVE_KEYS.map((k) => `xmpp.${k}`),
] as const;

export function isLive(key: string): boolean {
  return LIVE_KEYS.some((k) => key === k || key.startsWith(`${k}.`));
}

const isPlain = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Dotted paths of the leaves that differ (a list compares as a whole). */
export function changedKeys(a: unknown, b: unknown, prefix = ''): string[] {
  if (isPlain(a) && isPlain(b)) {
    const out: string[] = [];
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort())
      out.push(...changedKeys(a[k], b[k], prefix ? `${prefix}.${k}` : k));
    return out;
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || '(root)'];
}

function getPath(o: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((v, k) => (isPlain(v) ? v[k] : undefined), o);
}

function setPath(o: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let cur: Record<string, unknown> = o;
  for (const k of parts.slice(0, -1)) {
    if (!isPlain(cur[k])) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]] = value;
}

/**
 * The configuration the node runs with after a reload: `running` with the
 * live keys of `next` taken over; the others keep their running value (a
 * later reload reports them again until the restart).
 */
export function planReload(
  running: Config,
  next: Config,
): { effective: Config; applied: string[]; restartNeeded: string[] } {
  const changed = changedKeys(running, next);
  const applied = changed.filter(isLive);
  const restartNeeded = changed.filter((k) => !isLive(k));
  const effective = structuredClone(running) as Config;
  for (const k of applied)
    setPath(effective as unknown as Record<string, unknown>, k, structuredClone(getPath(next, k)));
  return { effective, applied, restartNeeded };
}
