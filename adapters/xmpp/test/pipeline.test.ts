/**
 * One stream's messages are pipelined (Router.route with `ord`): the next
 * stanza is taken once a message's archive append is asked for. What the
 * peers see must not change: stanzas from one sender arrive in the order
 * sent [RFC6120 10.1], whatever path each one takes (stored to the bare
 * address, to a full address, not stored, bounced), and an IQ sent after
 * them is answered after them.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Address } from '../../../broker/index.ts';
import { EmbeddedStorage } from '../../../storage/embedded.ts';
import { Harness, parseOne, stanzaError, type Client } from './harness.ts';

// On the embedded store an append settles a turn later, with its batch, so an
// unstored message would overtake stored ones if the router did not wait.
for (const store of ['memory', 'embedded'] as const)
  describe(`xmpp message pipelining keeps the order on the wire (${store} store) [RFC6120 10.1]`, function () {
    let h: Harness;
    let alice: Client;
    let bob: Client;
    let dir: string | undefined;

    beforeEach(async () => {
      dir = store === 'embedded' ? await mkdtemp(join(tmpdir(), 'parley-pipe-')) : undefined;
      h = await Harness.start(dir ? { storage: new EmbeddedStorage({ dir }) } : {});
      ({ client: alice } = await h.user('alice', 'alice-pw', 'desk'));
      ({ client: bob } = await h.user('bob', 'bob-pw', 'phone'));
      await alice.available();
      await bob.available();
      alice.drain();
      bob.drain();
    });
    afterEach(async () => {
      await h.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    /** Ids of the <message/> elements in `text`, in order. */
    function messageIds(text: string): string[] {
      return [...text.matchAll(/<message [^>]*?id='([^']+)'/g)].map((m) => m[1]);
    }

    it('a burst in one chunk, mixing stored, full-address, unstored and bounced messages, arrives in order; the IQ after it is answered last [RFC6120 10.1]', async () => {
      const sent: string[] = [];
      const bobGets: string[] = [];
      let chunk = '';
      for (let i = 0; i < 40; i++) {
        const id = `m${i}`;
        sent.push(id);
        if (i % 10 === 3) {
          // not stored: a chat state alone [XEP-0085]
          chunk += `<message to='bob@localhost' type='chat' id='${id}'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`;
          bobGets.push(id);
        } else if (i % 10 === 5) {
          chunk += `<message to='bob@localhost/phone' type='chat' id='${id}'><body>full ${i}</body></message>`;
          bobGets.push(id);
        } else if (i % 10 === 7) {
          // no such user: an error back to alice [RFC6121 8.5.2.2.1]
          chunk += `<message to='nobody@localhost' type='chat' id='${id}'><body>lost ${i}</body></message>`;
        } else {
          chunk += `<message to='bob@localhost' type='chat' id='${id}'><body>bare ${i}</body></message>`;
          bobGets.push(id);
        }
      }
      chunk += `<iq type='get' id='after-burst' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`;
      alice.send(chunk);

      const bobText = await bob.expect((t) => messageIds(t).length >= bobGets.length, 5000);
      assert.deepEqual(messageIds(bobText), bobGets, "bob sees alice's messages in the order sent");

      const aliceText = await alice.expect((t) => /<iq [^>]*id='after-burst'/.test(t), 5000);
      const errors = [...aliceText.matchAll(/<message [^>]*type='error'[\s\S]*?<\/message>/g)].map(
        (m) => parseOne(m[0]),
      );
      assert.deepEqual(
        errors.map((e) => e.attrs.id),
        ['m7', 'm17', 'm27', 'm37'],
        'the bounces come back in order',
      );
      assert.ok(
        aliceText.lastIndexOf("id='m37'") < aliceText.indexOf("id='after-burst'"),
        'the IQ sent after the burst is answered after it',
      );
      for (const e of errors) assert.equal(stanzaError(e).condition, 'service-unavailable');

      // The archive holds the stored ones (bodies, not the chat states) in the order sent.
      const page = await h.broker.archive.query(
        Address.parse('alice@localhost'),
        Address.parse('bob@localhost'),
        { limit: 100 },
      );
      const stored = bobGets.filter((id) => Number(id.slice(1)) % 10 !== 3);
      assert.deepEqual(
        page.envelopes.map((e) => e.id),
        stored,
      );
      const seqs = page.envelopes.map((e) => e.seq as number);
      assert.deepEqual(
        seqs,
        [...seqs].sort((a, b) => a - b),
      );
      assert.equal(new Set(seqs).size, seqs.length);
    });

    it('a directed presence sent after a burst reaches its addressee after the burst [RFC6121 4.6]', async () => {
      let chunk = '';
      for (let i = 0; i < 10; i++)
        chunk += `<message to='bob@localhost' type='chat' id='p${i}'><body>${i}</body></message>`;
      chunk += `<presence to='bob@localhost/phone' id='dir1'><status>after</status></presence>`;
      alice.send(chunk);
      const text = await bob.expect((t) => /<presence [^>]*id='dir1'/.test(t), 5000);
      assert.deepEqual(
        messageIds(text),
        Array.from({ length: 10 }, (_, i) => `p${i}`),
        'all ten messages before the presence',
      );
    });
  });
