import type { Aedes, Client } from 'aedes';
import { Address, type Broker, type CloseKind, type Logger } from '../../broker/index.ts';
import { ClientAcl } from './acl.ts';
import type { MqttOptions } from './options.ts';
import type { RetainedIndex } from './retained.ts';
import type { StoredSessions } from './stored-sessions.ts';
import type { MqttSession } from './session.ts';

/** The aedes client fields the adapter reads besides the typed ones. */
export type AedesClient = Client & {
  subscriptions: Record<string, { qos: number }>;
  /** COMPAT: aedes sets it when a DISCONNECT packet arrived; no public flag says so */
  _disconnected?: boolean;
};

/** What the adapter knows about one connection, from accept to close. */
export interface ConnInfo {
  transport: 'tcp' | 'tls' | 'ws' | 'wss';
  ip: string;
  /** the client id as the client sent it (or as generated for an empty one) */
  clientId: string;
  protocolVersion: number;
  clean: boolean;
  keepalive: number;
  /** the CONNECT packet, from preConnect until authenticate has read its password */
  connect?: { password?: Buffer };
  /** a CONNACK return code decided in preConnect, answered by authenticate */
  reject?: { code: 2 | 3 | 4 | 5; text: string };
  /** the session address (resource = client id) once authenticated; absent for anonymous clients */
  address?: Address;
  acl?: ClientAcl;
  /** topic filters this connection holds or is being granted (bounded by maxSubscriptionsPerConnection) */
  filters?: Set<string>;
  /** the bound was reached (logged once) */
  filtersFull?: boolean;
  /** why the connection is ending, once known */
  closeKind?: CloseKind;
  closeText?: string;
}

/** Counters behind `$SYS/broker/...`. */
export interface MqttStats {
  received: number;
  sent: number;
  denied: number;
  /** QoS 0 messages dropped for a subscriber whose queue was full (outbound.ts), QoS 1/2 ones for an offline session whose stored queue was full (stored-sessions.ts) */
  dropped: number;
}

/** Shared state of one MqttServer, handed to its hook handlers. */
export interface MqttContext {
  broker: Broker;
  opts: MqttOptions;
  log: Logger;
  aedes: Aedes;
  infos: WeakMap<Client, ConnInfo>;
  sessions: WeakMap<Client, MqttSession>;
  stats: MqttStats;
  /** retained messages by topic (retained.ts) */
  retained: RetainedIndex;
  /** bounds of persistent sessions (stored-sessions.ts) */
  stored?: StoredSessions;
}

const ANONYMOUS = '@anonymous';

/**
 * The id aedes knows a client by: `{user}/{client id}`, or
 * `@anonymous/{client id}`. Client ids are per account, so that one user's
 * device cannot take over, or read the persistent session of, another
 * user's device that picked the same id ('@' and '/' never occur in a
 * normalised local part).
 */
export function internalId(username: string | undefined, clientId: string, domain: string): string {
  if (username === undefined) return `${ANONYMOUS}/${clientId}`;
  let local: string;
  try {
    local = Address.of(username, domain).local;
  } catch {
    local = '@invalid'; // authentication refuses it anyway
  }
  return `${local}/${clientId}`;
}

/** Who an internal id belongs to (wills published after a restart have no live client). */
export function identityOf(
  id: string,
  domain: string,
  rules: MqttOptions['acl'],
): Pick<ConnInfo, 'address' | 'acl' | 'clientId'> {
  const slash = id.indexOf('/');
  const user = slash === -1 ? ANONYMOUS : id.slice(0, slash);
  const clientId = slash === -1 ? id : id.slice(slash + 1);
  if (user.startsWith('@')) return { clientId, acl: ClientAcl.for(rules, { clientId }) };
  const address = Address.of(user, domain, clientId);
  return { clientId, address, acl: ClientAcl.for(rules, { username: address.local, clientId }) };
}

/** Why an aedes error ended a connection. */
export function classifyError(err: Error): { kind: CloseKind; text: string } {
  const m = err.message;
  if (m === 'keep alive timeout')
    return { kind: 'idle-timeout', text: 'keepalive expired [MQTT-3.1.2-24]' };
  if (m === 'connect did not arrive in time') return { kind: 'connection-timeout', text: m };
  if (m === 'drain timeout')
    return { kind: 'policy-violation', text: 'slow consumer: socket did not drain' };
  if (m.startsWith('maxInflightInbound')) return { kind: 'policy-violation', text: m };
  if (m === 'publish not authorized') return { kind: 'not-authorized', text: m };
  if ('code' in err && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code))
    return { kind: 'socket-error', text: err.code };
  return { kind: 'protocol-error', text: m };
}
