// Black-box: presence broadcast, probes, unavailable and directed presence [RFC6121 4].
import assert from 'node:assert/strict';
import {
  DOMAIN,
  makeFriends,
  closeAllRaw,
  isPresence,
  ping,
  presence,
  rosterGet,
  startNode,
  stopAllClients,
  uniqueName,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';

const PW = 'presence-pw';

describe('XMPP presence [RFC6121 4]', function () {
  this.timeout(30_000);
  let node: TestNode;
  // pa and pb are mutually subscribed; pc is nobody's contact
  const pa = uniqueName('pa');
  const pb = uniqueName('pb');
  const pc = uniqueName('pc');
  const A = `${pa}@${DOMAIN}`;
  const B = `${pb}@${DOMAIN}`;

  const login = (username: string, resource: string) =>
    xmppClient({ port: node.ports.xmpp, username, password: PW, resource });

  /** Logged in, roster requested, initial presence sent and processed. */
  async function available(
    username: string,
    resource: string,
    p: Parameters<typeof presence>[0] = {},
  ): Promise<TestClient> {
    const c = await login(username, resource);
    await c.request(rosterGet());
    await c.send(presence(p));
    await ping(c);
    return c;
  }

  before(async function () {
    this.timeout(60_000);
    // @xmpp/client enables resumable stream management, which keeps a dropped
    // session for the resume timeout [XEP-0198 5]: one second here.
    node = await startNode({
      config: 'modules:\n  stream-management: { resumeTimeoutSeconds: 1 }\n',
    });
    await Promise.all([pa, pb, pc].map((u) => node.addUser(u, PW)));
    await makeFriends(node, pa, pb, PW);
  });
  afterEach(stopAllClients);
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  it("initial presence goes to subscribed contacts and to the user's own resources [RFC6121 4.2.2]", async () => {
    const b = await available(pb, 'watch');
    const c = await available(pc, 'stranger');
    b.drain();
    const a = await login(pa, 'desk');
    await a.send(presence({ show: 'chat', status: 'hello' }));
    const p = await b.waitFor(isPresence({ from: `${A}/desk` }), 3000, "pa's initial presence");
    assert.equal(p.attrs.type, undefined);
    assert.equal(p.getChildText('show'), 'chat');
    assert.equal(p.getChildText('status'), 'hello');
    const own = await a.waitFor(isPresence({ from: `${A}/desk` }), 3000, 'own presence reflected');
    assert.equal(own.getChildText('status'), 'hello');
    await c.expectNone(isPresence({ from: `${A}/desk` }), 300, 'presence at a non-contact');
  });

  it("on login the user receives its contacts' current presence (probe) but not strangers' [RFC6121 4.2.2] [RFC6121 4.3.2]", async () => {
    await available(pb, 'busy', { show: 'away', status: 'lunch' });
    await available(pc, 'stranger');
    const a = await login(pa, 'late');
    await a.send(presence());
    const p = await a.waitFor(isPresence({ from: `${B}/busy` }), 3000, "pb's current presence");
    assert.equal(p.attrs.type, undefined);
    assert.equal(p.attrs.to, `${A}/late`);
    assert.equal(p.getChildText('show'), 'away');
    assert.equal(p.getChildText('status'), 'lunch');
    await a.expectNone(
      isPresence({ from: new RegExp(`^${pc}@`) }),
      300,
      "a non-contact's presence",
    );
  });

  it("a new resource receives the presence of the user's other available resources [RFC6121 4.2.2]", async () => {
    await available(pa, 'one', { status: 'first' });
    const two = await login(pa, 'two');
    await two.send(presence());
    const p = await two.waitFor(
      isPresence({ from: `${A}/one` }),
      3000,
      "the other resource's presence",
    );
    assert.equal(p.getChildText('status'), 'first');
  });

  it('explicit unavailable is broadcast to contacts with its status [RFC6121 4.5.2]', async () => {
    const b = await available(pb, 'watch');
    const a = await available(pa, 'leaving');
    await b.waitFor(isPresence({ from: `${A}/leaving`, type: undefined }));
    await a.send(presence({ type: 'unavailable', status: 'bye' }));
    const u = await b.waitFor(
      isPresence({ from: `${A}/leaving`, type: 'unavailable' }),
      3000,
      'unavailable',
    );
    assert.equal(u.getChildText('status'), 'bye');
  });

  it('closing the stream without unavailable presence: contacts get unavailable from the full JID [RFC6121 4.5.2]', async () => {
    const b = await available(pb, 'watch');
    const a = await available(pa, 'closer');
    await b.waitFor(isPresence({ from: `${A}/closer`, type: undefined }));
    await a.stop();
    await b.waitFor(
      isPresence({ from: `${A}/closer`, type: 'unavailable' }),
      3000,
      'unavailable after stream close',
    );
  });

  it('a dropped TCP connection: contacts get unavailable from the full JID [RFC6121 4.5.2]', async () => {
    const b = await available(pb, 'watch');
    const a = await available(pa, 'dropper');
    await b.waitFor(isPresence({ from: `${A}/dropper`, type: undefined }));
    a.drop();
    await b.waitFor(
      isPresence({ from: `${A}/dropper`, type: 'unavailable' }),
      5000,
      'unavailable after the socket dropped',
    );
  });

  it('directed presence reaches a non-contact, and it gets unavailable when the sender logs out [RFC6121 4.6.2] [RFC6121 4.6.3]', async () => {
    const c = await available(pc, 'stranger');
    const a = await available(pa, 'direct');
    await c.expectNone(
      isPresence({ from: `${A}/direct` }),
      300,
      'broadcast presence at a non-contact',
    );
    await a.send(presence({ to: `${pc}@${DOMAIN}`, status: 'just for you' }));
    const p = await c.waitFor(
      isPresence({ from: `${A}/direct`, type: undefined }),
      3000,
      'directed presence',
    );
    assert.equal(p.getChildText('status'), 'just for you');
    await a.stop();
    await c.waitFor(
      isPresence({ from: `${A}/direct`, type: 'unavailable' }),
      3000,
      'unavailable after directed presence',
    );
  });
});
