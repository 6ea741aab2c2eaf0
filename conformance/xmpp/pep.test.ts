// Over 600 lines: one node and one set of contacts (subscriptions, caps) serve every PEP case, and the
// malformed/forbidden table shares them. Next split: the table into pep-errors.test.ts with a shared setup.
// Black-box XEP-0163 PEP on the XEP-0060 subset, with XEP-0115 caps
// (+notify), over @xmpp/client: OMEMO device lists, avatars/nick with
// presence access, bookmarks with whitelist, items/max_items/retract/delete,
// node configuration, and the malformed/forbidden request table.
import assert from 'node:assert/strict';
import type { Element } from '@xmpp/xml';
import {
  makeFriends,
  DOMAIN,
  ping,
  startNode,
  stanzaError,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import { capsVer } from '../caps-helpers.ts';

const PW = 'pw-pep';
const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const NS_OWNER = 'http://jabber.org/protocol/pubsub#owner';
const NS_EVENT = 'http://jabber.org/protocol/pubsub#event';
const NS_ERRORS = 'http://jabber.org/protocol/pubsub#errors';
const NS_DISCO = 'http://jabber.org/protocol/disco#info';
const NS_CAPS = 'http://jabber.org/protocol/caps';
const DEVICELIST = 'eu.siacs.conversations.axolotl.devicelist';
const NICK = 'http://jabber.org/protocol/nick';
const AVATAR_META = 'urn:xmpp:avatar:metadata';
const BOOKMARKS2 = 'urn:xmpp:bookmarks:1';

/** A data form of the given FORM_TYPE. */
function form(type: string, fields: Record<string, string>, formType = 'submit'): Element {
  const x = xml(
    'x',
    { xmlns: 'jabber:x:data', type: formType },
    xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, type)),
  );
  for (const [k, v] of Object.entries(fields))
    x.append(xml('field', { var: k }, xml('value', {}, v)));
  return x;
}
const publishOptions = (fields: Record<string, string>) =>
  xml('publish-options', {}, form('http://jabber.org/protocol/pubsub#publish-options', fields));

function publish(
  node: string,
  id: string | undefined,
  payload: Element,
  options?: Record<string, string>,
  to?: string,
): Element {
  const ps = xml(
    'pubsub',
    { xmlns: NS_PUBSUB },
    xml('publish', { node }, xml('item', { id }, payload)),
  );
  if (options) ps.append(publishOptions(options));
  return xml('iq', { type: 'set', to }, ps);
}
const itemsGet = (
  to: string,
  node: string,
  attrs: Record<string, string> = {},
  ids: string[] = [],
) =>
  xml(
    'iq',
    { type: 'get', to },
    xml(
      'pubsub',
      { xmlns: NS_PUBSUB },
      xml('items', { node, ...attrs }, ...ids.map((id) => xml('item', { id }))),
    ),
  );
const devicelist = (...ids: string[]) =>
  xml(
    'list',
    { xmlns: 'eu.siacs.conversations.axolotl' },
    ...ids.map((id) => xml('device', { id })),
  );

/** The event of a PEP notification for `node`, if el is one. */
function event(el: Element, node: string): Element | undefined {
  if (el.name !== 'message') return undefined;
  const ev = el.getChild('event', NS_EVENT);
  const items = ev?.getChild('items');
  return items?.attrs.node === node
    ? items
    : ev?.getChildren('delete').find((d) => d.attrs.node === node)
      ? ev
      : undefined;
}

/** The pubsub#errors condition of an error reply. */
const appError = (el: Element) =>
  el
    .getChild('error')
    ?.getChildElements()
    .find((c) => c.getNS() === NS_ERRORS)?.name;

describe('XEP-0163 PEP, XEP-0115 caps', function () {
  this.timeout(30_000);
  let node: TestNode;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const carol = uniqueName('carol');
  const A = `${alice}@${DOMAIN}`;
  const B = `${bob}@${DOMAIN}`;
  /** disco#info queries each client answered (caps are cached per ver) */
  const discoQueries = new Map<TestClient, number>();

  /** Log in, answer disco#info with these +notify nodes, send presence with caps [XEP-0115 4]. */
  const login = async (
    user: string,
    resource: string,
    notify: string[] = [],
  ): Promise<TestClient> => {
    const c = await xmppClient({ port: node.ports.xmpp, username: user, password: PW, resource });
    const features = [NS_DISCO, NS_CAPS, ...notify.map((n) => `${n}+notify`)];
    const ver = capsVer(features);
    discoQueries.set(c, 0);
    c.xmpp.iqCallee.get(NS_DISCO, 'query', () => {
      discoQueries.set(c, discoQueries.get(c)! + 1);
      return xml(
        'query',
        { xmlns: NS_DISCO },
        xml('identity', { category: 'client', type: 'pc', name: 'parley-test' }),
        ...features.map((f) => xml('feature', { var: f })),
      );
    });
    await c.send(
      xml(
        'presence',
        {},
        xml('c', { xmlns: NS_CAPS, hash: 'sha-1', node: 'https://parley.test', ver }),
      ),
    );
    await ping(c);
    return c;
  };

  before(async function () {
    this.timeout(60_000);
    node = await startNode({
      config: 'modules:\n  pep: { maxItemBytes: 4096, maxItemsPerNode: 5 }\n',
    });
    for (const u of [alice, bob, carol]) await node.addUser(u, PW);
    await makeFriends(node, alice, bob, PW);
  });
  afterEach(async () => stopAllClients());
  after(async () => node?.dispose());

  it("the account's disco#info shows a PEP service with publish-options [XEP-0163 6.1, XEP-0060 7.1.5]", async () => {
    const a = await login(alice, 'disco');
    const r = await a.request(xml('iq', { type: 'get', to: A }, xml('query', { xmlns: NS_DISCO })));
    const q = r.getChild('query', NS_DISCO)!;
    assert.ok(
      q
        .getChildren('identity')
        .some((i) => i.attrs.category === 'pubsub' && i.attrs.type === 'pep'),
    );
    const features = q.getChildren('feature').map((f) => f.attrs.var);
    for (const f of [
      'publish',
      'publish-options',
      'access-open',
      'access-whitelist',
      'retract-items',
      'config-node',
    ])
      assert.ok(features.includes(`${NS_PUBSUB}#${f}`), f);
  });

  it("an OMEMO device list published by one client reaches the contact's clients with +notify and the owner's others; open access lets a stranger read it [XEP-0163 4.3, XEP-0384]", async () => {
    const a1 = await login(alice, 'a1', [DEVICELIST]);
    const a2 = await login(alice, 'a2', [DEVICELIST]);
    const b1 = await login(bob, 'b1', [DEVICELIST]);
    const b2 = await login(bob, 'b2', [DEVICELIST]);
    const bNo = await login(bob, 'plain'); // no +notify
    const c1 = await login(carol, 'c1', [DEVICELIST]); // not a contact
    const r = await a1.request(
      publish(DEVICELIST, 'current', devicelist('1111', '2222'), { 'pubsub#access_model': 'open' }),
    );
    assert.equal(r.attrs.type, 'result', r.toString());
    assert.equal(
      r.getChild('pubsub', NS_PUBSUB)?.getChild('publish')?.getChild('item')?.attrs.id,
      'current',
    );
    for (const c of [b1, b2, a2, a1]) {
      const n = await c.waitFor((e) => !!event(e, DEVICELIST), 3000, 'device list notification');
      assert.equal(n.attrs.from, A, 'from the owner’s bare JID');
      const ids = event(n, DEVICELIST)!
        .getChild('item')!
        .getChild('list')!
        .getChildren('device')
        .map((d) => d.attrs.id);
      assert.deepEqual(ids, ['1111', '2222']);
    }
    await bNo.expectNone((e) => !!event(e, DEVICELIST), 300, 'a notification without +notify');
    await c1.expectNone((e) => !!event(e, DEVICELIST), 100, 'a notification to a non-contact');
    // [XEP-0060 6.5] open access: anyone may read
    const got = await c1.request(itemsGet(A, DEVICELIST));
    assert.equal(got.attrs.type, 'result', got.toString());
    assert.equal(
      got
        .getChild('pubsub')!
        .getChild('items')!
        .getChildren('item')[0]
        .getChild('list')!
        .getChildren('device').length,
      2,
    );
  });

  it('a client that comes online with +notify gets the last item; a second client with the same caps is not queried again [XEP-0163 4.3, XEP-0115 5.4]', async () => {
    const a = await login(alice, 'nick', [NICK]);
    await a.request(publish(NICK, 'current', xml('nick', { xmlns: NICK }, 'Alice')));
    await a.waitFor((e) => !!event(e, NICK), 3000, 'own notification');
    const b1 = await login(bob, 'late1', [NICK]);
    const n = await b1.waitFor((e) => !!event(e, NICK), 3000, 'last item on presence');
    assert.equal(event(n, NICK)!.getChild('item')!.getChildText('nick'), 'Alice');
    const b2 = await login(bob, 'late2', [NICK]);
    await b2.waitFor((e) => !!event(e, NICK), 3000, 'last item on presence (cached caps)');
    // three clients (two accounts) with the same caps: one disco#info query in all, the others from the cache
    assert.equal(
      discoQueries.get(a)! + discoQueries.get(b1)! + discoQueries.get(b2)!,
      1,
      'one query per ver',
    );
  });

  it('a ver whose hash does not verify is not cached: the next client with it is asked itself, and gets what it asked for [XEP-0115 5.4]', async () => {
    // a liar shows the ver of [DEVICELIST+notify] but answers with NICK+notify
    const honest = [NS_DISCO, NS_CAPS, `${AVATAR_META}+notify`];
    const ver = capsVer(honest);
    const liar = await xmppClient({
      port: node.ports.xmpp,
      username: carol,
      password: PW,
      resource: 'liar',
    });
    let liarAsked = 0;
    liar.xmpp.iqCallee.get(NS_DISCO, 'query', () => {
      liarAsked++;
      return xml(
        'query',
        { xmlns: NS_DISCO },
        xml('identity', { category: 'client', type: 'pc', name: 'parley-test' }),
        xml('feature', { var: `${NICK}+notify` }),
      );
    });
    await liar.send(
      xml(
        'presence',
        {},
        xml('c', { xmlns: NS_CAPS, hash: 'sha-1', node: 'https://evil.test', ver }),
      ),
    );
    await ping(liar);
    for (let i = 0; i < 30 && !liarAsked; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(liarAsked, 1);
    const b = await login(bob, 'honest', [AVATAR_META]);
    assert.equal(
      discoQueries.get(b),
      1,
      'the honest client was asked: the liar’s answer was not cached',
    );
  });

  it('presence access: a contact reads the avatar metadata, a stranger gets presence-subscription-required [XEP-0060 6.5.9.6, XEP-0084]', async () => {
    const a = await login(alice, 'avatar');
    const meta = xml(
      'metadata',
      { xmlns: AVATAR_META },
      xml('info', { id: 'abc', bytes: '10', type: 'image/png' }),
    );
    assert.equal((await a.request(publish(AVATAR_META, 'abc', meta))).attrs.type, 'result');
    const b = await login(bob, 'av');
    const ok = await b.request(itemsGet(A, AVATAR_META));
    assert.equal(ok.getChild('pubsub')!.getChild('items')!.getChild('item')!.attrs.id, 'abc');
    const c = await login(carol, 'av');
    const no = await c.request(itemsGet(A, AVATAR_META));
    assert.deepEqual(stanzaError(no), { type: 'auth', condition: 'not-authorized' });
    assert.equal(appError(no), 'presence-subscription-required');
  });

  it('whitelist (bookmarks): only the owner reads; max_items=max keeps many; items by id and max_items; precondition-not-met on a mismatch [XEP-0402, XEP-0223, XEP-0060 6.5.7, 6.5.8, 7.1.5]', async () => {
    const a = await login(alice, 'bm', [BOOKMARKS2]);
    const opts = {
      'pubsub#access_model': 'whitelist',
      'pubsub#persist_items': 'true',
      'pubsub#max_items': 'max',
      'pubsub#send_last_published_item': 'never',
    };
    for (const room of ['r1', 'r2', 'r3']) {
      const conf = xml(
        'conference',
        { xmlns: BOOKMARKS2, name: room, autojoin: 'true' },
        xml('nick', {}, 'al'),
      );
      const r = await a.request(publish(BOOKMARKS2, `${room}@conference.${DOMAIN}`, conf, opts));
      assert.equal(r.attrs.type, 'result', r.toString());
    }
    const all = await a.request(itemsGet(A, BOOKMARKS2));
    assert.deepEqual(
      all
        .getChild('pubsub')!
        .getChild('items')!
        .getChildren('item')
        .map((i) => i.attrs.id),
      ['r3', 'r2', 'r1'].map((r) => `${r}@conference.${DOMAIN}`),
      'newest first',
    );
    const newest = await a.request(itemsGet(A, BOOKMARKS2, { max_items: '1' }));
    assert.deepEqual(
      newest
        .getChild('pubsub')!
        .getChild('items')!
        .getChildren('item')
        .map((i) => i.attrs.id),
      [`r3@conference.${DOMAIN}`],
    );
    const byId = await a.request(itemsGet(A, BOOKMARKS2, {}, [`r1@conference.${DOMAIN}`]));
    assert.equal(
      byId.getChild('pubsub')!.getChild('items')!.getChild('item')!.getChild('conference')!.attrs
        .name,
      'r1',
    );
    const b = await login(bob, 'bm');
    const no = await b.request(itemsGet(A, BOOKMARKS2));
    assert.deepEqual(stanzaError(no), { type: 'cancel', condition: 'not-allowed' });
    assert.equal(appError(no), 'closed-node');
    // [XEP-0060 7.1.5] publish-options that do not match an existing node
    const mismatch = await a.request(
      publish(BOOKMARKS2, 'x@conference.localhost', xml('conference', { xmlns: BOOKMARKS2 }), {
        'pubsub#access_model': 'open',
      }),
    );
    assert.deepEqual(stanzaError(mismatch), { type: 'cancel', condition: 'conflict' });
    assert.equal(appError(mismatch), 'precondition-not-met');
  });

  it('max_items evicts the oldest; retract and delete notify [XEP-0060 7.1.2, 7.2, 8.4]', async () => {
    const nodeName = 'urn:example:mood-log';
    const a = await login(alice, 'log', [nodeName]);
    const b = await login(bob, 'log', [nodeName]);
    for (const i of [1, 2, 3]) {
      await a.request(
        publish(nodeName, `i${i}`, xml('entry', { xmlns: 'urn:example' }, String(i)), {
          'pubsub#max_items': '2',
        }),
      );
    }
    const r = await b.request(itemsGet(A, nodeName));
    assert.deepEqual(
      r
        .getChild('pubsub')!
        .getChild('items')!
        .getChildren('item')
        .map((i) => i.attrs.id),
      ['i3', 'i2'],
    );
    b.drain();
    const ret = await a.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'pubsub',
          { xmlns: NS_PUBSUB },
          xml('retract', { node: nodeName, notify: 'true' }, xml('item', { id: 'i3' })),
        ),
      ),
    );
    assert.equal(ret.attrs.type, 'result', ret.toString());
    const n = await b.waitFor(
      (e) => !!event(e, nodeName)?.getChild('retract'),
      3000,
      'retract notification',
    );
    assert.equal(event(n, nodeName)!.getChild('retract')!.attrs.id, 'i3');
    const del = await a.request(
      xml(
        'iq',
        { type: 'set' },
        xml('pubsub', { xmlns: NS_OWNER }, xml('delete', { node: nodeName })),
      ),
    );
    assert.equal(del.attrs.type, 'result');
    await b.waitFor(
      (e) => !!e.getChild('event', NS_EVENT)?.getChild('delete'),
      3000,
      'delete notification',
    );
    const gone = await a.request(itemsGet(A, nodeName));
    assert.equal(stanzaError(gone).condition, 'item-not-found');
  });

  it('node configuration: get the form, set max_items and access model [XEP-0060 8.2]', async () => {
    const a = await login(alice, 'cfg');
    const nodeName = 'urn:example:cfg';
    await a.request(publish(nodeName, 'one', xml('x', { xmlns: 'urn:example' })));
    const get = await a.request(
      xml(
        'iq',
        { type: 'get' },
        xml('pubsub', { xmlns: NS_OWNER }, xml('configure', { node: nodeName })),
      ),
    );
    const fields = get
      .getChild('pubsub', NS_OWNER)!
      .getChild('configure')!
      .getChild('x')!
      .getChildren('field');
    const value = (v: string) => fields.find((f) => f.attrs.var === v)?.getChildText('value');
    assert.equal(value('pubsub#access_model'), 'presence', 'PEP default [XEP-0163 4]');
    assert.equal(value('pubsub#max_items'), '1');
    const set = await a.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'pubsub',
          { xmlns: NS_OWNER },
          xml(
            'configure',
            { node: nodeName },
            form('http://jabber.org/protocol/pubsub#node_config', {
              'pubsub#access_model': 'open',
              'pubsub#max_items': 'max',
            }),
          ),
        ),
      ),
    );
    assert.equal(set.attrs.type, 'result', set.toString());
    const c = await login(carol, 'cfg');
    assert.equal((await c.request(itemsGet(A, nodeName))).attrs.type, 'result', 'open now');
  });

  it('bookmarks set with XEP-0402 read through XEP-0048 private storage, and back (with notifications) [XEP-0402 compat, XEP-0048, XEP-0049]', async () => {
    const a = await login(alice, 'compat', [BOOKMARKS2]);
    const NS_PRIVATE = 'jabber:iq:private';
    const room = `compat@conference.${DOMAIN}`;
    const pub = await a.request(
      publish(
        BOOKMARKS2,
        room,
        xml(
          'conference',
          { xmlns: BOOKMARKS2, name: 'Compat', autojoin: 'true' },
          xml('nick', {}, 'ali'),
        ),
        {
          'pubsub#access_model': 'whitelist',
          'pubsub#max_items': 'max',
          'pubsub#persist_items': 'true',
          'pubsub#send_last_published_item': 'never',
        },
      ),
    );
    assert.equal(pub.attrs.type, 'result', pub.toString());
    const got = await a.request(
      xml(
        'iq',
        { type: 'get' },
        xml('query', { xmlns: NS_PRIVATE }, xml('storage', { xmlns: 'storage:bookmarks' })),
      ),
    );
    const conf = got
      .getChild('query', NS_PRIVATE)!
      .getChild('storage', 'storage:bookmarks')!
      .getChildren('conference')
      .find((c) => c.attrs.jid === room);
    assert.ok(conf, got.toString());
    assert.equal(conf.attrs.name, 'Compat');
    assert.equal(conf.attrs.autojoin, 'true');
    assert.equal(conf.getChildText('nick'), 'ali');
    a.drain();
    // back: an old client replaces the list through private storage
    const other = `other@conference.${DOMAIN}`;
    const set = await a.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'query',
          { xmlns: NS_PRIVATE },
          xml(
            'storage',
            { xmlns: 'storage:bookmarks' },
            xml(
              'conference',
              { jid: other, name: 'Other', autojoin: 'false' },
              xml('nick', {}, 'al2'),
            ),
          ),
        ),
      ),
    );
    assert.equal(set.attrs.type, 'result', set.toString());
    const n = await a.waitFor(
      (e) => event(e, BOOKMARKS2)?.getChild('item')?.attrs.id === other,
      3000,
      'XEP-0402 notification of the converted bookmark',
    );
    assert.equal(
      event(n, BOOKMARKS2)!
        .getChild('item')!
        .getChild('conference', BOOKMARKS2)!
        .getChildText('nick'),
      'al2',
    );
    await a.waitFor(
      (e) =>
        !!event(e, BOOKMARKS2)
          ?.getChildren('retract')
          .some((r) => r.attrs.id === room),
      3000,
      'retraction of the bookmark the list dropped',
    );
    const items = await a.request(itemsGet(A, BOOKMARKS2));
    assert.deepEqual(
      items
        .getChild('pubsub')!
        .getChild('items')!
        .getChildren('item')
        .map((i) => i.attrs.id),
      [other],
    );
  });

  it('private XML storage: round trip, empty when unset, refused for another account [XEP-0049 2, 3]', async () => {
    const NS_PRIVATE = 'jabber:iq:private';
    const a = await login(alice, 'priv');
    const empty = await a.request(
      xml(
        'iq',
        { type: 'get' },
        xml('query', { xmlns: NS_PRIVATE }, xml('prefs', { xmlns: 'urn:example:prefs' })),
      ),
    );
    assert.equal(
      empty.getChild('query')!.getChild('prefs', 'urn:example:prefs')!.children.length,
      0,
    );
    await a.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'query',
          { xmlns: NS_PRIVATE },
          xml('prefs', { xmlns: 'urn:example:prefs' }, xml('color', {}, 'blue')),
        ),
      ),
    );
    const back = await a.request(
      xml(
        'iq',
        { type: 'get' },
        xml('query', { xmlns: NS_PRIVATE }, xml('prefs', { xmlns: 'urn:example:prefs' })),
      ),
    );
    assert.equal(back.getChild('query')!.getChild('prefs')!.getChildText('color'), 'blue');
    const b = await login(bob, 'priv');
    const no = await b.request(
      xml(
        'iq',
        { type: 'get', to: A },
        xml('query', { xmlns: NS_PRIVATE }, xml('prefs', { xmlns: 'urn:example:prefs' })),
      ),
    );
    assert.equal(stanzaError(no).condition, 'forbidden');
  });

  describe('malformed and forbidden requests', () => {
    const table: {
      what: string;
      by: () => string;
      req: () => Element;
      condition: string;
      type: string;
      app?: string;
      cite: string;
    }[] = [
      {
        what: "publish to another user's PEP service",
        by: () => bob,
        req: () => publish(NICK, 'current', xml('nick', { xmlns: NICK }, 'not bob'), undefined, A),
        condition: 'forbidden',
        type: 'auth',
        cite: 'XEP-0060 7.1.3.1',
      },
      {
        what: 'an item larger than maxItemBytes',
        by: () => alice,
        req: () =>
          publish('urn:example:big', 'x', xml('blob', { xmlns: 'urn:example' }, 'x'.repeat(5000))),
        condition: 'not-acceptable',
        type: 'modify',
        app: 'payload-too-big',
        cite: 'XEP-0060 7.1.3.4',
      },
      {
        what: 'an unknown node configuration field',
        by: () => alice,
        req: () =>
          xml(
            'iq',
            { type: 'set' },
            xml(
              'pubsub',
              { xmlns: NS_OWNER },
              xml(
                'configure',
                { node: NICK },
                form('http://jabber.org/protocol/pubsub#node_config', {
                  'pubsub#no_such_field': '1',
                }),
              ),
            ),
          ),
        condition: 'bad-request',
        type: 'modify',
        cite: 'XEP-0060 8.2.5.3',
      },
      {
        what: 'retract by someone who is not the owner',
        by: () => bob,
        req: () =>
          xml(
            'iq',
            { type: 'set', to: A },
            xml(
              'pubsub',
              { xmlns: NS_PUBSUB },
              xml('retract', { node: NICK }, xml('item', { id: 'current' })),
            ),
          ),
        condition: 'forbidden',
        type: 'auth',
        cite: 'XEP-0060 7.2.3.1',
      },
      {
        what: 'delete by someone who is not the owner',
        by: () => bob,
        req: () =>
          xml(
            'iq',
            { type: 'set', to: A },
            xml('pubsub', { xmlns: NS_OWNER }, xml('delete', { node: NICK })),
          ),
        condition: 'forbidden',
        type: 'auth',
        cite: 'XEP-0060 8.4.3.1',
      },
      {
        what: 'publish without a node',
        by: () => alice,
        req: () =>
          xml(
            'iq',
            { type: 'set' },
            xml(
              'pubsub',
              { xmlns: NS_PUBSUB },
              xml('publish', {}, xml('item', {}, xml('x', { xmlns: 'urn:example' }))),
            ),
          ),
        condition: 'bad-request',
        type: 'modify',
        app: 'nodeid-required',
        cite: 'XEP-0060 7.1.3.3',
      },
      {
        what: 'an item with two payloads',
        by: () => alice,
        req: () =>
          xml(
            'iq',
            { type: 'set' },
            xml(
              'pubsub',
              { xmlns: NS_PUBSUB },
              xml(
                'publish',
                { node: 'urn:example:two' },
                xml('item', {}, xml('a', { xmlns: 'urn:e' }), xml('b', { xmlns: 'urn:e' })),
              ),
            ),
          ),
        condition: 'bad-request',
        type: 'modify',
        app: 'invalid-payload',
        cite: 'XEP-0060 7.1.3.6',
      },
      {
        what: 'items of a node that does not exist',
        by: () => alice,
        req: () => itemsGet(A, 'urn:example:none'),
        condition: 'item-not-found',
        type: 'cancel',
        cite: 'XEP-0060 6.5.9.11',
      },
      {
        what: 'an unsupported access model in publish-options',
        by: () => alice,
        req: () =>
          publish('urn:example:roster', 'x', xml('x', { xmlns: 'urn:example' }), {
            'pubsub#access_model': 'authorize',
          }),
        condition: 'conflict',
        type: 'cancel',
        app: 'precondition-not-met',
        cite: 'XEP-0060 7.1.5',
      },
    ];
    for (const row of table) {
      it(`${row.what} → ${row.condition}${row.app ? `/${row.app}` : ''} [${row.cite}]`, async () => {
        const setup = await login(alice, 'own');
        await setup.request(publish(NICK, 'current', xml('nick', { xmlns: NICK }, 'Alice')));
        const c = row.by() === alice ? setup : await login(row.by(), 'req');
        const r = await c.request(row.req());
        assert.equal(r.attrs.type, 'error', r.toString());
        assert.deepEqual(
          stanzaError(r),
          { type: row.type, condition: row.condition },
          r.toString(),
        );
        if (row.app) assert.equal(appError(r), row.app, r.toString());
        // the node still serves its owner
        const still = await setup.request(itemsGet(A, NICK));
        assert.equal(
          still.getChild('pubsub')!.getChild('items')!.getChild('item')!.getChildText('nick'),
          'Alice',
        );
      });
    }

    it('nodes per user are bounded (max-nodes-exceeded) [XEP-0060 pubsub#errors]', async function () {
      this.timeout(60_000);
      const n2 = await startNode({ config: 'modules:\n  pep: { maxNodesPerUser: 2 }\n' });
      try {
        const u = uniqueName('many');
        await n2.addUser(u, PW);
        const c = await xmppClient({
          port: n2.ports.xmpp,
          username: u,
          password: PW,
          resource: 'x',
        });
        for (const n of ['urn:a', 'urn:b'])
          assert.equal(
            (await c.request(publish(n, '1', xml('x', { xmlns: 'urn:e' })))).attrs.type,
            'result',
          );
        const r = await c.request(publish('urn:c', '1', xml('x', { xmlns: 'urn:e' })));
        assert.deepEqual(stanzaError(r), { type: 'cancel', condition: 'not-allowed' });
        assert.equal(appError(r), 'max-nodes-exceeded');
        assert.equal(
          (await c.request(publish('urn:a', '2', xml('x', { xmlns: 'urn:e' })))).attrs.type,
          'result',
          'existing nodes still take items',
        );
      } finally {
        await stopAllClients();
        await n2.dispose();
      }
    });
  });

  it('B is not sent notifications for nodes of a user who is not its contact, even with +notify', async () => {
    const c = await login(carol, 'pub', [NICK]);
    const b = await login(bob, 'watch', [NICK]);
    await c.request(publish(NICK, 'current', xml('nick', { xmlns: NICK }, 'Carol')));
    await c.waitFor((e) => !!event(e, NICK), 3000, 'own notification');
    await b.expectNone(
      (e) => e.attrs.from === `${carol}@${DOMAIN}` && !!event(e, NICK),
      300,
      'a notification from a non-contact',
    );
    assert.ok(B);
  });
});
