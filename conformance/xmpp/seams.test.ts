// Black-box checks of the module seams: a module turned off in the config is
// really off (offline storage → service-unavailable), server pings close a
// dead stream with a typed reason, and a client that answers stays.
import assert from 'node:assert/strict';
import {
  closeAllRaw,
  isMessage,
  ping,
  presence,
  rawLogin,
  sleep,
  startNode,
  stanzaError,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestNode,
} from '../helpers.ts';

const PW = 'pw-seams';

describe('module seams', function () {
  this.timeout(30_000);
  afterEach(async () => {
    closeAllRaw();
    await stopAllClients();
  });

  describe('offline module turned off (modules.offline.enabled: false)', function () {
    let node: TestNode;
    const alice = uniqueName('alice');
    const bob = uniqueName('bob');
    before(async function () {
      this.timeout(60_000);
      node = await startNode({ config: 'modules:\n  offline: { enabled: false }\n' });
      await node.addUser(alice, PW);
      await node.addUser(bob, PW);
    });
    after(async () => node?.dispose());

    it('a message to a user with no session bounces with service-unavailable, and nothing waits for the next login [RFC6121 8.5.2.2.1]', async () => {
      const a = await xmppClient({
        port: node.ports.xmpp,
        username: alice,
        password: PW,
        resource: 'a',
      });
      await a.send(presence());
      await a.send(
        xml(
          'message',
          { to: `${bob}@localhost`, type: 'chat', id: 'x1' },
          xml('body', {}, 'anyone?'),
        ),
      );
      const err = await a.waitFor(isMessage({ id: 'x1', type: 'error' }), 3000, 'the bounce');
      assert.equal(stanzaError(err).condition, 'service-unavailable');
      const b = await xmppClient({
        port: node.ports.xmpp,
        username: bob,
        password: PW,
        resource: 'b',
      });
      await b.send(presence());
      await ping(b);
      await b.expectNone(
        isMessage({ id: 'x1' }),
        500,
        'a message from offline storage that is off',
      );
    });
  });

  describe('server pings (modules.server-ping) [XEP-0199 4.1]', function () {
    let node: TestNode;
    const user = uniqueName('pinged');
    before(async function () {
      this.timeout(60_000);
      node = await startNode({
        config: 'modules:\n  server-ping: { intervalSeconds: 1, timeoutSeconds: 1 }\n',
      });
      await node.addUser(user, PW);
    });
    after(async () => node?.dispose());

    it('a client that does not answer is closed with connection-timeout; one that answers stays', async () => {
      const dead = await rawLogin(node.ports.xmpp, user, PW, 'SCRAM-SHA-256', 'silent');
      const live = await xmppClient({
        port: node.ports.xmpp,
        username: user,
        password: PW,
        resource: 'lib',
      });
      const iq = await dead.waitFor(
        /<iq [^>]*type='get'[^>]*>\s*<ping xmlns='urn:xmpp:ping'\/><\/iq>/,
        5000,
      );
      assert.match(iq, /from='localhost'/);
      await dead.waitFor(
        /<stream:error><connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/,
        5000,
      );
      await dead.waitClosed();
      await sleep(2500);
      await ping(live); // answered pings meanwhile (@xmpp/client answers XEP-0199)
      assert.ok(
        live.received.some(
          (e) => e.name === 'iq' && e.attrs.type === 'get' && e.getChild('ping', 'urn:xmpp:ping'),
        ),
        'the live client was pinged too',
      );
    });
  });
});
