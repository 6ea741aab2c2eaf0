// `parley upload purge` through the admin socket of a running node, and on
// the store with no node: files of one user, files before a date, the
// expiry rule; --json output; what is gone is gone on the wire and on disk.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import {
  runCli,
  startNode,
  stopAllClients,
  uniqueName,
  xmppClient,
  type TestNode,
} from '../helpers.ts';
import { httpsCall, uploadFile } from '../upload-helpers.ts';

const PW = 'pw-purge';

describe('parley upload purge', function () {
  this.timeout(60_000);
  let node: TestNode;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const urls: Record<string, string> = {};
  const cli = (...args: string[]) =>
    runCli([
      '--data-dir',
      node.dataDir,
      '--domain',
      'localhost',
      '--config',
      path.join(node.dataDir, 'parley.yaml'),
      '--json',
      ...args,
    ]);
  const files = () => readdirSync(path.join(node.dataDir, 'upload')).length;

  before(async function () {
    this.timeout(60_000);
    node = await startNode({ config: 'modules:\n  upload:\n    maxAgeDays: 30\n' });
    await node.addUser(alice, PW);
    await node.addUser(bob, PW);
    const a = await xmppClient({ port: node.ports.xmpp, username: alice, password: PW });
    const b = await xmppClient({ port: node.ports.xmpp, username: bob, password: PW });
    urls.a1 = await uploadFile(a, 'one.bin', Buffer.alloc(100, 1));
    urls.a2 = await uploadFile(a, 'two.bin', Buffer.alloc(50, 2));
    urls.b1 = await uploadFile(b, 'three.bin', Buffer.alloc(10, 3));
    await stopAllClients();
  });
  after(async () => node?.dispose());

  it('with no option, the expiry rule of the running node: nothing younger than maxAgeDays goes', async () => {
    const r = await cli('upload', 'purge');
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(JSON.parse(r.stdout), { removed: 0, bytes: 0 });
    assert.equal(files(), 3);
  });

  it('--user: every file of that account, and only those; the URLs answer 404', async () => {
    const r = await cli('upload', 'purge', '--user', alice);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(JSON.parse(r.stdout), { removed: 2, bytes: 150, user: alice });
    assert.equal((await httpsCall('GET', urls.a1)).status, 404);
    assert.equal((await httpsCall('GET', urls.a2)).status, 404);
    assert.equal((await httpsCall('GET', urls.b1)).status, 200);
    assert.equal(files(), 1);
  });

  it('a --before that is not a date fails with a JSON error and exit code 1', async () => {
    const r = await cli('upload', 'purge', '--before', 'yesterday-ish');
    assert.equal(r.code, 1);
    assert.equal(JSON.parse(r.stdout).ok, false);
    assert.equal(files(), 1);
  });

  it('--before a date in the past keeps newer files; with no node running, --before still works on the store, the expiry rule does not', async () => {
    const past = await cli('upload', 'purge', '--before', '2020-01-01');
    assert.deepEqual(JSON.parse(past.stdout), {
      removed: 0,
      bytes: 0,
      before: '2020-01-01T00:00:00.000Z',
    });
    await node.stop();
    const expiry = await cli('upload', 'purge');
    assert.equal(expiry.code, 1);
    assert.equal(JSON.parse(expiry.stdout).code, 'service-unavailable');
    const future = new Date(Date.now() + 60_000).toISOString();
    const r = await cli('upload', 'purge', '--before', future);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(JSON.parse(r.stdout), { removed: 1, bytes: 10, before: future });
    assert.equal(files(), 0);
    await node.restart();
    assert.equal(
      (await httpsCall('GET', urls.b1.replace(/:\d+\//, `:${node.ports.https}/`))).status,
      404,
    );
  });
});
