// Black-box: kill -9 under load on the XMPP side. A sender with stream
// management streams messages to an offline user, asking for acks every 5
// stanzas; the node is killed mid-stream. After the restart, every message
// the server had acknowledged (SM h) is there for the recipient, none twice
// [XEP-0198 4] (docs/architecture.md principle 3).
import assert from 'node:assert/strict';
import {
  closeAllRaw,
  isMessage,
  presence,
  rawLogin,
  sleep,
  startNode,
  stopAllClients,
  uniqueName,
  xmppClient,
  type TestNode,
} from '../helpers.ts';

const NS_SM = 'urn:xmpp:sm:3';
const PW = 'pw-kill';

describe('XEP-0198: kill -9 under load', function () {
  this.timeout(60_000);
  let node: TestNode;
  const sender = uniqueName('sender');
  const reader = uniqueName('reader');

  before(async function () {
    node = await startNode();
    await node.addUser(sender, PW);
    await node.addUser(reader, PW);
  });
  after(async () => {
    closeAllRaw();
    await stopAllClients();
    await node?.dispose();
  });

  it('every message acknowledged with h before the kill is delivered after the restart, exactly once', async () => {
    const c = await rawLogin(node.ports.xmpp, sender, PW, 'SCRAM-SHA-256', 'load');
    c.send(`<enable xmlns='${NS_SM}'/>`);
    await c.waitFor(/<enabled[^>]*\/>/);
    let acked = 0;
    let sent = 0;
    let stop = false;
    // Read acks as they come.
    const reader$ = (async () => {
      while (!stop) {
        try {
          const a = await c.waitFor(/<a xmlns='urn:xmpp:sm:3' h='(\d+)'\/>/, 2000);
          acked = Math.max(acked, Number(/h='(\d+)'/.exec(a)![1]));
        } catch {
          if (c.closed) return;
        }
      }
    })();
    const writer$ = (async () => {
      while (!stop && !c.closed) {
        let batch = '';
        for (let i = 0; i < 5; i++)
          batch += `<message to='${reader}@localhost' type='chat' id='k${sent + i}'><body>n${sent + i}</body></message>`;
        sent += 5;
        c.send(`${batch}<r xmlns='${NS_SM}'/>`);
        await sleep(2);
      }
    })();
    while (acked < 300) await sleep(20);
    await node.kill9();
    stop = true;
    await Promise.all([reader$, writer$]);
    const ackedAtKill = acked;
    assert.ok(ackedAtKill >= 300 && sent > ackedAtKill, `acked ${ackedAtKill} of ${sent}`);

    await node.restart();
    const r = await xmppClient({
      port: node.ports.xmpp,
      username: reader,
      password: PW,
      resource: 'r',
      timeoutMs: 20_000,
    });
    await r.send(presence());
    // h counts stanzas in order: the first h messages (ids k0 … k{h-1}) were handled.
    await r.waitFor(
      isMessage({ id: `k${ackedAtKill - 1}` }),
      20_000,
      `the last acknowledged message k${ackedAtKill - 1}`,
    );
    await sleep(1000);
    const ids = r.received
      .filter((e) => e.name === 'message' && e.attrs.id?.startsWith('k'))
      .map((e) => Number(e.attrs.id!.slice(1)));
    const seen = new Set(ids);
    for (let i = 0; i < ackedAtKill; i++)
      assert.ok(seen.has(i), `acknowledged message k${i} is missing`);
    assert.equal(ids.length, seen.size, 'no message twice');
  });
});
