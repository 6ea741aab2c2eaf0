// XEP-0050 ad-hoc commands with the XEP-0133 service administration set,
// from a real @xmpp/client: an admin (config `admins`) lists the commands,
// adds a user who then logs in, changes a password, reads a roster and the
// online users, announces, and deletes the user; a non-admin sees no
// commands and is refused with forbidden.
import assert from 'node:assert/strict';
import {
  disco,
  DOMAIN,
  createClient,
  stanzaError,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type Element,
  type TestClient,
  type TestNode,
} from '../helpers.ts';

const NS_COMMANDS = 'http://jabber.org/protocol/commands';
const NS_ADMIN = 'http://jabber.org/protocol/admin';
const NS_DATA = 'jabber:x:data';
const PW = 'adhoc-pw';

/** A submitted XEP-0004 form with FORM_TYPE and the given fields. */
const form = (fields: Record<string, string | string[]>) =>
  xml(
    'x',
    { xmlns: NS_DATA, type: 'submit' },
    xml('field', { var: 'FORM_TYPE' }, xml('value', {}, NS_ADMIN)),
    ...Object.entries(fields).map(([k, v]) =>
      xml('field', { var: k }, ...[v].flat().map((x) => xml('value', {}, x))),
    ),
  );
const command = (node: string, attrs: Record<string, string> = {}, ...children: Element[]) =>
  xml(
    'iq',
    { type: 'set', to: DOMAIN },
    xml('command', { xmlns: NS_COMMANDS, node: `${NS_ADMIN}#${node}`, ...attrs }, ...children),
  );

describe('XEP-0050 ad-hoc commands, XEP-0133 service administration', function () {
  this.timeout(60_000);
  let node: TestNode;
  const root = uniqueName('root');
  const joe = uniqueName('joe');
  let admin: TestClient;
  let user: TestClient;

  /** Run a command in two stages as a client does: execute (the form), then submit it in the same session. */
  const run = async (c: TestClient, name: string, fields: Record<string, string | string[]>) => {
    const first = await c.request(command(name));
    assert.equal(first.attrs.type, 'result', first.toString());
    const cmd = first.getChild('command', NS_COMMANDS)!;
    assert.equal(cmd.attrs.status, 'executing');
    const x = cmd.getChild('x', NS_DATA)!;
    assert.equal(x.attrs.type, 'form');
    const vars = x.getChildren('field').map((f) => f.attrs.var);
    for (const k of Object.keys(fields))
      assert.ok(vars.includes(k), `${name}: no field ${k} in ${vars.join(',')}`);
    return c.request(
      command(name, { sessionid: cmd.attrs.sessionid, action: 'complete' }, form(fields)),
    );
  };
  const completed = (res: Element) => {
    assert.equal(res.attrs.type, 'result', res.toString());
    const cmd = res.getChild('command', NS_COMMANDS)!;
    assert.equal(cmd.attrs.status, 'completed');
    return cmd;
  };

  before(async () => {
    node = await startNode({ config: `admins: [${root}]\n` });
    await node.addUser(root, PW);
    await node.addUser(joe, PW);
    admin = await xmppClient({
      port: node.ports.xmpp,
      username: root,
      password: PW,
      resource: 'console',
    });
    user = await xmppClient({
      port: node.ports.xmpp,
      username: joe,
      password: PW,
      resource: 'phone',
    });
    await user.send(xml('presence'));
  });
  after(async () => {
    await stopAllClients();
    await node?.dispose();
  });

  it('the server advertises commands; disco#items of the commands node lists the admin set to an admin [XEP-0050 2.1, 2.2]', async () => {
    const info = await disco(admin, 'info', DOMAIN);
    assert.ok(info.getChildren('feature').some((f) => f.attrs.var === NS_COMMANDS));
    const items = await admin.request(
      xml(
        'iq',
        { type: 'get', to: DOMAIN },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#items', node: NS_COMMANDS }),
      ),
    );
    const q = items.getChild('query')!;
    assert.equal(q.attrs.node, NS_COMMANDS);
    const nodes = q.getChildren('item').map((i) => i.attrs.node);
    for (const n of [
      'add-user',
      'delete-user',
      'change-user-password',
      'get-online-users-list',
      'announce',
      'get-user-roster',
    ])
      assert.ok(nodes.includes(`${NS_ADMIN}#${n}`), `${n} missing from ${nodes.join(', ')}`);
    assert.ok(q.getChildren('item').every((i) => i.attrs.jid === DOMAIN && i.attrs.name));
    // [XEP-0050 2.3] a command node's identity
    const cinfo = await admin.request(
      xml(
        'iq',
        { type: 'get', to: DOMAIN },
        xml('query', {
          xmlns: 'http://jabber.org/protocol/disco#info',
          node: `${NS_ADMIN}#add-user`,
        }),
      ),
    );
    const id = cinfo.getChild('query')!.getChild('identity')!;
    assert.deepEqual([id.attrs.category, id.attrs.type], ['automation', 'command-node']);
    const linfo = await admin.request(
      xml(
        'iq',
        { type: 'get', to: DOMAIN },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#info', node: NS_COMMANDS }),
      ),
    );
    const lid = linfo.getChild('query')!.getChild('identity')!;
    assert.deepEqual([lid.attrs.category, lid.attrs.type], ['automation', 'command-list']);
  });

  it('add-user: an admin adds an account in two stages; the new user logs in [XEP-0133 4.1]', async () => {
    const fresh = uniqueName('new');
    const done = completed(
      await run(admin, 'add-user', {
        accountjid: `${fresh}@${DOMAIN}`,
        password: 'fresh-pw',
        'password-verify': 'fresh-pw',
      }),
    );
    assert.equal(done.getChild('note')!.attrs.type, 'info');
    const c = await xmppClient({
      port: node.ports.xmpp,
      username: fresh,
      password: 'fresh-pw',
      resource: 'first',
    });
    assert.equal(c.bare, `${fresh}@${DOMAIN}`);
    await c.stop();
    // the same again: conflict, as `parley user add` says
    const again = await run(admin, 'add-user', {
      accountjid: `${fresh}@${DOMAIN}`,
      password: 'x',
      'password-verify': 'x',
    });
    assert.deepEqual(stanzaError(again), { type: 'cancel', condition: 'conflict' });
    // passwords that differ: not-acceptable
    const differ = await run(admin, 'add-user', {
      accountjid: `${uniqueName('nope')}@${DOMAIN}`,
      password: 'a',
      'password-verify': 'b',
    });
    assert.equal(stanzaError(differ).condition, 'not-acceptable');
  });

  it('a non-admin sees no commands and is refused with forbidden [XEP-0133 3]', async () => {
    const items = await user.request(
      xml(
        'iq',
        { type: 'get', to: DOMAIN },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#items', node: NS_COMMANDS }),
      ),
    );
    assert.equal(items.attrs.type, 'result');
    assert.deepEqual(items.getChild('query')!.getChildren('item'), []);
    const res = await user.request(command('add-user'));
    assert.deepEqual(stanzaError(res), { type: 'auth', condition: 'forbidden' });
    const direct = await user.request(
      command(
        'add-user',
        {},
        form({ accountjid: `${uniqueName('x')}@${DOMAIN}`, password: 'p', 'password-verify': 'p' }),
      ),
    );
    assert.equal(stanzaError(direct).condition, 'forbidden');
  });

  it('get-online-users-list, get-user-roster and the counts answer result forms [XEP-0133 4.20, 4.8, 4.13, 4.15]', async () => {
    await user.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'query',
          { xmlns: 'jabber:iq:roster' },
          xml('item', { jid: `${root}@${DOMAIN}`, name: 'The Admin' }),
        ),
      ),
    );
    const online = completed(await run(admin, 'get-online-users-list', {}));
    const jids = online
      .getChild('x', NS_DATA)!
      .getChildren('field')
      .find((f) => f.attrs.var === 'onlineuserjids')!
      .getChildren('value')
      .map((v) => v.getText());
    assert.ok(
      jids.includes(`${joe}@${DOMAIN}`) && jids.includes(`${root}@${DOMAIN}`),
      jids.join(','),
    );
    const roster = completed(
      await run(admin, 'get-user-roster', { accountjid: `${joe}@${DOMAIN}` }),
    );
    const item = roster
      .getChild('x', NS_DATA)!
      .getChild('query', 'jabber:iq:roster')!
      .getChild('item')!;
    assert.deepEqual(
      [item.attrs.jid, item.attrs.name, item.attrs.subscription],
      [`${root}@${DOMAIN}`, 'The Admin', 'none'],
    );
    const none = await run(admin, 'get-user-roster', {
      accountjid: `nobody-${uniqueName('z')}@${DOMAIN}`,
    });
    assert.equal(stanzaError(none).condition, 'item-not-found');
    // [XEP-0133 4.13, 4.15] the counts
    const value = (res: Element, v: string) =>
      Number(
        completed(res)
          .getChild('x', NS_DATA)!
          .getChildren('field')
          .find((f) => f.attrs.var === v)!
          .getChildText('value'),
      );
    assert.ok(value(await run(admin, 'get-registered-users-num', {}), 'registeredusersnum') >= 3);
    assert.equal(
      value(await run(admin, 'get-online-users-num', {}), 'onlineusersnum'),
      jids.length,
    );
  });

  it('announce: a headline from the server reaches the online user [XEP-0133 4.23]', async () => {
    completed(
      await run(admin, 'announce', { subject: 'Maintenance', announcement: 'down at 22:00' }),
    );
    const m = await user.waitFor(
      (el) => el.name === 'message' && el.getChildText('body') === 'down at 22:00',
    );
    assert.equal(m.attrs.from, DOMAIN);
    assert.equal(m.attrs.type, 'headline');
    assert.equal(m.getChildText('subject'), 'Maintenance');
  });

  it('change-user-password, then delete-user: the old password fails, then the account is gone [XEP-0133 4.7, 4.2]', async () => {
    const victim = uniqueName('v');
    completed(
      await run(admin, 'add-user', {
        accountjid: `${victim}@${DOMAIN}`,
        password: 'one',
        'password-verify': 'one',
      }),
    );
    completed(
      await run(admin, 'change-user-password', {
        accountjid: `${victim}@${DOMAIN}`,
        password: 'two',
      }),
    );
    const old = createClient({ port: node.ports.xmpp, username: victim, password: 'one' });
    await assert.rejects(old.start());
    const c = await xmppClient({ port: node.ports.xmpp, username: victim, password: 'two' });
    completed(await run(admin, 'delete-user', { accountjids: [`${victim}@${DOMAIN}`] }));
    await c.closed; // the removal closes its session
    await assert.rejects(
      createClient({ port: node.ports.xmpp, username: victim, password: 'two' }).start(),
    );
  });

  it('sessions: cancel ends one, an unknown sessionid is bad-sessionid, next is bad-action [XEP-0050 3.4, 4.6]', async () => {
    const first = await admin.request(command('announce'));
    const sid = first.getChild('command', NS_COMMANDS)!.attrs.sessionid;
    const cancel = await admin.request(command('announce', { sessionid: sid, action: 'cancel' }));
    assert.equal(cancel.getChild('command', NS_COMMANDS)!.attrs.status, 'canceled');
    const gone = await admin.request(
      command('announce', { sessionid: sid, action: 'complete' }, form({ announcement: 'x' })),
    );
    assert.equal(stanzaError(gone).condition, 'bad-request');
    assert.ok(gone.getChild('error')!.getChild('bad-sessionid', NS_COMMANDS));
    const next = await admin.request(command('announce', { action: 'next' }));
    assert.ok(next.getChild('error')!.getChild('bad-action', NS_COMMANDS));
    const unknown = await admin.request(command('restart'));
    assert.equal(stanzaError(unknown).condition, 'item-not-found');
  });
});
