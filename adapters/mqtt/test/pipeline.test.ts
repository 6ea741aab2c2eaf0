/**
 * A device's chat PUBLISHes are pipelined (MqttSession.pipeline): the next
 * one is taken once the previous one's archive append is asked for. What the
 * device and the recipient see must not change: PUBACKs in the order the
 * PUBLISHes came [MQTT-4.6.0-2], messages delivered and errors answered in
 * the order sent.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Address } from '../../../broker/index.ts';
import { eventually, online } from '../../../broker/test/helpers.ts';
import { packetBytes } from '../../../conformance/mqtt-helpers.ts';
import { EmbeddedStorage } from '../../../storage/embedded.ts';
import { connectBytes, startHarness, type Harness } from './harness.ts';

// On the embedded store an append settles a turn later, with its batch: the
// case where a later PUBLISH could overtake an earlier one.
for (const store of ['memory', 'embedded'] as const) {
  describe(`mqtt chat pipelining keeps the order (${store} store)`, function () {
    let h: Harness;
    let dir: string | undefined;
    beforeEach(async () => {
      dir = store === 'embedded' ? await mkdtemp(join(tmpdir(), 'parley-mqtt-pipe-')) : undefined;
      h = await startHarness({}, dir ? new EmbeddedStorage({ dir }) : undefined);
    });
    afterEach(async () => {
      await h.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('a burst of QoS 1 PUBLISHes in one write: PUBACKs in order [MQTT-4.6.0-2], messages and errors in the order sent', async () => {
      const bob = await online(h.broker, 'bob', 'phone');
      const dev = await h.raw();
      dev.send(connectBytes({ clientId: 'dev1', username: 'alice', password: 'alice-pw' }));
      assert.equal(await dev.connack(), 0);
      dev.send({
        cmd: 'subscribe',
        messageId: 100,
        subscriptions: [{ topic: 'chat/alice', qos: 0 }],
      });
      await dev.next((p) => p.cmd === 'suback');

      const bodies: string[] = [];
      const errors: string[] = [];
      const burst: Buffer[] = [];
      for (let i = 1; i <= 40; i++) {
        let topic = 'chat/bob';
        let payload = JSON.stringify({ body: `b${i}`, id: `m${i}` });
        if (i % 10 === 4) {
          topic = 'chat/nobody'; // no such user: service-unavailable back on chat/alice
          errors.push(`m${i}:service-unavailable`);
        } else if (i % 10 === 8) {
          payload = `{"id":"m${i}"}`; // no body: bad-request back on chat/alice
          errors.push('?:bad-request'); // the payload is not a message, so the error has no id
        } else bodies.push(`b${i}`);
        burst.push(
          packetBytes({
            cmd: 'publish',
            topic,
            payload: Buffer.from(payload),
            qos: 1,
            messageId: i,
            retain: false,
            dup: false,
          }),
        );
      }
      dev.send(Buffer.concat(burst));

      await dev.next(
        (p) => p.cmd === 'puback' && (p as { messageId?: number }).messageId === 40,
        5000,
      );
      const acks = dev.packets
        .filter((p) => p.cmd === 'puback')
        .map((p) => (p as { messageId?: number }).messageId);
      assert.deepEqual(
        acks,
        Array.from({ length: 40 }, (_, i) => i + 1),
        'PUBACKs in the order of the PUBLISHes',
      );

      assert.deepEqual(
        bob.got('message').map((m) => m.body),
        bodies,
        'delivered in the order sent',
      );
      const seqs = bob.got('message').map((m) => m.seq as number);
      assert.deepEqual(
        seqs,
        [...seqs].sort((a, b) => a - b),
      );

      const errorsSeen = (): string[] =>
        dev.packets
          .filter((p) => p.cmd === 'publish')
          .map(
            (p) =>
              JSON.parse(String((p as { payload: Buffer }).payload)) as {
                type?: string;
                id?: string;
                error?: { condition: string };
              },
          )
          .filter((j) => j.type === 'error')
          .map((j) => `${j.id ?? '?'}:${j.error?.condition}`);
      await eventually(() => assert.equal(errorsSeen().length, errors.length));
      const errs = errorsSeen();
      assert.deepEqual(errs, errors, 'errors answered in the order sent');

      const page = await h.broker.archive.query(
        Address.parse('alice@localhost'),
        Address.parse('bob@localhost'),
        { limit: 100 },
      );
      assert.deepEqual(
        page.envelopes.map((e) => e.body),
        bodies,
        'stored in the order sent',
      );
    });
  });
}
