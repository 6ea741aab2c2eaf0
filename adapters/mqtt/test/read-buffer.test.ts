import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readIntoSharedBuffer } from '../read-buffer.ts';
import { socketPair } from './socket-pair.ts';
import { startHarness } from './harness.ts';

/** A loopback pair whose server side went through readIntoSharedBuffer (or not, for the control). */
const pair = (shared = true) =>
  socketPair(shared ? { pauseOnConnect: true, adopt: readIntoSharedBuffer } : {});

/** The next chunk the server side reads. */
const nextChunk = (s: net.Socket): Promise<Buffer> => once(s, 'data').then(([c]) => c as Buffer);

/** Two small writes, each read on its own (the second is sent after the first arrived). */
async function twoSmallReads(server: net.Socket, client: net.Socket): Promise<[Buffer, Buffer]> {
  let c = nextChunk(server);
  client.write('first packet');
  const a = await c;
  c = nextChunk(server);
  client.write('SECOND PACKET');
  return [a, await c];
}

describe('mqtt: plain-TCP reads into one shared buffer (read-buffer.ts)', () => {
  it('hands on every byte in order, small and large writes alike', async () => {
    const { server, client, close } = await pair();
    try {
      const parts = [1, 2, 3, 100, 4095, 4096, 4097, 65_535, 65_536, 200_000, 7, 1_000_000].map(
        (n) => randomBytes(n),
      );
      const want = createHash('sha256');
      for (const p of parts) want.update(p);
      const total = parts.reduce((a, p) => a + p.length, 0);
      const got = createHash('sha256');
      let n = 0;
      const done = new Promise<void>((resolve) =>
        server.on('data', (c: Buffer) => {
          got.update(c);
          if ((n += c.length) >= total) resolve();
        }),
      );
      for (const p of parts) client.write(p);
      await done;
      assert.equal(n, total);
      assert.equal(got.digest('hex'), want.digest('hex'));
    } finally {
      close();
    }
  });

  it('small reads share a pooled slab, and a chunk handed on is not overwritten by the next read', async () => {
    const { server, client, close } = await pair();
    try {
      const [a, b] = await twoSmallReads(server, client);
      assert.equal(a.toString(), 'first packet');
      assert.equal(b.toString(), 'SECOND PACKET');
      // No ArrayBuffer of its own per read: both are slices of Node's 8 KB pool.
      assert.equal(a.buffer, b.buffer);
      assert.ok(a.buffer.byteLength >= 8192);
    } finally {
      close();
    }
  });

  it('control: with Node default reads, each read has an ArrayBuffer of its own', async () => {
    const { server, client, close } = await pair(false);
    try {
      const [a, b] = await twoSmallReads(server, client);
      assert.notEqual(a.buffer, b.buffer);
    } finally {
      close();
    }
  });

  it('stops reading while the consumer does not read, and loses nothing when it does', async () => {
    const { server, client, close } = await pair();
    try {
      // aedes consumes as here: 'readable', then read() until null. Until it reads, the
      // socket's buffer fills to its high-water mark and push() says stop.
      let reading = false;
      const chunks: Buffer[] = [];
      let n = 0;
      const data = randomBytes(32 * 1024 * 1024);
      const done = new Promise<void>((resolve) =>
        server.on('readable', () => {
          if (!reading) return;
          for (let c: Buffer | null; (c = server.read() as Buffer | null) !== null;) {
            chunks.push(c);
            if ((n += c.length) >= data.length) resolve();
          }
        }),
      );
      client.write(data);
      await new Promise((r) => setTimeout(r, 300));
      // The kernel's buffers filled and the rest waits in the client: the server did not read it all into memory.
      assert.ok(
        server.readableLength < 1024 * 1024,
        `server buffered ${server.readableLength} B unread`,
      );
      assert.ok(client.writableLength > 0, 'the client still holds unsent data');
      reading = true;
      server.emit('readable');
      await done;
      assert.ok(Buffer.concat(chunks).equals(data));
    } finally {
      close();
    }
  });

  it('keeps the peer address, writes, end and close', async () => {
    const { server, client, close } = await pair();
    try {
      assert.equal(server.remoteAddress, '127.0.0.1');
      assert.equal(server.remotePort, client.localPort);
      const reply = once(client, 'data');
      server.write('pong');
      assert.equal(String((await reply)[0]), 'pong');
      const ended = once(server, 'end');
      const closed = once(server, 'close');
      server.resume();
      client.end();
      await ended;
      server.end();
      await closed;
    } finally {
      close();
    }
  });

  for (const sharedReadBuffer of [true, false]) {
    it(`the MQTT listener with mqtt.sharedReadBuffer ${sharedReadBuffer}: QoS 1 publishes of 5 B to 200 KB arrive whole and in order [MQTT-4.6.0-5]`, async () => {
      const h = await startHarness({ sharedReadBuffer });
      try {
        const reader = await h.login('bob', 'r');
        await reader.subscribeAsync('data/#', { qos: 1 });
        const sent = [
          Buffer.from('hello'),
          randomBytes(200_000),
          ...Array.from({ length: 30 }, (_, i) => Buffer.from(`small ${i}`)),
          randomBytes(70_000),
        ];
        const got: Buffer[] = [];
        const all = new Promise<void>((resolve) =>
          reader.on('message', (_t, payload: Buffer) => {
            got.push(Buffer.from(payload));
            if (got.length === sent.length) resolve();
          }),
        );
        const writer = await h.login('alice', 'w');
        // All at once: the small ones share reads, the large ones span several; delivered in the order sent [MQTT-4.6.0-5]
        await Promise.all(sent.map((p) => writer.publishAsync('data/x', p, { qos: 1 })));
        await all;
        assert.equal(got.length, sent.length);
        sent.forEach((p, i) =>
          assert.ok(got[i]!.equals(p), `message ${i} (${p.length} B) arrived whole`),
        );
      } finally {
        await h.stop();
      }
    });
  }

  it('the MQTT listener reads through the shared buffer by default, and as Node does with the option off', async () => {
    const slabs = async (opts: {
      sharedReadBuffer?: boolean;
    }): Promise<[ArrayBufferLike, ArrayBufferLike]> => {
      const h = await startHarness(opts);
      try {
        const writer = await h.login('alice', 'w');
        // The server side of the one connection: what aedes reads from.
        const [sock] = [...(h.server as unknown as { sockets: Set<net.Socket> }).sockets];
        const chunks: Buffer[] = [];
        sock!.on('data', (c: Buffer) => chunks.push(c));
        await writer.publishAsync('data/x', 'one', { qos: 1 }); // PUBACK back: each PUBLISH is a read of its own
        await writer.publishAsync('data/x', 'two', { qos: 1 });
        assert.equal(chunks.length, 2);
        return [chunks[0]!.buffer, chunks[1]!.buffer];
      } finally {
        await h.stop();
      }
    };
    const [a, b] = await slabs({});
    assert.equal(a, b, 'default: both reads are slices of one pooled slab');
    const [c, d] = await slabs({ sharedReadBuffer: false });
    assert.notEqual(c, d, 'off: each read has an ArrayBuffer of its own');
  });
});
