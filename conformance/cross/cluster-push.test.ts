// Black-box XEP-0357 push in a cluster of two nodes (conformance/cluster-helpers.ts):
// a user with push enabled is offline; people on both nodes write to them
// in one burst. The app server (an account on n1, as in
// conformance/xmpp/push.test.ts) must get one notification per burst window
// for the whole cluster, not one per node (docs/push.md, "Cluster").
import assert from 'node:assert/strict';
import type { Element } from '@xmpp/xml';
import { ping, presence, sleep, stopAllClients, uniqueName, xml } from '../helpers.ts';
import { addUsers } from '../mqtt-helpers.ts';
import { eventually, startCluster, type TestCluster } from '../cluster-helpers.ts';

const NS_PUSH = 'urn:xmpp:push:0';
const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const PW = 'pw-cpush';
const BURST_MS = 3000;

describe('XEP-0357 push in a cluster: one notification per burst across the nodes', function () {
  this.timeout(60_000);
  let cluster: TestCluster;
  const [appName, bob, alice, carol] = ['app', 'bob', 'alice', 'carol'].map((n) => uniqueName(n));

  before(async function () {
    this.timeout(120_000);
    cluster = await startCluster(['n1', 'n2'], {
      yaml: [
        'modules:',
        `  push: { burstSeconds: ${BURST_MS / 1000}, includeSender: true, timeoutSeconds: 1.5, retryBaseSeconds: 0.1 }`,
      ],
    });
    await addUsers(cluster.nodes.n1, { [appName]: PW, [bob]: PW, [alice]: PW, [carol]: PW });
  });
  afterEach(() => stopAllClients());
  after(async () => cluster?.dispose());

  it('messages from users on both nodes to an offline user: one notification per window, each node’s messages notified, answers reach the node that asked [XEP-0357 7]', async () => {
    // the app server on n1 answers every publish with a result
    const app = await cluster.login('n1', appName, PW, 'push');
    const got: { at: number; sender: string | null }[] = [];
    app.xmpp.iqCallee.set(NS_PUBSUB, 'pubsub', (ctx: { stanza: Element }) => {
      const form = ctx.stanza
        .getChild('pubsub', NS_PUBSUB)
        ?.getChild('publish')
        ?.getChild('item')
        ?.getChild('notification', NS_PUSH)
        ?.getChild('x', 'jabber:x:data');
      const sender = form
        ?.getChildren('field')
        .find((f) => f.attrs.var === 'last-message-sender')
        ?.getChildText('value');
      got.push({ at: Date.now(), sender: sender ?? null });
      return true;
    });
    await app.send(presence());
    await ping(app);
    // bob enables push on n2, then goes offline
    const b = await cluster.login('n2', bob, PW, 'phone');
    const r = await b.request(
      xml('iq', { type: 'set' }, xml('enable', { xmlns: NS_PUSH, jid: app.jid, node: 'n' })),
    );
    assert.equal(r.attrs.type, 'result', r.toString());
    await b.stop();
    const a = await cluster.login('n1', alice, PW, 'pc');
    const c = await cluster.login('n2', carol, PW, 'pc');
    const say = (from: typeof a, i: number) =>
      from.send(xml('message', { to: `${bob}@localhost`, type: 'chat' }, xml('body', {}, `m${i}`)));
    for (let i = 0; i < 3; i++) await Promise.all([say(a, i), say(c, i)]);
    await Promise.all([ping(a), ping(c)]);
    // both nodes' messages are notified in the end (a node that lost the window sends at the next)
    await eventually(() => {
      const senders = new Set(got.map((g) => g.sender));
      assert.ok(senders.has(`${alice}@localhost`) && senders.has(`${carol}@localhost`), 'senders');
    }, 20_000);
    // anything still due would come within one more window; an unanswered publish is retried 1.6 s after it
    await sleep(BURST_MS + 500);
    const gaps = got.slice(1).map((g, i) => g.at - got[i].at);
    assert.ok(
      gaps.every((ms) => ms >= BURST_MS - 500),
      `notifications closer than one window: ${JSON.stringify(got)}`,
    );
    assert.ok(got.length <= 3, `more notifications than windows: ${JSON.stringify(got)}`);
  });
});
