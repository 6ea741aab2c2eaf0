import net from 'node:net';

/**
 * One buffer every plain-TCP MQTT socket reads into. Node calls `onread`'s
 * callback synchronously for each read and nothing keeps the buffer past it,
 * so one per process serves every socket.
 */
const shared = Buffer.allocUnsafe(64 * 1024);

/**
 * Give an accepted plain-TCP socket Node's `onread` mode: the kernel's bytes
 * land in `shared` and are copied out into a slice of Node's 8 KB Buffer pool
 * (a read of 4 KB or more gets a buffer of its own, as before).
 *
 * Why: by default Node makes one ArrayBuffer per socket read. A QoS 1 message
 * takes two reads (PUBLISH in, PUBACK in), and V8 sweeps every young
 * ArrayBuffer's extension inside each scavenge's pause, on the event loop's
 * thread when GC is single-threaded (bin/parley on one core). At 2,000 msgs/s
 * that sweep was 0.2–0.57 ms of a 0.9–2.8 ms pause; with pooled copies it is
 * ~0.02 ms (bench/PROFILE-NOTES.md, thirteenth round). Pooled slices are what
 * `Buffer.from` gives every small buffer: a packet kept (an in-memory retained
 * message) keeps its 8 KB slab alive, at most.
 *
 * Node's `net.Server` has no `onread` option, so the handle is moved from the
 * socket the server made to one made with it: `new net.Socket({ handle,
 * onread })`, the construction Node's own server uses plus `onread`. The
 * server's socket is destroyed without its handle (which also takes it off
 * the server's connection count; the adapter keeps its own). When the socket
 * has no `_handle` (a Node that changed its internals), the socket is
 * returned as it came and reads as Node's default does.
 */
export function readIntoSharedBuffer(accepted: net.Socket): net.Socket {
  const internal = accepted as unknown as { _handle?: object | null };
  const handle = internal._handle;
  if (!handle || accepted.destroyed) return accepted;
  internal._handle = null;
  accepted.destroy();
  const sock: net.Socket = new net.Socket({
    handle,
    readable: true,
    writable: true,
    // false from the callback stops reading until the consumer drains (as a
    // full push does in Node's default mode); Readable's _read restarts it.
    onread: {
      buffer: shared,
      callback: (n: number, buf: Uint8Array) => sock.push(Buffer.from(buf.subarray(0, n))),
    },
  } as net.SocketConstructorOpts & { handle: object; onread: net.OnReadOpts });
  return sock;
}
