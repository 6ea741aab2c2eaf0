import type { Aedes, Client } from 'aedes';

/**
 * Per-subscriber outbound queues: one slow client only ever slows itself.
 *
 * aedes fans a PUBLISH out through mqemitter, which calls every matching
 * subscriber's deliver function and counts the message in flight until each
 * one called back — and aedes calls back only once the packet is written to
 * the socket, or, when the socket is full, once it drained (up to
 * `drainTimeout`). mqemitter delivers at most `concurrency` messages at a time
 * for the whole broker, so a subscriber to `#` that stops reading held every
 * slot after `concurrency` messages, and every other topic's deliveries
 * waited behind it for `drainTimeoutMs` (issue 20, item 7).
 *
 * Here a fan-out delivery is answered to mqemitter as soon as it is handed to
 * the subscriber's own queue (aedes' write path: the socket's buffer, and its
 * drain wait), and the queue is bounded in messages and bytes
 * (`maxQueuedMessages`, `maxQueuedBytes`). Past the bound:
 * - a QoS 0 message is dropped for that subscriber (counted, logged once per
 *   episode) — QoS 0 promises at most once;
 * - a QoS 1/2 message closes that subscriber's connection (close reason
 *   `policy-violation`, "slow consumer"). A persistent session's QoS 1/2
 *   copy is already in aedes' outgoing store (stored before fan-out), so it
 *   is sent again at the next connection: nothing acknowledged is lost.
 * A socket that does not drain at all is still closed after `drainTimeoutMs`.
 *
 * Deliveries that are not fan-out — retained messages after SUBSCRIBE and
 * the core's messages to one session (`client.publish`) — keep aedes' flow
 * control (the caller waits for the write), since they slow only their own
 * subscriber and the offline queue must not outrun the socket.
 */

type Deliver = (
  packet: { qos: number; topic: string; payload: Buffer | string },
  cb: () => void,
) => void;
type DeliverClient = Client & { deliver0: Deliver; deliverQoS: Deliver; conn: { destroy(): void } };

/** Set while mqemitter runs one subscription's handler: the deliver call it makes is fan-out. */
let fanout = false;

/**
 * Mark fan-out deliveries: aedes subscribes each client subscription with a
 * handler that synchronously calls the client's deliver function.
 */
export function markFanout(aedes: Aedes): void {
  type Fn = (packet: unknown, cb: () => void) => void;
  const a = aedes as unknown as {
    subscribe(t: string, f: Fn, d?: () => void): void;
    unsubscribe(t: string, f: Fn, d?: () => void): void;
  };
  const wrapped = new WeakMap<Fn, Fn>();
  const subscribe = a.subscribe.bind(a);
  const unsubscribe = a.unsubscribe.bind(a);
  a.subscribe = (topic, func, done) => {
    let w = wrapped.get(func);
    if (!w) {
      w = (packet, cb) => {
        fanout = true;
        try {
          func(packet, cb);
        } finally {
          fanout = false;
        }
      };
      wrapped.set(func, w);
    }
    subscribe(topic, w, done);
  };
  a.unsubscribe = (topic, func, done) => unsubscribe(topic, wrapped.get(func) ?? func, done);
}

export interface OutboundLimits {
  maxQueuedMessages: number;
  maxQueuedBytes: number;
}

export interface OutboundEvents {
  /** a QoS 0 message was dropped; `first` for the first of an episode */
  dropped(first: boolean): void;
  /** the queue overflowed with a QoS 1/2 message: the connection is being closed */
  overflow(text: string): void;
}

/** Give one client a bounded fan-out queue (see the module comment). */
export function boundOutbound(
  client: Client,
  limits: OutboundLimits,
  events: OutboundEvents,
): void {
  const c = client as DeliverClient;
  let messages = 0;
  let bytes = 0;
  let dropping = false;
  let closing = false;
  const gate =
    (original: Deliver, qos0: boolean): Deliver =>
    (packet, cb) => {
      if (!fanout) return original(packet, cb); // retained, direct, or nested (deliverQoS → deliver0)
      fanout = false;
      if (closing) return void setImmediate(cb);
      const size = packet.topic.length + (packet.payload?.length ?? 0);
      if (messages + 1 > limits.maxQueuedMessages || bytes + size > limits.maxQueuedBytes) {
        const text = `slow consumer: more than ${limits.maxQueuedMessages} messages or ${limits.maxQueuedBytes} bytes queued`;
        if (qos0 || packet.qos === 0) {
          events.dropped(!dropping);
          dropping = true;
        } else {
          closing = true;
          events.overflow(text);
          c.conn.destroy();
        }
        return void setImmediate(cb);
      }
      messages++;
      bytes += size;
      original(packet, () => {
        messages--;
        bytes -= size;
        if (messages === 0) dropping = false;
      });
      // mqemitter may go on with the next message at once: this subscriber's queue holds it.
      setImmediate(cb);
    };
  c.deliver0 = gate(c.deliver0, true);
  c.deliverQoS = gate(c.deliverQoS, false);
}
