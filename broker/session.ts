import type { Address } from './address.ts';
import type { Envelope } from './envelope.ts';
import type { CloseReason } from './errors.ts';
import type { RosterItem } from './roster.ts';

/**
 * One authenticated connection, implemented by an adapter. The core calls
 * `deliver` for every envelope addressed to it and never blocks on it.
 */
export interface Session {
  readonly id: string;
  /** full address (with resource) once bound */
  readonly address: Address;
  readonly protocol: 'xmpp' | 'mqtt';
  /** tcp, tls, ws, wss, bosh… */
  readonly transport: string;
  /** the client's IP address, when the transport knows it (`parley session list`) */
  readonly remoteAddress?: string;
  /** presence priority [RFC6121 4.7.2.3]; negative means "never deliver bare-JID messages" */
  priority: number;
  /** sent available presence (and not unavailable since) */
  available: boolean;
  /** last broadcast presence, if any */
  presence?: Envelope;
  /** the status text of the unavailable presence that ended its availability, if it had one [XEP-0012 4] */
  goneStatus?: string;
  /** asked for the roster: gets roster pushes and subscription requests [RFC6121 2.1.6] */
  interested: boolean;
  /** addresses it sent directed presence to, for the unavailable on logout [RFC6121 4.6.3]; created on first use */
  directed?: Set<string>;
  /**
   * Hand an envelope to the client. A session that stores before it sends
   * (MQTT QoS 1 queues) returns a promise that resolves once the envelope is
   * safe; the offline queue waits for it before forgetting the message.
   */
  deliver(env: Envelope): void | Promise<void>;
  /**
   * Hand over a message from the offline queue with flow control: resolves
   * true once it has left the node (written out, the transport's buffer
   * drained), false when the session ended first; the queue removes only what
   * resolved true. Sessions without it get `deliver`.
   */
  deliverQueued?(env: Envelope): Promise<boolean>;
  /** a roster item changed [RFC6121 2.1.6] */
  rosterPush?(item: RosterItem, ver: string): void;
  close(reason: CloseReason): void;
}

/** The fields every adapter session starts with. */
export function sessionDefaults(): Pick<Session, 'priority' | 'available' | 'interested'> {
  return { priority: 0, available: false, interested: false };
}
