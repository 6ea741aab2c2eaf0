// Black-box, issue 20 item 3 over WebSocket [RFC7395] (TCP is in
// xmpp-flood.test.ts, BOSH in xmpp-flood-bosh.test.ts): a stream blasting
// messages is read no faster than its rate (reading pauses; the client's
// frames wait in its own buffer), memory stays bounded and others are still
// answered; a stream kept over its rate gets policy-violation.
import assert from 'node:assert/strict';
import {
  NS_SASL,
  ScramClient,
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
import { addUsers } from '../mqtt-helpers.ts';
import { NS_FRAMING, RawWs, parseFrame } from '../web/web-helpers.ts';

const PW = 'flood web pw';

/** SCRAM-SHA-256 login over a raw RFC 7395 WebSocket, one element per message, up to bind. */
async function wsLogin(node: TestNode, user: string): Promise<RawWs> {
  const r = await RawWs.connect(`ws://127.0.0.1:${node.ports.http}/xmpp-websocket`);
  const open = `<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`;
  r.send(open);
  await r.next(); // <open/>
  await r.next(); // features
  const scram = new ScramClient('SHA-256', user, PW);
  r.send(
    `<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${Buffer.from(scram.clientFirst()).toString('base64')}</auth>`,
  );
  const challenge = parseFrame(await r.next());
  r.send(
    `<response xmlns='${NS_SASL}'>${Buffer.from(scram.clientFinal(Buffer.from(challenge.text, 'base64').toString())).toString('base64')}</response>`,
  );
  assert.equal(parseFrame(await r.next()).name, 'success');
  r.send(open); // [RFC7395 3.5] restart
  await r.next();
  await r.next();
  r.send(
    `<iq type='set' id='b1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>ws</resource></bind></iq>`,
  );
  assert.equal(parseFrame(await r.next()).attrs.type, 'result');
  return r;
}

describe('security: XMPP inbound flood over WebSocket', function () {
  this.timeout(60_000);
  afterEach(() => closeAllRaw());

  describe('WebSocket [RFC7395]', () => {
    let node: TestNode;
    const sender = uniqueName('wsflood');
    const sink = uniqueName('wssink');
    const bystander = uniqueName('wsby');
    const RATE = 64 * 1024;
    const open: RawWs[] = [];

    before(async function () {
      this.timeout(60_000);
      node = await startNode({
        config: `xmpp:\n  inboundBytesPerSecond: ${RATE}\n  inboundBurstSeconds: 1\n  maxInboundStanzas: 16\n  inboundThrottleLimitMs: 0\n`,
      });
      await addUsers(node, { [sender]: PW, [sink]: PW, [bystander]: PW });
    });
    afterEach(() => {
      for (const w of open.splice(0)) w.terminate();
    });
    after(async () => {
      closeAllRaw();
      await node?.dispose();
    });

    it('a WebSocket blasting 2 KB messages at a recipient that does not read is read no faster than its rate; memory stays bounded; others still get answers [RFC6120 4.9.3.13]', async () => {
      await deafRecipient(node, sink, PW);
      const by = await rawLogin(node.ports.xmpp, bystander, PW, 'PLAIN', 'by');
      const ws = await wsLogin(node, sender);
      open.push(ws);
      const rss0 = await rss(node);
      const in0 = await stanzasIn(node);
      const t0 = Date.now();
      const one = message(sink);
      for (let i = 0; i < 15_000; i++) ws.send(one); // 30 MB, one stanza per message [RFC7395 3.3.3]
      await sleep(5000);
      const elapsed = (Date.now() - t0) / 1000;
      const got = (await stanzasIn(node)) - in0;
      // rate × time + one second of burst, plus slack for what ws and the kernel had read before the pause
      const allowed = Math.ceil((RATE * (elapsed + 1) + 512 * 1024) / 2048);
      assert.ok(
        got <= allowed,
        `the server read ${got} stanzas in ${elapsed.toFixed(1)} s; the rate allows about ${allowed}`,
      );
      assert.ok(got > 0, 'nothing read at all');
      // What the server did not read waits on the client's side.
      assert.ok(ws.ws.bufferedAmount > 20 * 1024 * 1024, `client backlog ${ws.ws.bufferedAmount}`);
      assert.ok(!ws.closed, 'the sender is throttled, not closed (no hard limit here)');
      await assertStillServing(node, by, 'ws-by-ping', rss0);
    });
  });

  describe('WebSocket hard limit', () => {
    let node: TestNode;
    const sender = uniqueName('wshard');
    const sink = uniqueName('wshsink');
    const open: RawWs[] = [];

    before(async function () {
      this.timeout(60_000);
      node = await startNode({
        config:
          'xmpp:\n  inboundBytesPerSecond: 32768\n  inboundBurstSeconds: 1\n  inboundThrottleLimitMs: 2000\n',
      });
      await addUsers(node, { [sender]: PW, [sink]: PW });
    });
    after(async () => {
      for (const w of open.splice(0)) w.terminate();
      await node?.dispose();
    });

    it('a WebSocket kept over its rate past inboundThrottleLimitMs gets policy-violation and <close/> [RFC6120 4.9.3.13, RFC7395 3.6]', async () => {
      const ws = await wsLogin(node, sender);
      open.push(ws);
      const one = message(sink);
      for (let i = 0; i < 5000; i++) ws.send(one); // 10 MB at 32 KB/s: throttled far longer than 2 s
      const deadline = Date.now() + 40_000;
      while (!ws.frames.some((f) => f.includes('policy-violation')) && Date.now() < deadline)
        await sleep(200);
      const err = ws.frames.find((f) => f.includes('<stream:error'));
      assert.ok(err, `no stream error; last frames: ${ws.frames.slice(-3).join(' ')}`);
      const e = parseFrame(err);
      assert.ok(e.child('policy-violation', 'urn:ietf:params:xml:ns:xmpp-streams'), err);
      await ws.waitClosed(10_000);
      assert.ok(
        ws.frames.some((f) => f.includes(`<close xmlns='${NS_FRAMING}'`)),
        'a <close/> before the WebSocket closed',
      );
    });
  });
});
