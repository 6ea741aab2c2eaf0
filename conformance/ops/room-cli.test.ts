// Black-box: `parley room …` through the admin socket of a running node,
// against what an XMPP occupant sees on the wire.
import assert from 'node:assert/strict';
import {
  closeAllRaw,
  runCli,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  DOMAIN,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import { MUC, NS_DISCO_ITEMS, codes, fromOccupant, join, joinError } from '../muc-helpers.ts';

describe('parley room (admin socket)', function () {
  this.timeout(60_000);
  let node: TestNode;
  let c: TestClient;
  const user = uniqueName('rc');
  const cli = (...args: string[]) =>
    runCli(['--data-dir', node.dataDir, '--domain', DOMAIN, 'room', ...args]);

  before(async function () {
    node = await startNode();
    await node.addUser(user, 'pw');
    c = await xmppClient({ port: node.ports.xmpp, username: user, password: 'pw', resource: 'r' });
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  it('create, list, info, kick, set-affiliation (ban), destroy', async () => {
    let r = await cli('create', 'ops', '--name', 'Operations', '--owner', 'admin');
    assert.equal(r.code, 0, r.stderr);
    const items = await c.request(
      xml('iq', { type: 'get', to: MUC }, xml('query', { xmlns: NS_DISCO_ITEMS })),
    );
    assert.ok(
      items
        .getChild('query')!
        .getChildren('item')
        .some((i) => i.attrs.jid === `ops@${MUC}` && i.attrs.name === 'Operations'),
    );
    await join(c, 'ops', 'visitor');
    r = await cli('list');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      JSON.parse(r.stdout).find((x: { room: string }) => x.room === `ops@${MUC}`)?.occupants,
      1,
    );
    r = await cli('info', 'ops');
    const info = JSON.parse(r.stdout);
    assert.equal(info.occupants[0].nick, 'visitor');
    assert.equal(info.config.persistent, true);
    r = await cli('kick', 'ops', 'visitor', '--reason', 'maintenance');
    assert.equal(r.code, 0, r.stderr);
    const out = await c.waitFor(fromOccupant('ops', 'visitor', 'unavailable'));
    assert.deepEqual(codes(out), [110, 307]);
    r = await cli('set-affiliation', 'ops', user, 'outcast');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await joinError(c, 'ops', 'visitor'), 'forbidden');
    r = await cli('destroy', 'ops', '--reason', 'done');
    assert.equal(r.code, 0, r.stderr);
    r = await cli('info', 'ops');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no room/);
  });
});
