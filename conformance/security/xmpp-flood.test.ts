// Black-box, issue 20 item 3: one XMPP connection blasting messages must not
// grow the node's memory without bound nor slow others down: reading pauses
// past the inbound rate (token buckets) and while the parsed-but-unhandled
// queue is full; a stream kept over its rate is ended with policy-violation.
import assert from 'node:assert/strict';
import {
  RawConn,
  closeAllRaw,
  rawLogin,
  startNode,
  uniqueName,
  type TestNode,
} from '../helpers.ts';
import {
  assertStillServing,
  deafRecipient,
  message,
  rss,
  sleep,
  stanzasIn,
} from './flood-helpers.ts';

const PW = 'flood pw';

/** Write `n` 2 KB messages at once into the client socket (they queue client-side if the server does not read). */
function blast(c: RawConn, to: string, n: number): void {
  const one = message(to);
  for (let left = n; left > 0; left -= 100) c.send(one.repeat(Math.min(100, left)));
}

describe('security: XMPP inbound flood', function () {
  this.timeout(60_000);
  afterEach(() => closeAllRaw());

  describe('soft limits: reading pauses', () => {
    let node: TestNode;
    const sender = uniqueName('flood');
    const sink = uniqueName('sink');
    const bystander = uniqueName('by');
    const RATE = 64 * 1024;

    before(async function () {
      this.timeout(60_000);
      node = await startNode({
        config: `xmpp:\n  inboundBytesPerSecond: ${RATE}\n  inboundBurstSeconds: 1\n  inboundThrottleLimitMs: 0\n`,
      });
      await Promise.all([
        node.addUser(sender, PW),
        node.addUser(sink, PW),
        node.addUser(bystander, PW),
      ]);
    });
    after(async () => {
      closeAllRaw();
      await node?.dispose();
    });

    it('a connection blasting 2 KB messages at a recipient that does not read is read no faster than its rate; memory stays bounded; others still get answers [RFC6120 4.9.3.13]', async () => {
      await deafRecipient(node, sink, PW); // the recipient stops reading
      const by = await rawLogin(node.ports.xmpp, bystander, PW, 'PLAIN', 'by');
      const s = await rawLogin(node.ports.xmpp, sender, PW, 'PLAIN', 'flood');
      const rss0 = await rss(node);
      const in0 = await stanzasIn(node);
      const t0 = Date.now();
      blast(s, sink, 15_000); // 30 MB
      await sleep(5000);
      const elapsed = (Date.now() - t0) / 1000;
      const got = (await stanzasIn(node)) - in0;
      // rate × time + one second of burst, plus slack for one read and what the kernel held
      const allowed = Math.ceil((RATE * (elapsed + 1) + 256 * 1024) / 2048);
      assert.ok(
        got <= allowed,
        `the server read ${got} stanzas in ${elapsed.toFixed(1)} s; the rate allows about ${allowed}`,
      );
      assert.ok(got > 0, 'nothing read at all');
      // What the server did not read waits on the client's side.
      assert.ok(
        s.socket.writableLength > 20 * 1024 * 1024,
        `client backlog ${s.socket.writableLength}`,
      );
      // Someone else's round trip still answers.
      await assertStillServing(node, by, 'by-ping', rss0);
    });
  });

  describe('hard limit: policy-violation', () => {
    let node: TestNode;
    const sender = uniqueName('hard');
    const sink = uniqueName('hsink');

    before(async function () {
      this.timeout(60_000);
      node = await startNode({
        config:
          'xmpp:\n  inboundBytesPerSecond: 32768\n  inboundBurstSeconds: 1\n  inboundThrottleLimitMs: 2000\n',
      });
      await Promise.all([node.addUser(sender, PW), node.addUser(sink, PW)]);
    });
    after(async () => {
      closeAllRaw();
      await node?.dispose();
    });

    it('a stream that keeps sending above its rate is closed with policy-violation [RFC6120 4.9.3.13]', async () => {
      const s = await rawLogin(node.ports.xmpp, sender, PW, 'PLAIN', 'hard');
      blast(s, sink, 5000); // 10 MB at 32 KB/s: throttled far longer than 2 s
      await s.waitFor(
        /<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/,
        20_000,
      );
      await s.waitClosed(10_000);
    });

    it('a stream sending below its rate is left alone', async () => {
      const s = await rawLogin(node.ports.xmpp, sender, PW, 'PLAIN', 'calm');
      for (let i = 0; i < 5; i++) {
        blast(s, sink, 8); // 16 KB a second: half the rate
        await sleep(1000);
      }
      await sleep(500);
      assert.ok(!s.closed && !/policy-violation/.test(s.text), s.text.slice(-500));
    });
  });
});
