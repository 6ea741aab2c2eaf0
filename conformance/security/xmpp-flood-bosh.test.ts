// Black-box, issue 20 item 3 over BOSH [XEP-0124, XEP-0206] (TCP is in
// xmpp-flood.test.ts, WebSocket in xmpp-flood-ws.test.ts): requests past the
// stream's rate are held and then get the recoverable error of XEP-0124
// §17.3, which makes the client resend them, so the stream is read at its
// rate while others are still answered; a stream kept over its rate gets
// policy-violation inside a remote-stream-error terminate [XEP-0206 §6].
import assert from 'node:assert/strict';
import { closeAllRaw, rawLogin, startNode, uniqueName, type TestNode } from '../helpers.ts';
import { deafRecipient, message, ping, sleep, stanzasIn } from './flood-helpers.ts';
import { addUsers } from '../mqtt-helpers.ts';
import { BoshClient, NS_HTTPBIND, type BoshResponse } from '../web/bosh-client.ts';

const PW = 'flood web pw';

describe('security: XMPP inbound flood over BOSH', function () {
  this.timeout(60_000);
  afterEach(() => closeAllRaw());

  describe('BOSH [XEP-0124, XEP-0206]', () => {
    let node: TestNode;
    let url: string;
    const sender = uniqueName('bflood');
    const sink = uniqueName('bsink');
    const bystander = uniqueName('bby');
    const RATE = 16 * 1024;
    /** 60 messages of 2 KB in one request: about 7 s of the rate */
    const PER_REQUEST = 60;

    before(async function () {
      this.timeout(60_000);
      node = await startNode({
        config: `xmpp:\n  inboundBytesPerSecond: ${RATE}\n  inboundBurstSeconds: 1\n  maxInboundStanzas: 16\n  inboundThrottleLimitMs: 0\n`,
      });
      url = `http://127.0.0.1:${node.ports.http}/http-bind`;
      await addUsers(node, { [sender]: PW, [sink]: PW, [bystander]: PW });
    });
    after(async () => {
      closeAllRaw();
      await node?.dispose();
    });

    async function boshLogin(user: string): Promise<BoshClient> {
      const b = new BoshClient(url);
      const created = await b.create({ wait: 2, hold: 1 });
      assert.equal(created.body.attrs.requests, '2');
      await b.login(user, PW);
      return b;
    }

    it('requests past the rate are held and answered with the recoverable error of XEP-0124 §17.3; resent, they are taken at the rate; others still get answers', async () => {
      await deafRecipient(node, sink, PW);
      const by = await rawLogin(node.ports.xmpp, bystander, PW, 'PLAIN', 'by');
      const b = await boshLogin(sender);
      const payload = message(sink).repeat(PER_REQUEST);
      const in0 = await stanzasIn(node);
      const t0 = Date.now();
      // Two requests at once, as 'requests' = 2 allows [XEP-0124 §11].
      const first = b.post(b.next(payload));
      await sleep(300);
      const secondText = b.next(payload);
      const second = b.post(secondText);
      const [r1, r2] = await Promise.all([first, second]);
      assert.equal(r1.status, 200);
      assert.notEqual(r1.body.attrs.type, 'terminate', r1.text);
      // The second was not taken: held for 'wait' seconds, then the recoverable binding error [XEP-0124 §17.3].
      assert.equal(r2.status, 200);
      assert.equal(r2.body.attrs.type, 'error', r2.text);
      assert.equal(r2.body.attrs.xmlns, NS_HTTPBIND);
      assert.equal(r2.body.children.length, 0, 'a recoverable error carries nothing');
      const waited = Date.now() - t0;
      assert.ok(waited >= 1500, `answered after ${waited} ms, before 'wait'`);
      assert.ok(
        (await stanzasIn(node)) - in0 <= PER_REQUEST + 5,
        'the second request was not read',
      );
      // Others are answered meanwhile.
      const rtt = await ping(by, 'bosh-by-ping');
      assert.ok(rtt < 5000, `ping took ${rtt} ms`);
      // The client resends the same request until it is taken [XEP-0124 §17.3]; the session lives on.
      let r: BoshResponse = r2;
      for (let i = 0; i < 10 && r.body.attrs.type === 'error'; i++) r = await b.post(secondText);
      assert.notEqual(r.body.attrs.type, 'error', 'the resent request was never taken');
      assert.notEqual(r.body.attrs.type, 'terminate', r.text);
      const elapsed = (Date.now() - t0) / 1000;
      const got = (await stanzasIn(node)) - in0;
      assert.ok(got >= 2 * PER_REQUEST, `both requests read in the end (${got})`);
      const allowed = Math.ceil((RATE * (elapsed + 1)) / 2048) + PER_REQUEST; // one request may overdraw
      assert.ok(
        got <= allowed,
        `read ${got} stanzas in ${elapsed.toFixed(1)} s; the rate allows about ${allowed}`,
      );
      // the second is taken only once the first one's overdraft is paid back
      assert.ok(
        elapsed >= (PER_REQUEST * 2048 - RATE) / RATE - 1,
        `both requests taken after ${elapsed.toFixed(1)} s: faster than the rate`,
      );
    });
  });

  describe('BOSH hard limit', () => {
    let node: TestNode;
    let url: string;
    const sender = uniqueName('bhard');
    const sink = uniqueName('bhsink');

    before(async function () {
      this.timeout(60_000);
      node = await startNode({
        config:
          'xmpp:\n  inboundBytesPerSecond: 16384\n  inboundBurstSeconds: 1\n  inboundThrottleLimitMs: 2000\n',
      });
      url = `http://127.0.0.1:${node.ports.http}/http-bind`;
      await addUsers(node, { [sender]: PW, [sink]: PW });
    });
    after(async () => {
      closeAllRaw();
      await node?.dispose();
    });

    it('a BOSH stream kept over its rate past inboundThrottleLimitMs ends with remote-stream-error carrying policy-violation [XEP-0206 §6, RFC6120 4.9.3.13]', async () => {
      const b = new BoshClient(url);
      await b.create({ wait: 2, hold: 1 });
      await b.login(sender, PW);
      const payload = message(sink).repeat(40); // 80 KB a request at 16 KB/s
      let last: BoshResponse | undefined;
      const deadline = Date.now() + 30_000;
      let text = b.next(payload);
      while (Date.now() < deadline) {
        last = await b.post(text);
        if (last.body?.attrs.type === 'terminate') break;
        if (last.body?.attrs.type !== 'error') text = b.next(payload); // taken: the next one; refused: resend [XEP-0124 §17.3]
      }
      assert.ok(last, 'no response');
      // The terminal body may come on the request that tripped the limit or on the next one.
      if (last.body.attrs.type !== 'terminate') last = await b.send();
      assert.equal(last.body.attrs.type, 'terminate', last.text);
      assert.equal(last.body.attrs.condition, 'remote-stream-error', last.text);
      assert.match(last.text, /<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/);
    });
  });
});
