// Black-box, issue 20 item 13: a large offline queue is handed over with flow
// control, so a login that reads slowly is not cut as a slow consumer by our
// own flush, and a login that ends mid-flush leaves what it did not get
// queued: in the end every message arrives (at least once) [XEP-0160]. The
// queue is bounded by bytes as well as by count.
import assert from 'node:assert/strict';
import type net from 'node:net';
import {
  NS_CLIENT,
  closeAllRaw,
  rawLogin,
  startNode,
  uniqueName,
  type RawConn,
  type TestNode,
} from '../helpers.ts';

const PW = 'offline pw';
const N = 1000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function sockOf(c: RawConn): net.Socket {
  return (c as unknown as { sock: net.Socket }).sock;
}

async function roundTrip(c: RawConn, id: string): Promise<void> {
  c.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  await c.waitFor(new RegExp(`<iq[^>]*id='${id}'`), 30_000);
}

/** The message numbers received so far on c. */
function numbers(c: RawConn): number[] {
  return [...c.text.matchAll(/<body>(\d+) x/g)].map((m) => Number(m[1]));
}

describe('security: XMPP offline queue flush', function () {
  this.timeout(120_000);
  let node: TestNode;
  const sender = uniqueName('osend');
  const rcpt = uniqueName('orcpt');
  const big = uniqueName('obig');

  before(async function () {
    this.timeout(60_000);
    node = await startNode({
      config: [
        'limits:',
        `  offlineMaxPerUser: ${N}`,
        '  offlineMaxBytesPerUser: 3000000',
        'xmpp:',
        '  maxOutboundBuffer: 32768',
        '  inboundBytesPerSecond: 0',
        '  inboundStanzasPerSecond: 0',
        '',
      ].join('\n'),
    });
    await Promise.all([node.addUser(sender, PW), node.addUser(rcpt, PW), node.addUser(big, PW)]);
  });
  afterEach(() => closeAllRaw());
  after(async () => {
    closeAllRaw();
    await node?.dispose();
  });

  it('1,000 queued 2 KB messages all arrive across logins that read slowly and end mid-flush (none lost; at least once) [XEP-0160]', async () => {
    const s = await rawLogin(node.ports.xmpp, sender, PW, 'PLAIN', 'send');
    const pad = 'x'.repeat(2000);
    for (let i = 0; i < N; i += 100) {
      let batch = '';
      for (let j = i; j < i + 100; j++)
        batch += `<message xmlns='${NS_CLIENT}' type='chat' to='${rcpt}@localhost'><body>${j} ${pad}</body></message>`;
      s.send(batch);
    }
    await roundTrip(s, 'queued'); // handled after every message before it: all are queued
    assert.ok(!/offline storage full/.test(s.text), 'the queue refused messages it should hold');

    const seen = new Set<number>();
    let received = 0;
    for (let round = 0; round < 15 && seen.size < N; round++) {
      const r = await rawLogin(node.ports.xmpp, rcpt, PW, 'PLAIN', `r${round}`);
      r.send('<presence/>');
      await r.waitFor(/<body>\d+ x/, 15_000);
      if (round === 0) {
        // A slow reader: the node must wait for it, not cut it as a slow consumer.
        sockOf(r).pause();
        await sleep(1500);
        sockOf(r).resume();
      }
      // Read for a while, then end the stream in the middle of the flush, reading until the node closes.
      const until = Date.now() + 3000;
      while (Date.now() < until && numbers(r).length < 150 && !r.closed) await sleep(20);
      if (!r.closed) r.send('</stream:stream>');
      await r.waitClosed(20_000);
      assert.ok(!/policy-violation/.test(r.text), `login ${round} was cut: ${r.text.slice(-300)}`);
      const got = numbers(r);
      received += got.length;
      for (const n of got) seen.add(n);
    }
    const missing = [...Array(N).keys()].filter((n) => !seen.has(n));
    assert.deepEqual(
      missing.slice(0, 20),
      [],
      `${missing.length} messages never arrived (received ${received} in all)`,
    );
  });

  it('the offline queue is bounded by bytes too: past offlineMaxBytesPerUser further messages bounce with service-unavailable [XEP-0160 §4]', async () => {
    const s = await rawLogin(node.ports.xmpp, sender, PW, 'PLAIN', 'send-big');
    // 20 KB each (a bounce of it must fit the sender's small outbound buffer)
    const pad = 'y'.repeat(20 * 1024);
    for (let i = 0; i < 160; i++) {
      s.send(
        `<message xmlns='${NS_CLIENT}' type='chat' id='b${i}' to='${big}@localhost'><body>${i} ${pad}</body></message>`,
      );
      await sleep(15); // bounces of one tick go out together: spaced so the sender's small outbound buffer holds them
    }
    await roundTrip(s, 'big-queued');
    const bounced = [
      ...s.text.matchAll(
        /<message[^>]*id='b(\d+)'[^>]*type='error'|<message[^>]*type='error'[^>]*id='b(\d+)'/g,
      ),
    ].map((m) => Number(m[1] ?? m[2]));
    // 3,000,000 characters hold about 145 messages of 20 KB; later ones bounce (the count bound, 1,000, is far).
    assert.ok(bounced.length >= 5, `only ${bounced.length} of 160 bounced`);
    assert.ok(Math.min(...bounced) >= 130, `bounced from ${Math.min(...bounced)}`);
    assert.match(s.text, /<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/>/);
  });
});
