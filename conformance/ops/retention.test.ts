// Per-user retention on demand (`parley archive purge --before DATE --user
// USER`), the retention policy applied now (`parley archive retain`) and an account's roster (`parley user roster`, XEP-0133 "get user
// roster"), against a running node and a stopped one; `--json` checked
// against a schema, the effect checked in what the users' archives return.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import {
  DOMAIN,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestNode,
} from '../helpers.ts';
import { cliFailure, cliJson } from './cli-json.ts';

const Purge = z.strictObject({
  removed: z.number().int(),
  before: z.string(),
  user: z.string().optional(),
});
const Export = z.object({
  user: z.string(),
  count: z.number().int(),
  messages: z.array(z.object({ body: z.string().optional() })),
});
const Roster = z.strictObject({
  user: z.string(),
  items: z.array(
    z.strictObject({
      jid: z.string(),
      name: z.string().optional(),
      subscription: z.enum(['none', 'to', 'from', 'both']),
      groups: z.array(z.string()),
      ask: z.literal(true).optional(),
    }),
  ),
});

describe('parley archive purge --user, archive retain and user roster', function () {
  this.timeout(90_000);
  let node: TestNode;
  const alice = uniqueName('ret-a');
  const bob = uniqueName('ret-b');
  const PW = 'ret-pw';
  const json = <T extends z.ZodType>(schema: T, args: string[]) =>
    cliJson(schema, node.dataDir, args);

  before(async () => {
    node = await startNode();
    await node.addUser(alice, PW);
    await node.addUser(bob, PW);
  });
  after(async () => {
    await stopAllClients();
    await node?.dispose();
  });

  it("purge --before DATE --user: that account's archive loses its older messages, the other party keeps them [XEP-0313]", async () => {
    const a = await xmppClient({
      port: node.ports.xmpp,
      username: alice,
      password: PW,
      resource: 'r',
    });
    const b = await xmppClient({
      port: node.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'r',
    });
    await a.send(xml('presence'));
    await b.send(xml('presence'));
    await a.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'query',
          { xmlns: 'jabber:iq:roster' },
          xml('item', { jid: `${bob}@${DOMAIN}`, name: 'Bob' }, xml('group', {}, 'Work')),
        ),
      ),
    );
    for (const body of ['kept by bob 1', 'kept by bob 2']) {
      await a.send(
        xml(
          'message',
          { to: `${bob}@${DOMAIN}`, type: 'chat', id: uniqueName('m') },
          xml('body', {}, body),
        ),
      );
      await b.waitFor((el) => el.name === 'message' && el.getChildText('body') === body);
    }
    await a.stop();
    await b.stop();
    const none = await json(Purge, ['archive', 'purge', '--before', '1d', '--user', alice]);
    assert.deepEqual([none.removed, none.user], [0, `${alice}@${DOMAIN}`]);
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
    const r = await json(Purge, ['archive', 'purge', '--before', tomorrow, '--user', alice]);
    assert.equal(r.removed, 2);
    assert.equal((await json(Export, ['archive', 'export', alice])).messages.length, 0);
    assert.deepEqual(
      (await json(Export, ['archive', 'export', bob])).messages.map((m) => m.body),
      ['kept by bob 1', 'kept by bob 2'],
    );
    assert.equal(
      await cliFailure(node.dataDir, [
        'archive',
        'purge',
        '--before',
        tomorrow,
        '--user',
        'nobody-here',
      ]),
      'item-not-found',
    );
  });

  it('user roster --json: contacts, subscription, name, groups; item-not-found for no such user', async () => {
    const r = await json(Roster, ['user', 'roster', alice]);
    assert.deepEqual(r, {
      user: `${alice}@${DOMAIN}`,
      items: [{ jid: `${bob}@${DOMAIN}`, name: 'Bob', subscription: 'none', groups: ['Work'] }],
    });
    assert.equal(
      await cliFailure(node.dataDir, ['user', 'roster', 'nobody-here']),
      'item-not-found',
    );
  });

  it('archive retain: the retention policy applied now, from the flags or the configuration [XEP-0313]', async () => {
    const Retain = z.strictObject({
      aged: z.number().int(),
      trimmed: z.number().int(),
      maxAgeDays: z.number(),
      maxPerUser: z.number().int(),
    });
    // no policy configured: nothing happens
    assert.deepEqual(await json(Retain, ['archive', 'retain']), {
      aged: 0,
      trimmed: 0,
      maxAgeDays: 0,
      maxPerUser: 0,
    });
    // one more message for bob (he has the two alice purged from her side): then the newest one per archive stays
    const a = await xmppClient({
      port: node.ports.xmpp,
      username: alice,
      password: PW,
      resource: 'r2',
    });
    const b = await xmppClient({
      port: node.ports.xmpp,
      username: bob,
      password: PW,
      resource: 'r2',
    });
    await b.send(xml('presence'));
    await a.send(
      xml(
        'message',
        { to: `${bob}@${DOMAIN}`, type: 'chat', id: uniqueName('m') },
        xml('body', {}, 'the newest'),
      ),
    );
    await b.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'the newest');
    await a.stop();
    await b.stop();
    // the policy from a configuration file; a flag overrides it
    const cfg = path.join(node.dataDir, 'retain.yaml');
    writeFileSync(cfg, 'modules:\n  archive:\n    maxPerUser: 1\n');
    const off = await json(Retain, ['--config', cfg, 'archive', 'retain', '--max-per-user', '0']);
    assert.deepEqual([off.trimmed, off.maxPerUser], [0, 0]);
    const r = await json(Retain, ['--config', cfg, 'archive', 'retain']);
    assert.equal(r.maxPerUser, 1);
    assert.equal(r.trimmed, 2); // bob's two older ones; alice had only the newest
    assert.deepEqual(
      (await json(Export, ['archive', 'export', bob])).messages.map((m) => m.body),
      ['the newest'],
    );
    assert.deepEqual(
      (await json(Export, ['archive', 'export', alice])).messages.map((m) => m.body),
      ['the newest'],
    );
    assert.equal(
      await cliFailure(node.dataDir, ['archive', 'retain', '--max-per-user', 'many']),
      undefined,
    );
  });

  it('with the node stopped: purge --user opens the store itself', async () => {
    await node.stop();
    const r = await json(Purge, [
      'archive',
      'purge',
      '--before',
      new Date(Date.now() + 86_400_000).toISOString(),
      '--user',
      bob,
    ]);
    assert.equal(r.removed, 1);
    assert.equal((await json(Export, ['archive', 'export', bob])).messages.length, 0);
    await node.restart();
  });
});
