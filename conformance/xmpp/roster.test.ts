// Black-box: roster get/set/remove, pushes and versioning [RFC6121 2].
import assert from 'node:assert/strict';
import {
  DOMAIN,
  NS_ROSTER,
  closeAllRaw,
  isRosterPush,
  rosterGet,
  rosterItem,
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

const PW = 'roster-pw';

function rosterSet(item: {
  jid: string;
  name?: string;
  subscription?: string;
  groups?: string[];
}): Element {
  return xml(
    'iq',
    { type: 'set' },
    xml(
      'query',
      { xmlns: NS_ROSTER },
      xml(
        'item',
        { jid: item.jid, name: item.name, subscription: item.subscription },
        ...(item.groups ?? []).map((g) => xml('group', {}, g)),
      ),
    ),
  );
}

function groups(item: Element | undefined): string[] {
  return (item?.getChildren('group') ?? []).map((g) => g.getText()).sort();
}

describe('XMPP roster management [RFC6121 2]', function () {
  this.timeout(30_000);
  let node: TestNode;
  const users = Array.from({ length: 6 }, (_, i) => uniqueName(`ro${i}`));
  let next = 0;
  /** a fresh account for each test */
  let user = '';

  before(async function () {
    this.timeout(60_000);
    node = await startNode();
    await Promise.all(users.map((u) => node.addUser(u, PW)));
  });
  beforeEach(() => {
    user = users[next++];
    assert.ok(user, 'not enough accounts created in before()');
  });
  afterEach(async () => {
    await stopAllClients();
    closeAllRaw();
  });
  after(async () => {
    await stopAllClients();
    await node?.dispose();
  });

  const login = (resource: string) =>
    xmppClient({ port: node.ports.xmpp, username: user, password: PW, resource });

  /** A resource that requested the roster (an interested resource), with the version it got. */
  async function interested(resource: string): Promise<{ c: TestClient; ver: string }> {
    const c = await login(resource);
    const r = await c.request(rosterGet());
    assert.equal(r.attrs.type, 'result', r.toString());
    return { c, ver: r.getChild('query', NS_ROSTER)?.attrs.ver ?? '' };
  }

  it('get on an empty roster: result with an empty query carrying ver [RFC6121 2.1.3] [RFC6121 2.6.2]', async () => {
    const c = await login('r1');
    const req = rosterGet();
    const r = await c.request(req);
    assert.equal(r.attrs.type, 'result');
    assert.equal(r.attrs.id, req.attrs.id);
    assert.equal(r.attrs.to, c.jid);
    const q = r.getChild('query', NS_ROSTER);
    assert.ok(q, `no query in ${r.toString()}`);
    assert.equal(q.getChildElements().length, 0);
    assert.ok(
      q.attrs.ver !== undefined && q.attrs.ver !== '',
      'ver attribute missing [RFC6121 2.6.2]',
    );
  });

  it('set: result to the setter, a push to every interested resource and none to others [RFC6121 2.3.2] [RFC6121 2.1.6]', async () => {
    const { c: r1, ver: ver0 } = await interested('r1');
    const { c: r2 } = await interested('r2');
    const r3 = await login('r3'); // never asked for the roster: not interested
    const contact = `contact@${DOMAIN}`;
    const res = await r1.request(
      rosterSet({ jid: contact, name: 'Contact', groups: ['Friends', 'Work'] }),
    );
    assert.equal(res.attrs.type, 'result', res.toString());
    assert.equal(res.getChildElements().length, 0, 'the result of a roster set is empty');
    for (const c of [r1, r2]) {
      const push = await c.waitFor(isRosterPush(contact), 3000, 'roster push');
      assert.equal(push.attrs.to, c.jid, 'a push goes to the full JID of the resource');
      assert.ok(
        push.attrs.from === undefined || push.attrs.from === c.bare,
        `push from ${push.attrs.from} [RFC6121 2.1.6]`,
      );
      const q = push.getChild('query', NS_ROSTER)!;
      assert.equal(q.getChildren('item').length, 1, 'a push carries exactly one item');
      assert.ok(
        q.attrs.ver && q.attrs.ver !== ver0,
        'the push carries the new roster version [RFC6121 2.6.3]',
      );
      const item = rosterItem(push, contact)!;
      assert.equal(item.attrs.name, 'Contact');
      assert.equal(item.attrs.subscription, 'none');
      assert.equal(item.attrs.ask, undefined);
      assert.deepEqual(groups(item), ['Friends', 'Work']);
    }
    await r3.expectNone(
      isRosterPush(),
      400,
      'roster push to a resource that never requested the roster',
    );
    const after = await r1.request(rosterGet());
    assert.deepEqual(groups(rosterItem(after, contact)), ['Friends', 'Work']);
  });

  it('set with subscription other than remove: the attribute is ignored [RFC6121 2.1.2.5]', async () => {
    const { c } = await interested('r1');
    const contact = `sneaky@${DOMAIN}`;
    const res = await c.request(rosterSet({ jid: contact, subscription: 'both' }));
    assert.equal(res.attrs.type, 'result', res.toString());
    const push = await c.waitFor(isRosterPush(contact));
    assert.equal(rosterItem(push, contact)?.attrs.subscription, 'none');
  });

  it('versioning: get with the current ver → empty result; with an older ver → the full roster [RFC6121 2.6.3]', async () => {
    const { c, ver: ver0 } = await interested('r1');
    const contact = `versioned@${DOMAIN}`;
    await c.request(rosterSet({ jid: contact, name: 'V' }));
    const push = await c.waitFor(isRosterPush(contact));
    const ver1 = push.getChild('query', NS_ROSTER)!.attrs.ver;
    const same = await c.request(rosterGet(ver1));
    assert.equal(same.attrs.type, 'result');
    assert.equal(
      same.getChildElements().length,
      0,
      `expected an empty result, got ${same.toString()}`,
    );
    const old = await c.request(rosterGet(ver0));
    const q = old.getChild('query', NS_ROSTER);
    assert.ok(q, `expected the roster, got ${old.toString()}`);
    assert.equal(q.attrs.ver, ver1);
    assert.equal(rosterItem(old, contact)?.attrs.name, 'V');
  });

  it("remove: result and a push with subscription='remove' to interested resources [RFC6121 2.5.2]", async () => {
    const { c: r1 } = await interested('r1');
    const { c: r2 } = await interested('r2');
    const contact = `gone@${DOMAIN}`;
    await r1.request(rosterSet({ jid: contact, groups: ['G'] }));
    await r1.waitFor(isRosterPush(contact));
    await r2.waitFor(isRosterPush(contact));
    const res = await r1.request(rosterSet({ jid: contact, subscription: 'remove' }));
    assert.equal(res.attrs.type, 'result', res.toString());
    for (const c of [r1, r2]) {
      const push = await c.waitFor(isRosterPush(contact), 3000, 'removal push');
      assert.equal(rosterItem(push, contact)?.attrs.subscription, 'remove');
    }
    const after = await r1.request(rosterGet());
    assert.equal(rosterItem(after, contact), undefined, 'item still in the roster after removal');
    // [RFC6121 2.5.3] removing an item that is not there
    const again = await r1.request(rosterSet({ jid: contact, subscription: 'remove' }));
    assert.equal(again.attrs.type, 'error');
    assert.deepEqual(stanzaError(again), { type: 'cancel', condition: 'item-not-found' });
  });

  it('bad requests: two items → bad-request, duplicate group → bad-request, empty group → not-acceptable; nothing pushed [RFC6121 2.3.3]', async () => {
    const { c } = await interested('r1');
    const two = xml(
      'iq',
      { type: 'set' },
      xml(
        'query',
        { xmlns: NS_ROSTER },
        xml('item', { jid: `one@${DOMAIN}` }),
        xml('item', { jid: `two@${DOMAIN}` }),
      ),
    );
    const r1 = await c.request(two);
    assert.equal(r1.attrs.type, 'error', r1.toString());
    assert.equal(r1.attrs.id, two.attrs.id);
    assert.deepEqual(stanzaError(r1), { type: 'modify', condition: 'bad-request' });

    const r2 = await c.request(rosterSet({ jid: `dup@${DOMAIN}`, groups: ['Same', 'Same'] }));
    assert.equal(r2.attrs.type, 'error', r2.toString());
    assert.equal(stanzaError(r2).condition, 'bad-request');

    const r3 = await c.request(rosterSet({ jid: `empty@${DOMAIN}`, groups: [''] }));
    assert.equal(r3.attrs.type, 'error', r3.toString());
    assert.equal(stanzaError(r3).condition, 'not-acceptable');

    await c.expectNone(isRosterPush(), 300, 'roster push after a refused set');
    const roster = await c.request(rosterGet());
    assert.equal(
      roster.getChild('query', NS_ROSTER)?.getChildElements().length,
      0,
      roster.toString(),
    );
  });
});
