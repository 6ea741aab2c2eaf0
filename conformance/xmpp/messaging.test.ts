// Black-box: message routing to bare and full JIDs by type and priority [RFC6121 8.5].
import assert from 'node:assert/strict';
import {
  DOMAIN,
  closeAllRaw,
  isMessage,
  nextId,
  ping,
  presence,
  stanzaError,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';

const PW = 'msg-pw';

describe('XMPP message routing [RFC6121 8.5]', function () {
  this.timeout(30_000);
  let node: TestNode;
  const ma = uniqueName('ma');
  const mb = uniqueName('mb');
  const B = `${mb}@${DOMAIN}`;
  let a1: TestClient;
  let a2: TestClient;
  /** priority 1 */
  let b1: TestClient;
  /** priority 0 */
  let b2: TestClient;
  /** priority -1 */
  let b3: TestClient;

  async function available(
    username: string,
    resource: string,
    priority: number,
  ): Promise<TestClient> {
    const c = await xmppClient({ port: node.ports.xmpp, username, password: PW, resource });
    await c.send(presence({ priority }));
    await ping(c);
    return c;
  }

  before(async function () {
    this.timeout(60_000);
    node = await startNode();
    await Promise.all([ma, mb].map((u) => node.addUser(u, PW)));
    [a1, a2, b1, b2, b3] = await Promise.all([
      available(ma, 'a1', 0),
      available(ma, 'a2', 0),
      available(mb, 'b1', 1),
      available(mb, 'b2', 0),
      available(mb, 'b3', -1),
    ]);
  });
  beforeEach(() => {
    for (const c of [a1, a2, b1, b2, b3]) c.drain();
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  function message(
    to: string,
    type: string | undefined,
    body = 'hello',
  ): { id: string; el: ReturnType<typeof xml> } {
    const id = nextId('m');
    return { id, el: xml('message', { to, type, id }, xml('body', {}, body)) };
  }

  it('chat to the bare JID reaches every available resource with non-negative priority, not the negative one [RFC6121 8.5.2.1.1] [RFC6121 4.7.2.3]', async () => {
    const { id, el } = message(B, 'chat', 'to all devices');
    await a1.send(el);
    for (const b of [b1, b2]) {
      const m = await b.waitFor(isMessage({ id }), 3000, `message at ${b.jid}`);
      assert.equal(m.attrs.from, `${ma}@${DOMAIN}/a1`, 'from is the sender full JID');
      assert.equal(m.attrs.type, 'chat');
      assert.equal(m.getChildText('body'), 'to all devices');
    }
    await b3.expectNone(isMessage({ id }), 400, 'bare-JID message at a negative-priority resource');
    await a2.expectNone(isMessage({ id }), 0, "copy at the sender's other resource");
  });

  it('normal (no type) to the bare JID: non-negative resources only [RFC6121 8.5.2.1.1]', async () => {
    const { id, el } = message(B, undefined);
    await a1.send(el);
    await b1.waitFor(isMessage({ id }));
    await b2.waitFor(isMessage({ id }));
    await b3.expectNone(isMessage({ id }), 400, 'normal message at a negative-priority resource');
  });

  it('headline to the bare JID: every non-negative resource [RFC6121 8.5.2.1.1]', async () => {
    const { id, el } = message(B, 'headline', 'news');
    await a1.send(el);
    for (const b of [b1, b2])
      assert.equal((await b.waitFor(isMessage({ id }))).attrs.type, 'headline');
    await b3.expectNone(isMessage({ id }), 400, 'headline at a negative-priority resource');
  });

  it('to a full JID: only that resource [RFC6121 8.5.3.1]', async () => {
    const { id, el } = message(`${B}/b2`, 'chat', 'just you');
    await a1.send(el);
    const m = await b2.waitFor(isMessage({ id }));
    assert.equal(m.attrs.to, `${B}/b2`);
    await b1.expectNone(isMessage({ id }), 400, 'full-JID message at another resource');
    await b3.expectNone(isMessage({ id }), 0, 'full-JID message at another resource');
  });

  it('to the full JID of a negative-priority resource: delivered [RFC6121 8.5.3.1] [RFC6121 4.7.2.3]', async () => {
    const { id, el } = message(`${B}/b3`, 'chat');
    await a1.send(el);
    await b3.waitFor(
      isMessage({ id }),
      3000,
      'message at the addressed negative-priority resource',
    );
    await b1.expectNone(isMessage({ id }), 300, 'message at another resource');
  });

  it('chat to a full JID with no such resource is handled as if sent to the bare JID [RFC6121 8.5.3.2.1]', async () => {
    const { id, el } = message(`${B}/nosuch`, 'chat');
    await a1.send(el);
    await b1.waitFor(isMessage({ id }));
    await b2.waitFor(isMessage({ id }));
    await b3.expectNone(isMessage({ id }), 300, 'message at a negative-priority resource');
    await a1.expectNone(isMessage({ id, type: 'error' }), 0, 'error to the sender');
  });

  it('headline to a full JID with no such resource is silently dropped [RFC6121 8.5.3.2.1]', async () => {
    const { id, el } = message(`${B}/nosuch`, 'headline');
    await a1.send(el);
    await ping(a1);
    for (const b of [b1, b2, b3])
      await b.expectNone(isMessage({ id }), 100, 'headline delivered elsewhere');
    await a1.expectNone(isMessage({ id }), 200, 'error for a dropped headline');
  });

  it('groupchat to a user is refused with service-unavailable [RFC6121 8.5.2.1.1]', async () => {
    const { id, el } = message(B, 'groupchat');
    await a1.send(el);
    const err = await a1.waitFor(isMessage({ id, type: 'error' }), 3000, 'error reply');
    assert.equal(stanzaError(err).condition, 'service-unavailable');
    for (const b of [b1, b2])
      await b.expectNone(isMessage({ id, type: 'groupchat' }), 100, 'groupchat delivered');
  });

  it('to an account that does not exist: error service-unavailable from that JID, same id [RFC6121 8.5.1] [RFC6120 8.3.3.19]', async () => {
    const nobody = `${uniqueName('nobody')}@${DOMAIN}`;
    const { id, el } = message(nobody, 'chat');
    await a1.send(el);
    const err = await a1.waitFor(isMessage({ id }), 3000, 'error reply');
    assert.equal(err.attrs.type, 'error');
    assert.equal(err.attrs.from, nobody);
    assert.equal(err.attrs.to, `${ma}@${DOMAIN}/a1`);
    assert.deepEqual(stanzaError(err), { type: 'cancel', condition: 'service-unavailable' });
  });
});
