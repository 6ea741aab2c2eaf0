// Black-box: a removed account leaves nothing the next account of the same
// name inherits (issue 20 item 9), removed through the CLI of a running node.
import assert from 'node:assert/strict';
import {
  DOMAIN,
  befriend,
  isPresence,
  isRosterPush,
  isStreamError,
  ping,
  presence,
  rosterGet,
  rosterItem,
  runCli,
  startNode,
  stopAllClients,
  uniqueName,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';

const PW = 'removal-pw';

describe('security: account removal (issue 20 item 9)', function () {
  this.timeout(60_000);
  let node: TestNode;
  after(async () => {
    await stopAllClients();
    await node?.dispose();
  });

  it('removes the account from every other roster, with a push and unavailable presence; the new account of that name inherits nothing [RFC6121 2.5.2]', async () => {
    node = await startNode();
    const alice = uniqueName('alice');
    const kim = uniqueName('kim');
    await node.addUser(alice, PW);
    await node.addUser(kim, PW);
    const online = async (u: string, resource: string): Promise<TestClient> => {
      const c = await xmppClient({ port: node.ports.xmpp, username: u, password: PW, resource });
      await c.request(rosterGet());
      await c.send(presence());
      await ping(c);
      return c;
    };
    const a = await online(alice, 'a');
    const k = await online(kim, 'k');
    await befriend(a, k);
    const K = `${kim}@${DOMAIN}`;
    await a.waitFor(isPresence({ from: `${K}/k` }), 5000, "kim's presence");
    a.drain();

    const r = await runCli(['--data-dir', node.dataDir, '--domain', DOMAIN, 'user', 'remove', kim]);
    assert.equal(r.code, 0, r.stderr);
    // kim's session is closed with a typed reason
    const streamError = await k.waitFor(isStreamError('not-authorized'), 5000, 'stream error');
    assert.match(streamError.toString(), /account removed/);
    // alice's session: a roster push removing kim, and kim unavailable
    const push = await a.waitFor(isRosterPush(K), 5000, 'roster push');
    assert.equal(rosterItem(push, K)?.attrs.subscription, 'remove', push.toString());
    await a.waitFor(isPresence({ type: 'unavailable' }), 5000, 'unavailable from kim');

    const r2 = await runCli([
      '--data-dir',
      node.dataDir,
      '--domain',
      DOMAIN,
      'user',
      'add',
      kim,
      'new-pw',
    ]);
    assert.equal(r2.code, 0, r2.stderr);
    const roster = await a.request(rosterGet());
    assert.equal(
      rosterItem(roster, K),
      undefined,
      `alice's roster still lists kim: ${roster.toString()}`,
    );

    const k2 = await xmppClient({
      port: node.ports.xmpp,
      username: kim,
      password: 'new-pw',
      resource: 'k2',
    });
    const ownRoster = await k2.request(rosterGet());
    assert.equal(ownRoster.getChild('query')?.getChildren('item').length, 0, ownRoster.toString());
    await k2.send(presence());
    await ping(k2);
    await k2.expectNone(isPresence({ from: `${alice}@${DOMAIN}/a` }), 1000, "alice's presence");
    // and alice does not see the new kim either
    await a.expectNone(isPresence({ from: `${K}/k2` }), 300, "new kim's presence");
  });
});
