// Black-box, issue 20 item 3: one XMPP connection blasting messages must not
// grow the node's memory without bound nor slow others down: reading pauses
// past the inbound rate (token buckets) and while the parsed-but-unhandled
// queue is full; a stream kept over its rate is ended with policy-violation.
import assert from 'node:assert/strict';
import type net from 'node:net';
import { NS_CLIENT, RawConn, closeAllRaw, rawLogin, startNode, uniqueName, type TestNode } from '../helpers.ts';

const PW = 'flood pw';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One sample of the node's /metrics. */
async function metric(node: TestNode, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.ports.http}/metrics`)).text();
  const re = new RegExp(`^${name}${labels ? `\\{[^}]*${labels}[^}]*\\}` : '(?:\\{[^}]*\\})?'} (\\S+)$`, 'm');
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

const stanzasIn = (node: TestNode) => metric(node, 'parley_stanzas_total', 'protocol="xmpp",direction="in"');

function sockOf(c: RawConn): net.Socket {
  return (c as unknown as { sock: net.Socket }).sock;
}

/** Write `n` 2 KB messages at once into the client socket (they queue client-side if the server does not read). */
function blast(c: RawConn, to: string, n: number): void {
  const body = 'x'.repeat(2048);
  const one = `<message xmlns='${NS_CLIENT}' type='chat' to='${to}@localhost'><body>${body}</body></message>`;
  for (let left = n; left > 0; left -= 100) c.send(one.repeat(Math.min(100, left)));
}

async function ping(c: RawConn, id: string): Promise<number> {
  const t0 = Date.now();
  c.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  await c.waitFor(new RegExp(`id='${id}'`), 10_000);
  return Date.now() - t0;
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
      node = await startNode({ config: `xmpp:\n  inboundBytesPerSecond: ${RATE}\n  inboundBurstSeconds: 1\n  inboundThrottleLimitMs: 0\n` });
      await Promise.all([node.addUser(sender, PW), node.addUser(sink, PW), node.addUser(bystander, PW)]);
    });
    after(async () => {
      closeAllRaw();
      await node?.dispose();
    });

    it('a connection blasting 2 KB messages at a recipient that does not read is read no faster than its rate; memory stays bounded; others still get answers [RFC6120 4.9.3.13]', async () => {
      const rcpt = await rawLogin(node.ports.xmpp, sink, PW, 'PLAIN', 'sink');
      rcpt.send(`<presence/>`);
      await sleep(200);
      sockOf(rcpt).pause(); // the recipient stops reading
      const by = await rawLogin(node.ports.xmpp, bystander, PW, 'PLAIN', 'by');
      const s = await rawLogin(node.ports.xmpp, sender, PW, 'PLAIN', 'flood');
      const rss0 = await metric(node, 'parley_process_resident_memory_bytes');
      const in0 = await stanzasIn(node);
      const t0 = Date.now();
      blast(s, sink, 15_000); // 30 MB
      await sleep(5000);
      const elapsed = (Date.now() - t0) / 1000;
      const got = (await stanzasIn(node)) - in0;
      // rate × time + one second of burst, plus slack for one read and what the kernel held
      const allowed = Math.ceil((RATE * (elapsed + 1) + 256 * 1024) / 2048);
      assert.ok(got <= allowed, `the server read ${got} stanzas in ${elapsed.toFixed(1)} s; the rate allows about ${allowed}`);
      assert.ok(got > 0, 'nothing read at all');
      // What the server did not read waits on the client's side.
      assert.ok(sockOf(s).writableLength > 20 * 1024 * 1024, `client backlog ${sockOf(s).writableLength}`);
      // Someone else's round trip still answers.
      const rtt = await ping(by, 'by-ping');
      assert.ok(rtt < 5000, `ping took ${rtt} ms`);
      const rss1 = await metric(node, 'parley_process_resident_memory_bytes');
      if (rss0 > 0) assert.ok(rss1 - rss0 < 150 * 1024 * 1024, `RSS grew by ${Math.round((rss1 - rss0) / 1048576)} MiB`);
    });
  });

  describe('hard limit: policy-violation', () => {
    let node: TestNode;
    const sender = uniqueName('hard');
    const sink = uniqueName('hsink');

    before(async function () {
      this.timeout(60_000);
      node = await startNode({ config: 'xmpp:\n  inboundBytesPerSecond: 32768\n  inboundBurstSeconds: 1\n  inboundThrottleLimitMs: 2000\n' });
      await Promise.all([node.addUser(sender, PW), node.addUser(sink, PW)]);
    });
    after(async () => {
      closeAllRaw();
      await node?.dispose();
    });

    it('a stream that keeps sending above its rate is closed with policy-violation [RFC6120 4.9.3.13]', async () => {
      const s = await rawLogin(node.ports.xmpp, sender, PW, 'PLAIN', 'hard');
      blast(s, sink, 5000); // 10 MB at 32 KB/s: throttled far longer than 2 s
      await s.waitFor(/<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/, 20_000);
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
