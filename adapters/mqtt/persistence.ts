import type { Client } from 'aedes';

/** The aedes persistence call this module answers itself; everything else passes through. */
interface OutgoingClear {
  outgoingClearMessageId(client: Client, packet: unknown): Promise<unknown>;
}

/**
 * Every PUBACK and PUBCOMP makes aedes look up the acknowledged packet in the
 * persistence (`outgoingClearMessageId`), which for a durable backend is a
 * disk read. A clean-session client never has anything there: aedes stores
 * neither its subscriptions nor its outgoing queue (only `clean === false`
 * clients do), so for it the answer is "nothing" without asking — the
 * answer the read would give. With it, a QoS 1 message to a clean-session
 * subscriber costs no storage access at all, as in Mosquitto.
 */
export function answerCleanSessionAcks<P>(persistence: P): P {
  const p = persistence as P & OutgoingClear;
  if (typeof p?.outgoingClearMessageId !== 'function') return persistence;
  const clear = p.outgoingClearMessageId.bind(p);
  p.outgoingClearMessageId = (client, packet) =>
    client.clean ? Promise.resolve(undefined) : clear(client, packet);
  return p;
}
