// Black-box XEP-0357 push: an account logged in as the app server receives
// the XEP-0060 publish IQs the node sends for a user whose sessions are all
// offline or hibernating in stream management, and answers them (result,
// wait error, cancel error) to exercise burst coalescing, retries and
// registration disabling.
import assert from 'node:assert/strict';
import type { Element } from '@xmpp/xml';
import {
  ping,
  presence,
  sleep,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';

const NS_PUSH = 'urn:xmpp:push:0';
const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const PW = 'pw-push';

type Mode = 'ok' | 'wait' | 'cancel';

describe('XEP-0357 push notifications', function () {
  this.timeout(30_000);
  let node: TestNode;
  const appName = uniqueName('appsrv');
  const bob = uniqueName('bob');
  let app: TestClient;
  let APP: string;
  let mode: Mode[] = [];
  let got: Element[] = [];

  /** The summary fields of a publish IQ the app server got. */
  const summary = (iq: Element) => {
    const pubsub = iq.getChild('pubsub', NS_PUBSUB)!;
    const form = pubsub
      .getChild('publish')!
      .getChild('item')!
      .getChild('notification', NS_PUSH)!
      .getChild('x', 'jabber:x:data')!;
    const fields = new Map(
      form.getChildren('field').map((f) => [f.attrs.var as string, f.getChildText('value')]),
    );
    const opts = pubsub.getChild('publish-options')?.getChild('x', 'jabber:x:data');
    const options = new Map(
      (opts?.getChildren('field') ?? []).map((f) => [
        f.attrs.var as string,
        f.getChildText('value'),
      ]),
    );
    return { node: pubsub.getChild('publish')!.attrs.node as string, fields, options };
  };
  const waitPublishes = async (n: number, ms = 10_000) => {
    const deadline = Date.now() + ms;
    while (got.length < n && Date.now() < deadline) await sleep(50);
    assert.equal(got.length, n, `publishes: ${got.map(String).join('\n')}`);
  };
  const enable = async (c: TestClient, nodeName: string, secret?: string) => {
    const form = secret
      ? xml(
          'x',
          { xmlns: 'jabber:x:data', type: 'submit' },
          xml(
            'field',
            { var: 'FORM_TYPE' },
            xml('value', {}, 'http://jabber.org/protocol/pubsub#publish-options'),
          ),
          xml('field', { var: 'secret' }, xml('value', {}, secret)),
        )
      : undefined;
    const r = await c.request(
      xml('iq', { type: 'set' }, xml('enable', { xmlns: NS_PUSH, jid: APP, node: nodeName }, form)),
    );
    assert.equal(r.attrs.type, 'result', r.toString());
  };
  const login = (u: string, resource = 'phone') =>
    xmppClient({ port: node.ports.xmpp, username: u, password: PW, resource });
  const say = async (from: TestClient, to: string, body: string) => {
    await from.send(
      xml('message', { to, type: 'chat', id: uniqueName('m') }, xml('body', {}, body)),
    );
    await ping(from);
  };

  before(async function () {
    this.timeout(60_000);
    node = await startNode({
      config:
        'modules:\n  push:\n    burstSeconds: 2\n    includeSender: true\n    retryBaseSeconds: 0.5\n    timeoutSeconds: 3\n',
    });
    await node.addUser(appName, PW);
    await node.addUser(bob, PW);
  });
  beforeEach(async () => {
    mode = [];
    got = [];
    app = await login(appName, 'push');
    APP = app.jid;
    // the app server answers every publish as the test says (default: result)
    app.xmpp.iqCallee.set(NS_PUBSUB, 'pubsub', (ctx: { stanza: Element }) => {
      got.push(ctx.stanza);
      const m = mode.shift() ?? 'ok';
      if (m === 'ok') return true;
      const type = m === 'wait' ? 'wait' : 'cancel';
      const cond = m === 'wait' ? 'resource-constraint' : 'item-not-found';
      void app.send(
        xml(
          'iq',
          { type: 'error', to: ctx.stanza.attrs.from, id: ctx.stanza.attrs.id },
          xml('error', { type }, xml(cond, { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' })),
        ),
      );
      return new Promise(() => {}); // answered by hand
    });
    await app.send(presence());
    await ping(app);
  });
  afterEach(() => stopAllClients());
  after(async () => node?.dispose());

  it('the account advertises urn:xmpp:push:0; enable is refused for another account [XEP-0357 4, 5]', async () => {
    const u = uniqueName('u');
    await node.addUser(u, PW);
    const c = await login(u);
    const info = await c.request(
      xml(
        'iq',
        { type: 'get', to: c.bare },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }),
      ),
    );
    assert.ok(
      info
        .getChild('query')!
        .getChildren('feature')
        .some((f) => f.attrs.var === NS_PUSH),
    );
    const r = await c.request(
      xml(
        'iq',
        { type: 'set', to: `${bob}@localhost` },
        xml('enable', { xmlns: NS_PUSH, jid: APP, node: 'x' }),
      ),
    );
    assert.equal(r.attrs.type, 'error');
    const bad = await c.request(
      xml('iq', { type: 'set' }, xml('enable', { xmlns: NS_PUSH, jid: APP })),
    );
    assert.equal(bad.attrs.type, 'error', 'node is required');
  });

  it('offline: one notification at once, the rest of the burst summed into one more; none while online [XEP-0357 7]', async () => {
    const u = uniqueName('u');
    await node.addUser(u, PW);
    const phone = await login(u);
    await enable(phone, 'node-1', 's3cret');
    await phone.send(presence());
    await ping(phone);
    const b = await login(bob, 'desk');
    await say(b, `${u}@localhost`, 'while online');
    await sleep(700);
    assert.equal(got.length, 0, 'no notification while a session is online');
    await phone.stop();
    await sleep(200);
    await say(b, `${u}@localhost`, 'one');
    await waitPublishes(1);
    const first = summary(got[0]);
    assert.equal(got[0].attrs.from, `${u}@localhost`, "from the user's bare JID");
    assert.equal(first.node, 'node-1');
    assert.equal(first.fields.get('FORM_TYPE'), 'urn:xmpp:push:summary');
    assert.equal(first.fields.get('message-count'), '1');
    assert.equal(first.fields.get('last-message-sender'), `${bob}@localhost`);
    assert.equal(first.fields.has('last-message-body'), false, 'no body unless configured');
    assert.equal(first.options.get('secret'), 's3cret', 'publish-options passed back');
    for (const t of ['two', 'three', 'four']) await say(b, `${u}@localhost`, t);
    await sleep(500);
    assert.equal(got.length, 1, 'coalesced inside the burst');
    await waitPublishes(2, 5000);
    assert.equal(summary(got[1]).fields.get('message-count'), '4');
    await sleep(2500);
    assert.equal(got.length, 2, 'nothing more without new messages');
  });

  it('a session hibernating in stream management counts as asleep [XEP-0357 7, XEP-0198]', async () => {
    const u = uniqueName('u');
    await node.addUser(u, PW);
    const phone = await login(u);
    await enable(phone, 'node-sm');
    await phone.send(presence());
    await ping(phone);
    phone.drop(); // the socket dies, the session is kept for resumption
    await sleep(500);
    const b = await login(bob, 'desk');
    await say(b, `${u}@localhost`, 'wake up');
    await waitPublishes(1);
    assert.equal(summary(got[0]).node, 'node-sm');
  });

  it('a wait error is retried; a cancel error disables the registration; disable stops notifications [XEP-0357 6, 7]', async () => {
    const u = uniqueName('u');
    await node.addUser(u, PW);
    const phone = await login(u);
    await enable(phone, 'node-w');
    await phone.stop();
    const b = await login(bob, 'desk');
    mode = ['wait', 'ok'];
    await say(b, `${u}@localhost`, 'retry me');
    await waitPublishes(2, 8000);
    assert.equal(got[0].attrs.id !== got[1].attrs.id, true);
    assert.equal(summary(got[1]).fields.get('message-count'), '1');
    // cancel: the registration is gone, later messages wake nobody
    await sleep(2200);
    mode = ['cancel'];
    await say(b, `${u}@localhost`, 'refused');
    await waitPublishes(3, 5000);
    await sleep(2500);
    await say(b, `${u}@localhost`, 'after');
    await sleep(1500);
    assert.equal(got.length, 3, 'registration disabled after the cancel error');
    // disable: re-enable, then disable by jid alone
    const again = await login(u, 'tablet');
    await enable(again, 'node-d');
    const r = await again.request(
      xml('iq', { type: 'set' }, xml('disable', { xmlns: NS_PUSH, jid: APP })),
    );
    assert.equal(r.attrs.type, 'result');
    await again.stop();
    await say(b, `${u}@localhost`, 'nobody');
    await sleep(1500);
    assert.equal(got.length, 3);
  });
});
