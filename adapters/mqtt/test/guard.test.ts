import assert from 'node:assert/strict';
import { unsupportedProtocolLevel, WireGuard } from '../guard.ts';

/** A packet: type byte, remaining length, body. */
function packet(first: number, body: Buffer): Buffer {
  const len: number[] = [];
  let n = body.length;
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    len.push(b);
  } while (n > 0);
  return Buffer.concat([Buffer.from([first, ...len]), body]);
}

const str = (s: string | Buffer) => {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};
const publish = (topic: string | Buffer, payloadLen: number, qos = 0, id = 1) =>
  packet(
    0x30 | (qos << 1),
    Buffer.concat([
      str(topic),
      qos ? Buffer.from([id >> 8, id & 0xff]) : Buffer.alloc(0),
      Buffer.alloc(payloadLen, 7),
    ]),
  );
const subscribe = (id: number, ...filters: (string | Buffer)[]) =>
  packet(
    0x82,
    Buffer.concat([
      Buffer.from([id >> 8, id & 0xff]),
      ...filters.map((f) => Buffer.concat([str(f), Buffer.from([0])])),
    ]),
  );

/** Feed bytes in small pieces; the guard's verdict and failure. */
function feed(bytes: Buffer, max = 1000, step = 3): WireGuard {
  const g = new WireGuard(max);
  for (let i = 0; i < bytes.length; i += step) if (!g.push(bytes.subarray(i, i + step))) break;
  return g;
}

describe('mqtt wire guard', () => {
  it('passes well-formed packets up to the limit, split anywhere', () => {
    const stream = Buffer.concat([
      publish('a/b', 0),
      publish('a/ü', 120, 1),
      subscribe(7, 'x/#', 'y'),
      packet(0xc0, Buffer.alloc(0)),
      publish('t', 1000 - 5),
    ]);
    for (const step of [1, 3, 64, 4096])
      assert.equal(feed(stream, 1000, step).failure, undefined, `step ${step}`);
  });

  it('counts every packet, whole or split, and skips long bodies across chunks', () => {
    const stream = Buffer.concat([
      publish('a/b', 0),
      publish('a/ü', 300, 1),
      subscribe(7, 'x/#'),
      packet(0xc0, Buffer.alloc(0)),
      publish('t', 900),
    ]);
    for (const step of [1, 7, 100, 4096])
      assert.equal(feed(stream, 1000, step).packets, 5, `step ${step}`);
  });

  it('refuses a packet over the limit from its fixed header alone', () => {
    const g = new WireGuard(1000);
    assert.equal(g.push(publish('t', 1001).subarray(0, 3)), false);
    assert.equal(g.failure?.kind, 'policy-violation');
  });

  it('refuses a remaining length longer than 4 bytes [MQTT-2.2.3]', () => {
    assert.match(
      feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), 1 << 30).failure!.text,
      /MQTT-2.2.3/,
    );
  });

  const table: [string, Buffer, RegExp][] = [
    ['ill-formed UTF-8 in a topic', publish(Buffer.from([0xc3, 0x28]), 1), /MQTT-1.5.3-1/],
    ['U+0000 in a topic', publish(Buffer.from('a\0b'), 1), /MQTT-1.5.3-2/],
    ['packet id 0 on a QoS 1 PUBLISH', publish('a', 1, 1, 0), /MQTT-2.3.1-1/],
    ['packet id 0 on a SUBSCRIBE', subscribe(0, 'a'), /MQTT-2.3.1-1/],
    ['SUBSCRIBE without a filter', subscribe(5), /MQTT-3.8.3-3/],
    ['UNSUBSCRIBE without a filter', packet(0xa2, Buffer.from([0, 5])), /MQTT-3.10.3-2/],
    ['ill-formed UTF-8 in a filter', subscribe(5, Buffer.from([0xff])), /MQTT-1.5.3-1/],
    ['PINGREQ with a body', packet(0xc0, Buffer.from([0])), /MQTT-4.8.0-1/],
    ['topic length past the packet', packet(0x30, Buffer.from([0, 9, 0x61])), /MQTT-4.8.0-1/],
  ];
  for (const [what, bytes, rule] of table) {
    it(`refuses ${what}`, () => {
      // In small pieces (byte-by-byte path) and whole (in-place path, which defers to the other on any doubt).
      for (const step of [3, 4096]) {
        const f = feed(bytes, 1000, step);
        assert.equal(f.failure?.kind, 'protocol-error', `step ${step}`);
        assert.match(f.failure!.text, rule);
      }
    });
  }

  it('spots a CONNECT with a protocol level mqtt-packet cannot parse [MQTT-3.1.2-2]', () => {
    const connect = (level: number) =>
      packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([level, 2, 0, 60]), str('c')]));
    assert.equal(unsupportedProtocolLevel(connect(4)), false);
    assert.equal(unsupportedProtocolLevel(connect(5)), false);
    assert.equal(unsupportedProtocolLevel(connect(6)), true);
    assert.equal(unsupportedProtocolLevel(connect(0)), true);
  });

  it('closes on a CONNECT whose client id, will topic or user name is not well-formed UTF-8 [MQTT-1.5.3-1]', () => {
    const bad = Buffer.from([0xc3, 0x28]);
    const connect = (o: {
      id?: Buffer | string;
      will?: Buffer | string;
      user?: Buffer | string;
    }) => {
      const flags = 0x02 | (o.will !== undefined ? 0x04 : 0) | (o.user !== undefined ? 0x80 : 0);
      const parts = [str('MQTT'), Buffer.from([4, flags, 0, 60]), str(o.id ?? 'c')];
      if (o.will !== undefined) parts.push(str(o.will), str('bye'));
      if (o.user !== undefined) parts.push(str(o.user));
      return packet(0x10, Buffer.concat(parts));
    };
    assert.equal(feed(connect({ id: 'ok', will: 'w/t', user: 'kim' })).failure, undefined);
    assert.match(feed(connect({ id: bad })).failure!.text, /client id/);
    assert.match(feed(connect({ will: bad })).failure!.text, /will topic/);
    assert.match(feed(connect({ user: bad })).failure!.text, /user name/);
    assert.match(feed(connect({ user: Buffer.from('a\0b') })).failure!.text, /user name/);
    assert.equal(
      feed(connect({ will: 'w', user: Buffer.from([0xe2, 0x82, 0xac]) })).failure,
      undefined,
    ); // U+20AC is fine
  });
});
