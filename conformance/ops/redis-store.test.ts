// Black-box: a node on the Redis store (`storage.backend: redis`, docs/operations.md
// "Storage backends"). Accounts made by the CLI, a roster, an offline message
// and the archive are written to a real redis-server by one node and served
// over the wire by another node with a data directory of its own: what a
// cluster's nodes share.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  DOMAIN,
  isMessage,
  makeFriends,
  nextId,
  ping,
  presence,
  rosterGet,
  rosterItem,
  sleep,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestNode,
} from '../helpers.ts';
import { redisKeys, startRedis, type TestRedis } from '../redis-server.ts';

const PW = 'redis-store-pw';
const NS_MAM = 'urn:xmpp:mam:2';
const NS_FORWARD = 'urn:xmpp:forward:0';

describe('a node on the Redis store (storage.backend: redis)', function () {
  this.timeout(60_000);
  let redis: TestRedis;
  const nodes: TestNode[] = [];
  const alice = uniqueName('ra');
  const bob = uniqueName('rb');
  const config = () => `storage:\n  backend: redis\n  url: ${redis.url}\n  prefix: "conf:"\n`;

  before(async function () {
    redis = await startRedis();
  });

  after(async function () {
    await stopAllClients();
    for (const n of nodes) await n.dispose();
    await redis?.dispose();
  });

  it('accounts, roster, an offline message and the archive written through one node are served by another with its own data directory [RFC6121 2.1.3] [XEP-0160] [XEP-0313 4.1]', async function () {
    const first = await startNode({ config: config() });
    nodes.push(first);
    await first.addUser(alice, PW);
    await first.addUser(bob, PW);
    await makeFriends(first, alice, bob, PW);
    const a = await xmppClient({ port: first.ports.xmpp, username: alice, password: PW });
    const body = `while you were away ${nextId('b')}`;
    await a.send(
      xml(
        'message',
        { to: `${bob}@${DOMAIN}`, type: 'chat', id: nextId('m') },
        xml('body', {}, body),
      ),
    );
    await ping(a);
    await stopAllClients();
    await first.stop();
    // Nothing of it went to the first node's disk.
    assert.equal(
      existsSync(path.join(first.dataDir, 'store')),
      false,
      'no embedded store in the data directory',
    );

    const second = await startNode({ config: config() });
    nodes.push(second);
    assert.notEqual(second.dataDir, first.dataDir);
    // The account (SASL against the stored credentials) and the roster.
    const b = await xmppClient({ port: second.ports.xmpp, username: bob, password: PW });
    const roster = await b.request(rosterGet());
    assert.equal(
      rosterItem(roster, `${alice}@${DOMAIN}`)?.attrs.subscription,
      'both',
      roster.toString(),
    );
    // The offline message, on initial presence [XEP-0160].
    await b.send(presence());
    const offline = await b.waitFor(
      (e) => isMessage({ type: 'chat' })(e) && e.getChildText('body') === body,
      5000,
      'the offline message',
    );
    assert.equal(offline.attrs.from?.split('/')[0], `${alice}@${DOMAIN}`);
    // And bob's archive has it [XEP-0313 4.1].
    const queryid = nextId('q');
    const fin = await b.request(
      xml('iq', { type: 'set' }, xml('query', { xmlns: NS_MAM, queryid })),
      10_000,
    );
    assert.equal(fin.attrs.type, 'result', fin.toString());
    const archived = b.received
      .filter((e) => e.getChild('result', NS_MAM)?.attrs.queryid === queryid)
      .map((e) =>
        e
          .getChild('result', NS_MAM)
          ?.getChild('forwarded', NS_FORWARD)
          ?.getChild('message')
          ?.getChildText('body'),
      );
    assert.ok(archived.includes(body), `archive: ${JSON.stringify(archived)}`);
    // The offline queue was emptied in Redis: a third login gets nothing again.
    await stopAllClients();
    const again = await xmppClient({ port: second.ports.xmpp, username: bob, password: PW });
    await again.send(presence());
    await ping(again);
    await again.expectNone(
      (e) => isMessage({ type: 'chat' })(e) && e.getChildText('body') === body,
      300,
      'the offline message a second time',
    );

    // The data is under the configured prefix in Redis.
    assert.ok((await redisKeys(redis.url, 'conf:kv:*')).length > 0, 'kv keys under conf:');
  });

  it('/readyz says the store is away while redis-server is down, and the node serves again once it is back (ioredis reconnects)', async function () {
    const node = nodes[nodes.length - 1];
    const ready = async () => {
      const r = await fetch(`http://127.0.0.1:${node.ports.http}/readyz`);
      return { status: r.status, body: (await r.json()) as { ready: boolean; store: boolean } };
    };
    const before = await ready();
    assert.deepEqual([before.status, before.body.store], [200, true]);
    await redis.kill9();
    let away = await ready();
    for (let i = 0; i < 50 && away.status === 200; i++) away = (await sleep(100), await ready());
    assert.equal(away.status, 503);
    assert.equal(away.body.store, false);
    await redis.restart();
    let back = await ready();
    for (let i = 0; i < 100 && back.status !== 200; i++) back = (await sleep(100), await ready());
    assert.equal(back.status, 200, JSON.stringify(back.body));
    // What was stored before the restart is there (AOF): bob logs in and has his roster.
    const b = await xmppClient({ port: node.ports.xmpp, username: bob, password: PW });
    const roster = await b.request(rosterGet());
    assert.equal(
      rosterItem(roster, `${alice}@${DOMAIN}`)?.attrs.subscription,
      'both',
      roster.toString(),
    );
  });
});
