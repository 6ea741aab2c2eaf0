/**
 * The bus's wire format (docs/cluster.md "Wire format"). One Redis PUBLISH
 * carries one frame; a frame carries every message one node sent to one
 * channel in one turn of its event loop, so a message to many recipients on
 * one node costs one publish.
 *
 *   byte 0      0x70 ('p'), so a stray publisher on our channels is told apart
 *   byte 1      wire version (WIRE_VERSION)
 *   byte 2      length L of the sender's node id (1..255)
 *   bytes 3..   the node id (UTF-8), then the send time (float64 big-endian, ms since the epoch)
 *   rest        JSON: [[type, payload], ...]
 *
 * A node accepts frames of its own version only. A frame of another version
 * (a rolling upgrade across a wire change) is refused and logged
 * once per sender and version; the heartbeat announces each node's version,
 * so `parley cluster status` shows the mix. Within a version, unknown
 * message types are ignored by the receiver, so a version may add types.
 */

export const WIRE_MAGIC = 0x70;
export const WIRE_VERSION = 1;

/** The largest frame we decode (Redis' own limit on a bulk string is 512 MiB). */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

export interface Frame {
  from: string;
  sentAt: number;
  messages: [type: string, payload: unknown][];
}

export type Decoded =
  | { ok: true; frame: Frame }
  | { ok: false; reason: 'not-ours' | 'version'; version?: number; from?: string };

export function encodeFrame(
  from: string,
  messages: [string, unknown][],
  sentAt = Date.now(),
): Buffer {
  const id = Buffer.from(from, 'utf8');
  if (id.length === 0 || id.length > 255) throw new Error('node id must be 1 to 255 bytes');
  const body = Buffer.from(JSON.stringify(messages), 'utf8');
  const out = Buffer.allocUnsafe(3 + id.length + 8 + body.length);
  out[0] = WIRE_MAGIC;
  out[1] = WIRE_VERSION;
  out[2] = id.length;
  id.copy(out, 3);
  out.writeDoubleBE(sentAt, 3 + id.length);
  body.copy(out, 11 + id.length);
  return out;
}

/** Decode a frame; never throws (a bad frame is reported, not fatal). */
export function decodeFrame(buf: Buffer): Decoded {
  if (buf.length < 12 || buf.length > MAX_FRAME_BYTES || buf[0] !== WIRE_MAGIC)
    return { ok: false, reason: 'not-ours' };
  const idLen = buf[2];
  if (idLen === 0 || buf.length < 11 + idLen) return { ok: false, reason: 'not-ours' };
  const from = buf.toString('utf8', 3, 3 + idLen);
  if (buf[1] !== WIRE_VERSION) return { ok: false, reason: 'version', version: buf[1], from };
  const sentAt = buf.readDoubleBE(3 + idLen);
  let messages: unknown;
  try {
    messages = JSON.parse(buf.toString('utf8', 11 + idLen));
  } catch {
    return { ok: false, reason: 'not-ours', from };
  }
  if (
    !Array.isArray(messages) ||
    !messages.every((m) => Array.isArray(m) && m.length === 2 && typeof m[0] === 'string')
  ) {
    return { ok: false, reason: 'not-ours', from };
  }
  return { ok: true, frame: { from, sentAt, messages: messages as Frame['messages'] } };
}
