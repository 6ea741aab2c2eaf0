/**
 * Write coalescing for MQTT sockets: what one event-loop turn writes to a
 * socket leaves in one `writev`.
 *
 * aedes delivers each packet to each subscriber in its own `setImmediate`, and
 * mqtt-packet corks the socket only until the next tick, which Node runs
 * between immediates: a publish that reaches 1,000 subscribers, or a burst of
 * publishes to one subscriber, was one syscall per packet. A socket here is
 * held corked from its first write until one shared immediate after it, so
 * every packet written to it in the meantime goes out together. No packet
 * waits longer than the end of the loop iteration that wrote it (or of the
 * next one, when the write itself ran in an immediate).
 */
import type { Socket } from 'node:net';
import { Writable } from 'node:stream';

/** net.Socket and tls.TLSSocket inherit these; they do not override them. */
const write = Writable.prototype.write as (this: Writable, ...args: unknown[]) => boolean;
const cork = Writable.prototype.cork;

const HELD = Symbol('parley.mqtt.held');
type Held = Socket & { [HELD]?: boolean };

const held: Held[] = [];
let scheduled = false;

function flush(): void {
  scheduled = false;
  // Sockets written to while this runs (an uncork can trigger callbacks) are
  // held again and flushed by the next immediate.
  const list = held.splice(0);
  for (const s of list) {
    s[HELD] = false;
    s.uncork();
  }
}

/** Write through the socket's own `write`, holding the socket corked until the shared flush. */
function heldWrite(this: Held, ...args: unknown[]): boolean {
  if (!this[HELD] && !this.destroyed) {
    this[HELD] = true;
    cork.call(this);
    held.push(this);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  }
  return write.apply(this, args);
}

/** Make a TCP or TLS socket coalesce its writes per event-loop turn (see the module comment). */
export function coalesceWrites(sock: Socket): void {
  (sock as unknown as { write: typeof heldWrite }).write = heldWrite;
  // mqtt-packet corks a stream that has `cork` for each packet it writes and
  // uncorks it in a process.nextTick: a tick object and two calls per packet
  // for nothing, since the first write here holds the socket corked longer.
  // Without a visible `cork` it writes the packet's parts straight through
  // (they are held all the same). Nothing else corks these sockets.
  (sock as unknown as { cork: undefined }).cork = undefined;
}
