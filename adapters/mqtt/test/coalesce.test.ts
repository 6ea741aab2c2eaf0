import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import mqttPacket from 'mqtt-packet';
import { coalesceWrites } from '../coalesce.ts';
import { socketPair } from './socket-pair.ts';

const pair = () => socketPair();

/** Count the write requests the socket hands to its handle (one per syscall). */
function countWrites(sock: net.Socket): { n: number } {
  const c = { n: 0 };
  const s = sock as unknown as {
    _write: (...a: unknown[]) => void;
    _writev: (...a: unknown[]) => void;
  };
  const w = s._write.bind(sock);
  const wv = s._writev.bind(sock);
  s._write = (...a) => (c.n++, w(...a));
  s._writev = (...a) => (c.n++, wv(...a));
  return c;
}

async function received(client: net.Socket, bytes: number): Promise<string> {
  let got = '';
  while (got.length < bytes) got += ((await once(client, 'data')) as [Buffer])[0].toString();
  return got;
}

describe('mqtt write coalescing (adapters/mqtt/coalesce.ts)', function () {
  it('packets written to one socket in separate immediates of one turn leave in one write, in order', async function () {
    const { server, client, close } = await pair();
    try {
      coalesceWrites(server);
      const writes = countWrites(server);
      // As aedes does: each delivery in its own setImmediate, written by mqtt-packet (several writes per packet).
      const corked: number[] = [];
      for (const topic of ['one', 'two', 'three']) {
        setImmediate(() => {
          mqttPacket.writeToStream(
            {
              cmd: 'publish',
              topic,
              payload: Buffer.from(topic),
              qos: 0,
              dup: false,
              retain: false,
            },
            server,
          );
          corked.push(server.writableCorked);
        });
      }
      // Each: 2 bytes of fixed header, 2 of topic length, the topic, the payload (the topic again).
      const got = await received(client, 3 * 4 + 2 * (3 + 3 + 5));
      assert.deepEqual(
        [...got.matchAll(/(one|two|three)\1/g)].map((m) => m[1]),
        ['one', 'two', 'three'],
      );
      assert.equal(writes.n, 1);
      // Held once; mqtt-packet did not cork again per packet (and schedule a tick to uncork).
      assert.deepEqual(corked, [1, 1, 1]);
    } finally {
      close();
    }
  });

  it('without it, the same writes are one system call each (what the module fixes)', async function () {
    const { server, client, close } = await pair();
    try {
      const writes = countWrites(server);
      for (const part of ['one,', 'two,', 'three']) {
        setImmediate(() => {
          server.cork();
          server.write(part);
          process.nextTick(() => server.uncork());
        });
      }
      assert.equal(await received(client, 13), 'one,two,three');
      assert.equal(writes.n, 3);
    } finally {
      close();
    }
  });

  it('writes in later turns are flushed too, and a socket destroyed while held is left alone', async function () {
    const a = await pair();
    const b = await pair();
    try {
      coalesceWrites(a.server);
      coalesceWrites(b.server);
      a.server.write('first');
      b.server.write('gone');
      b.server.destroy();
      assert.equal(await received(a.client, 5), 'first');
      await new Promise((r) => setImmediate(r));
      a.server.write('second');
      assert.equal(await received(a.client, 6), 'second');
      // end() delivers what is held before the FIN.
      a.server.write('last');
      a.server.end();
      assert.equal(await received(a.client, 4), 'last');
    } finally {
      a.close();
      b.close();
    }
  });
});
