/**
 * adapters/mqtt/guard.ts: the raw MQTT byte stream in front of aedes.
 * Contract:
 * - push() and unsupportedProtocolLevel() never throw; a refusal is a
 *   `failure` of kind policy-violation or protocol-error, and push() answers
 *   false from then on;
 * - never more than one packet's checked bytes are held (at most
 *   maxPacketSize);
 * - the verdict (refused or not, why, and the packets counted) is the same
 *   whether the bytes come in one chunk, cut up, or one byte at a time: the
 *   in-place fast path and the byte-by-byte path agree.
 */
import { unsupportedProtocolLevel, WireGuard } from '../../adapters/mqtt/guard.ts';
import { check, splitPoints, type FuzzTarget } from '../target.ts';

const MAX = 256;

function feed(
  data: Buffer,
  cuts: number[],
): { failure?: string; packets: number; pushes: boolean[] } {
  const g = new WireGuard(MAX);
  const pushes: boolean[] = [];
  let at = 0;
  for (const cut of cuts) {
    pushes.push(g.push(data.subarray(at, cut)));
    at = cut;
    const held = (g as unknown as { have: number; want: number }).want;
    check(held <= MAX + 4, `guard holds ${held} bytes for one check (max packet ${MAX})`);
  }
  const f = g.failure;
  if (f)
    check(
      f.kind === 'policy-violation' || f.kind === 'protocol-error',
      `unknown failure kind ${f.kind}`,
    );
  return { failure: f && `${f.kind}: ${f.text}`, packets: g.packets, pushes };
}

export const target: FuzzTarget = {
  about: 'MQTT wire guard: never throws, bounded buffering, same verdict however the bytes are cut',
  cover: ['/adapters/mqtt/guard.ts'],
  dict: [
    Buffer.from([
      0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00,
    ]), // CONNECT
    Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x68, 0x69]), // PUBLISH a "hi"
    Buffer.from([0x32, 0x07, 0x00, 0x01, 0x61, 0x00, 0x01, 0x68, 0x69]), // PUBLISH QoS 1
    Buffer.from([0x34, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00]), // PUBLISH QoS 2, id 0
    Buffer.from([0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x23, 0x00]), // SUBSCRIBE #
    Buffer.from([0xa2, 0x05, 0x00, 0x02, 0x00, 0x01, 0x2b]), // UNSUBSCRIBE +
    Buffer.from([0xc0, 0x00]), // PINGREQ
    Buffer.from([0xe0, 0x00]), // DISCONNECT
    Buffer.from([0xff, 0xff, 0xff, 0x7f]), // largest remaining length
    Buffer.from([0x80, 0x80, 0x80, 0x80, 0x01]), // five length bytes
    Buffer.from([0x00, 0x00]),
    Buffer.from([0xff, 0xff]),
    Buffer.from('MQIsdp'),
    Buffer.from([0xc0, 0x80]),
    Buffer.from([0xed, 0xa0, 0x80]),
  ],
  maxLen: 4096,
  fuzz(data) {
    unsupportedProtocolLevel(data);
    const seed = data.length ? data[0] ^ data[data.length - 1] : 0;
    const whole = feed(data, [data.length]);
    const cut = feed(data, splitPoints(data, seed));
    const bytes = feed(
      data,
      Array.from({ length: data.length }, (_, i) => i + 1),
    );
    for (const r of [whole, cut, bytes]) {
      const firstFalse = r.pushes.indexOf(false);
      check(
        firstFalse === -1 || r.pushes.slice(firstFalse).every((p) => !p),
        'push() answered true after a refusal',
      );
      check(
        (firstFalse !== -1) === (r.failure !== undefined),
        'push() result and failure disagree',
      );
    }
    check(
      whole.failure === bytes.failure && whole.failure === cut.failure,
      `verdict depends on chunking: whole "${whole.failure}", cut "${cut.failure}", bytewise "${bytes.failure}"`,
    );
    if (!whole.failure)
      check(
        whole.packets === bytes.packets && whole.packets === cut.packets,
        `packet count depends on chunking: ${whole.packets} / ${cut.packets} / ${bytes.packets}`,
      );
  },
};
