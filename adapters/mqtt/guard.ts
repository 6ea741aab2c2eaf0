/**
 * Checks on the raw MQTT byte stream that mqtt-packet and aedes leave out.
 * The guard walks packet boundaries as the bytes arrive, so an oversized
 * packet is refused from its fixed header, before the parser has buffered it
 * (mqtt-packet has no size limit, just as ltx has none for XMPP), and the few
 * well-formedness rules aedes does not enforce close the connection, as the
 * specification requires for a malformed packet [MQTT-4.8.0-1].
 */

import { isUtf8 } from 'node:buffer';

/** Why the guard refused a stream: a CloseKind and a text with the rule. */
export interface GuardFailure {
  kind: 'policy-violation' | 'protocol-error';
  text: string;
}

const CONNECT = 1;
const PUBLISH = 3;
const SUBSCRIBE = 8;
const UNSUBSCRIBE = 10;
const PINGREQ = 12;
const DISCONNECT = 14;

/** No body being collected (shared, frozen: only `collect` starts a fresh array to push to). */
const NO_BODY = Object.freeze([]) as unknown as Buffer[];

/**
 * One connection's byte stream, checked packet by packet: size from the fixed
 * header, and for PUBLISH, SUBSCRIBE and UNSUBSCRIBE the bytes a rule needs
 * (topic, packet id, filters) — never more than one packet is held.
 */
export class WireGuard {
  private readonly max: number;
  /** bytes of the current packet's body still to skip unseen */
  private skip = 0;
  /** inside a fixed header: -1 = expecting the type byte, 0..3 = remaining-length byte index */
  private lenByte = -1;
  private len = 0;
  private mult = 1;
  private type = 0;
  private flags = 0;
  /** body bytes being collected for a check, and how many are wanted */
  private body: Buffer[] = NO_BODY;
  private have = 0;
  private want = 0;
  /** why the stream was refused, once it was */
  failure?: GuardFailure;
  /** control packets seen so far (for metrics) */
  packets = 0;

  constructor(maxPacketSize: number) {
    this.max = maxPacketSize;
  }

  /** Feed a chunk; false once the stream must be closed. */
  push(chunk: Buffer): boolean {
    let i = 0;
    while (i < chunk.length && !this.failure) {
      if (this.want === 0 && this.skip === 0 && this.lenByte === -1) {
        // At a packet boundary: most packets are checked in place, without copying.
        const next = this.inPlace(chunk, i);
        if (next >= 0) {
          i = next;
          continue;
        }
      }
      if (this.want > 0) {
        const n = Math.min(this.want - this.have, chunk.length - i);
        this.body.push(chunk.subarray(i, i + n));
        this.have += n;
        i += n;
        if (this.have === this.want) this.collected();
        continue;
      }
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const byte = chunk[i++];
      if (this.lenByte === -1) {
        this.type = byte >> 4;
        this.flags = byte & 0x0f;
        this.lenByte = 0;
        this.len = 0;
        this.mult = 1;
        continue;
      }
      // Remaining Length: at most 4 bytes, 7 bits each, high bit = more [MQTT-2.2.3]
      this.len += (byte & 0x7f) * this.mult;
      this.mult *= 128;
      if (byte & 0x80) {
        if (++this.lenByte >= 4)
          this.fail('protocol-error', 'malformed remaining length [MQTT-2.2.3]');
        continue;
      }
      this.lenByte = -1;
      this.headerDone();
    }
    return !this.failure;
  }

  /**
   * The fast path for a packet that starts at `i` with its fixed header (and,
   * for PUBLISH, its topic and packet id) inside this chunk: the same checks as
   * the byte-by-byte path, read straight from the chunk. Returns the index after
   * the bytes consumed (the rest of a long body is skipped via `skip`), or -1
   * to let the general path handle the packet (split headers, SUBSCRIBE,
   * UNSUBSCRIBE, PINGREQ, DISCONNECT, and anything malformed).
   */
  private inPlace(chunk: Buffer, i: number): number {
    const first = chunk[i];
    const type = first >> 4;
    if (
      type === CONNECT ||
      type === SUBSCRIBE ||
      type === UNSUBSCRIBE ||
      type === PINGREQ ||
      type === DISCONNECT
    )
      return -1;
    let p = i + 1;
    let len = 0;
    let mult = 1;
    for (let k = 0; ; k++) {
      if (k >= 4 || p >= chunk.length) return -1;
      const byte = chunk[p++];
      len += (byte & 0x7f) * mult;
      mult *= 128;
      if (!(byte & 0x80)) break;
    }
    if (len > this.max) return -1; // refused by the general path, with its message
    if (type === PUBLISH) {
      if (len < 2 || p + 2 > chunk.length) return -1;
      const topicLen = chunk.readUInt16BE(p);
      const idLen = (first >> 1) & 3 ? 2 : 0;
      if (2 + topicLen + idLen > len || p + 2 + topicLen + idLen > chunk.length) return -1;
      if (!validString(chunk, p + 2, p + 2 + topicLen)) return -1;
      if (idLen && chunk.readUInt16BE(p + 2 + topicLen) === 0) return -1;
    }
    this.packets++;
    const end = p + len;
    if (end <= chunk.length) return end;
    this.skip = end - chunk.length;
    return chunk.length;
  }

  private fail(kind: GuardFailure['kind'], text: string): void {
    this.failure ??= { kind, text };
  }

  private headerDone(): void {
    this.packets++;
    if (this.len > this.max)
      return this.fail('policy-violation', `packet larger than ${this.max} bytes`);
    if ((this.type === PINGREQ || this.type === DISCONNECT) && this.len !== 0) {
      return this.fail('protocol-error', 'PINGREQ and DISCONNECT have no body [MQTT-4.8.0-1]');
    }
    if (this.type === PUBLISH) return this.collect(Math.min(this.len, 2));
    if (this.type === SUBSCRIBE || this.type === UNSUBSCRIBE || this.type === CONNECT)
      return this.collect(this.len);
    this.skip = this.len;
  }

  private collect(n: number): void {
    this.body = [];
    this.have = 0;
    this.want = n;
    this.skip = this.len - n;
    if (n === 0) this.collected();
  }

  /** Everything wanted has arrived: check it (PUBLISH may want its topic next). */
  private collected(): void {
    const body = Buffer.concat(this.body);
    this.want = 0;
    this.body = NO_BODY;
    if (this.type === PUBLISH) {
      if (body.length === 2) {
        // topic length known: collect topic (+ packet id at QoS > 0)
        const idLen = (this.flags >> 1) & 3 ? 2 : 0;
        const n = body.readUInt16BE(0) + idLen;
        if (n > this.skip)
          return this.fail('protocol-error', 'topic longer than the packet [MQTT-4.8.0-1]');
        this.type = -PUBLISH; // second stage
        this.body = [body];
        this.have = 2;
        this.want = 2 + n;
        this.skip -= n;
        return;
      }
      return;
    }
    if (this.type === -PUBLISH) {
      const topicLen = body.readUInt16BE(0);
      if (!validString(body, 2, 2 + topicLen))
        return this.fail(
          'protocol-error',
          'topic is not well-formed UTF-8 without U+0000 [MQTT-1.5.3-1] [MQTT-1.5.3-2]',
        );
      if (body.length > 2 + topicLen && body.readUInt16BE(2 + topicLen) === 0)
        return this.fail('protocol-error', 'packet identifier 0 [MQTT-2.3.1-1]');
      return;
    }
    if (this.type === CONNECT) {
      const bad = connectStrings(body);
      if (bad)
        this.fail(
          'protocol-error',
          `${bad} is not well-formed UTF-8 without U+0000 [MQTT-1.5.3-1] [MQTT-1.5.3-2]`,
        );
      return;
    }
    // SUBSCRIBE / UNSUBSCRIBE: packet id, then at least one filter [MQTT-3.8.3-3] [MQTT-3.10.3-2]
    if (body.length < 2 || body.readUInt16BE(0) === 0)
      return this.fail('protocol-error', 'packet identifier 0 or missing [MQTT-2.3.1-1]');
    if (body.length === 2)
      return this.fail('protocol-error', 'no topic filter [MQTT-3.8.3-3] [MQTT-3.10.3-2]');
    let p = 2;
    while (p < body.length) {
      if (p + 2 > body.length) return this.fail('protocol-error', 'truncated topic filter');
      const n = body.readUInt16BE(p);
      if (p + 2 + n > body.length || !validString(body, p + 2, p + 2 + n)) {
        return this.fail(
          'protocol-error',
          'topic filter is not well-formed UTF-8 without U+0000 [MQTT-1.5.3-1] [MQTT-1.5.3-2]',
        );
      }
      p += 2 + n + (this.type === SUBSCRIBE ? 1 : 0);
    }
  }
}

/**
 * The first UTF-8 string field of a CONNECT body that is not well-formed
 * [MQTT-1.5.3-1]: protocol name, client id, will topic, user name (the will
 * message and the password are binary). A body too short for its fields is
 * left to mqtt-packet, which refuses it.
 */
function connectStrings(body: Buffer): string | undefined {
  let p = 0;
  const str = (): 'ok' | 'bad' | 'short' => {
    if (p + 2 > body.length) return 'short';
    const n = body.readUInt16BE(p);
    if (p + 2 + n > body.length) return 'short';
    const ok = validString(body, p + 2, p + 2 + n);
    p += 2 + n;
    return ok ? 'ok' : 'bad';
  };
  if (str() === 'bad') return 'the protocol name';
  if (p + 4 > body.length) return undefined;
  const flags = body[p + 1];
  p += 4; // level, flags, keepalive
  const checks: [string, boolean][] = [
    ['the client id [MQTT-3.1.3-4]', true],
    ['the will topic', (flags & 0x04) !== 0],
    ['', (flags & 0x04) !== 0], // will message: binary, skipped
    ['the user name [MQTT-3.1.3-11]', (flags & 0x80) !== 0],
  ];
  for (const [what, present] of checks) {
    if (!present) continue;
    if (what === '') {
      if (p + 2 > body.length) return undefined;
      p += 2 + body.readUInt16BE(p);
      continue;
    }
    const r = str();
    if (r === 'short') return undefined;
    if (r === 'bad') return what;
  }
  return undefined;
}

/** Bytes [from, to) are well-formed UTF-8 without U+0000 [MQTT-1.5.3-1] [MQTT-1.5.3-2]; ASCII is checked inline. */
function validString(bytes: Buffer, from: number, to: number): boolean {
  let ascii = true;
  for (let j = from; j < to; j++) {
    const b = bytes[j];
    if (b === 0) return false;
    if (b >= 0x80) ascii = false;
  }
  return ascii || isUtf8(bytes.subarray(from, to));
}

/**
 * True when `chunk` starts with a CONNECT whose protocol level this server
 * cannot parse (anything but 3, 4 and 5). mqtt-packet rejects those levels
 * with a parse error, so the adapter must send CONNACK 0x01 itself
 * [MQTT-3.1.2-2]; level 5 reaches aedes, which answers 0x01 on its own.
 */
export function unsupportedProtocolLevel(chunk: Buffer): boolean {
  if (chunk.length < 2 || chunk[0] !== 0x10) return false;
  let i = 1;
  while (i < chunk.length && chunk[i] & 0x80 && i < 5) i++; // skip the remaining length
  i++;
  if (i + 2 > chunk.length) return false;
  const nameLen = chunk.readUInt16BE(i);
  const name = chunk.subarray(i + 2, i + 2 + nameLen).toString('latin1');
  const level = chunk[i + 2 + nameLen];
  if (level === undefined || (name !== 'MQTT' && name !== 'MQIsdp')) return false;
  return level !== 3 && level !== 4 && level !== 5;
}

/** CONNACK with return code 0x01, unacceptable protocol level [MQTT-3.2.2-5]. Never renumber. */
export const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 0x02, 0x00, 0x01]);
