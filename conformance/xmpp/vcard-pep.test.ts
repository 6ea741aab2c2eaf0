// Black-box XEP-0153 (avatar hash in presence), XEP-0398 (PEP avatar ↔
// vcard-temp) and XEP-0292 (vCard4 over PEP ↔ vcard-temp FN/NICKNAME), over
// @xmpp/client: what a contact sees in presence and in PEP, what vcard-temp
// answers after a PEP publish.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  makeFriends,
  DOMAIN,
  isPresence,
  ping,
  presence,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type Element,
  type TestClient,
  type TestNode,
} from '../helpers.ts';

const PW = 'pw-vcard-pep';
const NS_VCARD = 'vcard-temp';
const NS_UPDATE = 'vcard-temp:x:update';
const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const AVATAR_DATA = 'urn:xmpp:avatar:data';
const AVATAR_META = 'urn:xmpp:avatar:metadata';
const VCARD4_NODE = 'urn:xmpp:vcard4';
const NS_VCARD4 = 'urn:ietf:params:xml:ns:vcard-4.0';

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');
/** Some image bytes (the server does not decode images). */
const image = (seed: string) => Buffer.from(`\x89PNG\r\n\x1a\n${seed}`.repeat(8), 'binary');

const vcardSet = (...children: Element[]) =>
  xml('iq', { type: 'set' }, xml('vCard', { xmlns: NS_VCARD }, ...children));
const photo = (bytes: Buffer, type = 'image/png') =>
  xml('PHOTO', {}, xml('TYPE', {}, type), xml('BINVAL', {}, bytes.toString('base64')));
const publish = (node: string, id: string, payload: Element) =>
  xml(
    'iq',
    { type: 'set' },
    xml('pubsub', { xmlns: NS_PUBSUB }, xml('publish', { node }, xml('item', { id }, payload))),
  );
const itemsGet = (to: string, node: string) =>
  xml('iq', { type: 'get', to }, xml('pubsub', { xmlns: NS_PUBSUB }, xml('items', { node })));
const firstItem = (r: Element) =>
  r.getChild('pubsub', NS_PUBSUB)?.getChild('items')?.getChildren('item')[0];

/** The XEP-0153 photo element of a presence: its text, '' for `<photo/>`, undefined without one. */
function photoHashIn(p: Element): string | undefined {
  const xs = p.getChildren('x').filter((x) => x.attrs.xmlns === NS_UPDATE);
  assert.ok(xs.length <= 1, `one vcard-temp:x:update at most: ${p.toString()}`);
  const ph = xs[0]?.getChild('photo');
  return ph ? ph.getText() : undefined;
}

describe('XEP-0153, XEP-0398, XEP-0292: avatars and vCards across vcard-temp and PEP', function () {
  this.timeout(30_000);
  let node: TestNode;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const carol = uniqueName('carol');
  const A = `${alice}@${DOMAIN}`;
  const login = (user: string, resource: string) =>
    xmppClient({ port: node.ports.xmpp, username: user, password: PW, resource });

  /** Alice's next presence as bob sees it, after she sends `p`. */
  async function seenByBob(a: TestClient, b: TestClient, p: Element): Promise<Element> {
    await a.send(p);
    return b.waitFor(isPresence({ from: `${A}/${a.jid.split('/')[1]}` }), 5000, "alice's presence");
  }

  before(async function () {
    this.timeout(60_000);
    node = await startNode();
    for (const u of [alice, bob, carol]) await node.addUser(u, PW);
    await makeFriends(node, alice, bob, PW);
  });
  afterEach(async () => stopAllClients());
  after(async () => node?.dispose());

  it('the server advertises the conversion [XEP-0398 3]', async () => {
    const a = await login(alice, 'd');
    const info = await a.request(
      xml(
        'iq',
        { type: 'get', to: DOMAIN },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }),
      ),
    );
    const features = info
      .getChild('query')!
      .getChildren('feature')
      .map((f) => f.attrs.var);
    assert.ok(features.includes('urn:xmpp:pep-vcard-conversion:0'), features.join(' '));
  });

  it("presence without a hash gets the one the server knows: none, then a vCard PHOTO; a client's own is kept [XEP-0153 3.2, 4.1]", async () => {
    const b = await login(bob, 'p');
    await b.send(presence());
    await ping(b);
    const a = await login(alice, 'p');
    const first = await seenByBob(a, b, presence());
    assert.equal(photoHashIn(first), '', 'no avatar yet: an empty <photo/>');
    const bytes = image('first');
    const set = await a.request(vcardSet(xml('FN', {}, 'Alice'), photo(bytes)));
    assert.equal(set.attrs.type, 'result', set.toString());
    const notReady = xml('presence', {}, xml('x', { xmlns: NS_UPDATE })); // [XEP-0153 4.1] an <x/> without <photo/>: filled in
    const second = await seenByBob(a, b, notReady);
    assert.equal(photoHashIn(second), sha1(bytes), second.toString());
    const own = xml(
      'presence',
      {},
      xml('x', { xmlns: NS_UPDATE }, xml('photo', {}, 'f'.repeat(40))),
    );
    assert.equal(
      photoHashIn(await seenByBob(a, b, own)),
      'f'.repeat(40),
      "a client's own <photo/> is left alone, as Prosody does",
    );
  });

  it('a vCard PHOTO becomes a XEP-0084 avatar anyone can read, as the vCard; FN and NICKNAME become the vCard4 node [XEP-0398 4.1, XEP-0292 4]', async () => {
    const a = await login(alice, 'v');
    const bytes = image('second');
    const set = await a.request(
      vcardSet(
        xml('FN', {}, 'Alice Liddell'),
        xml('NICKNAME', {}, 'ali'),
        photo(bytes, 'image/jpeg'),
      ),
    );
    assert.equal(set.attrs.type, 'result');
    const b = await login(carol, 'v'); // not a contact: the nodes a conversion creates are open, like the vCard
    const meta = firstItem(await b.request(itemsGet(A, AVATAR_META)))!;
    assert.equal(meta.attrs.id, sha1(bytes));
    const info = meta.getChild('metadata', AVATAR_META)!.getChild('info')!;
    assert.deepEqual(
      [info.attrs.id, info.attrs.type, info.attrs.bytes],
      [sha1(bytes), 'image/jpeg', String(bytes.length)],
    );
    const data = firstItem(await b.request(itemsGet(A, AVATAR_DATA)))!;
    assert.equal(data.attrs.id, sha1(bytes));
    assert.deepEqual(Buffer.from(data.getChildText('data')!, 'base64'), bytes);
    const v4 = firstItem(await b.request(itemsGet(A, VCARD4_NODE)))!;
    assert.equal(v4.attrs.id, 'current');
    const card = v4.getChild('vcard', NS_VCARD4)!;
    assert.equal(card.getChild('fn')!.getChildText('text'), 'Alice Liddell');
    assert.equal(card.getChild('nickname')!.getChildText('text'), 'ali');
    assert.equal(
      card.getChild('photo')!.getChildText('uri'),
      `data:image/jpeg;base64,${bytes.toString('base64')}`,
    );
  });

  it('a XEP-0084 avatar published to PEP becomes the vCard PHOTO and the presence hash; <metadata/> removes it [XEP-0398 4.2, XEP-0084 4.5]', async () => {
    const a = await login(alice, 'x');
    const bytes = image('third');
    const id = sha1(bytes);
    assert.equal(
      (
        await a.request(
          publish(AVATAR_DATA, id, xml('data', { xmlns: AVATAR_DATA }, bytes.toString('base64'))),
        )
      ).attrs.type,
      'result',
    );
    const meta = xml(
      'metadata',
      { xmlns: AVATAR_META },
      xml('info', { id, type: 'image/webp', bytes: String(bytes.length) }),
    );
    assert.equal((await a.request(publish(AVATAR_META, id, meta))).attrs.type, 'result');
    const b = await login(bob, 'x');
    const card = (
      await b.request(xml('iq', { type: 'get', to: A }, xml('vCard', { xmlns: NS_VCARD })))
    ).getChild('vCard', NS_VCARD)!;
    assert.equal(card.getChild('PHOTO')!.getChildText('TYPE'), 'image/webp');
    assert.deepEqual(Buffer.from(card.getChild('PHOTO')!.getChildText('BINVAL')!, 'base64'), bytes);
    assert.equal(card.getChildText('FN'), 'Alice Liddell', 'the other fields are kept');
    await b.send(presence());
    await ping(b); // bob is available before alice is: her presence reaches him once
    assert.equal(photoHashIn(await seenByBob(a, b, presence())), id);
    assert.equal(
      (await a.request(publish(AVATAR_META, 'none', xml('metadata', { xmlns: AVATAR_META })))).attrs
        .type,
      'result',
    );
    const after = (
      await b.request(xml('iq', { type: 'get', to: A }, xml('vCard', { xmlns: NS_VCARD })))
    ).getChild('vCard', NS_VCARD)!;
    assert.equal(after.getChild('PHOTO'), undefined, after.toString());
    assert.equal(photoHashIn(await seenByBob(a, b, presence({ status: 'no avatar' }))), '');
  });

  it('deleting the avatar metadata node removes the vCard PHOTO [XEP-0398 4.2, XEP-0060 8.4]', async () => {
    const a = await login(alice, 'z');
    const bytes = image('fourth');
    assert.equal(
      (await a.request(vcardSet(xml('FN', {}, 'Alice Liddell'), photo(bytes)))).attrs.type,
      'result',
    );
    const getPhoto = async () =>
      (await a.request(xml('iq', { type: 'get' }, xml('vCard', { xmlns: NS_VCARD }))))
        .getChild('vCard', NS_VCARD)!
        .getChild('PHOTO');
    assert.ok(await getPhoto(), 'the PHOTO is there');
    const del = await a.request(
      xml(
        'iq',
        { type: 'set' },
        xml('pubsub', { xmlns: `${NS_PUBSUB}#owner` }, xml('delete', { node: AVATAR_META })),
      ),
    );
    assert.equal(del.attrs.type, 'result', del.toString());
    assert.equal(await getPhoto(), undefined);
  });

  it('a vCard4 published to PEP sets vcard-temp FN and NICKNAME, keeping the rest [XEP-0292 4]', async () => {
    const a = await login(alice, 'y');
    const card = xml(
      'vcard',
      { xmlns: NS_VCARD4 },
      xml('fn', {}, xml('text', {}, 'Alice P. Liddell')),
      xml('nickname', {}, xml('text', {}, 'alp')),
      xml('note', {}, xml('text', {}, 'kept')),
    );
    assert.equal((await a.request(publish(VCARD4_NODE, 'current', card))).attrs.type, 'result');
    const got = (
      await a.request(xml('iq', { type: 'get' }, xml('vCard', { xmlns: NS_VCARD })))
    ).getChild('vCard', NS_VCARD)!;
    assert.equal(got.getChildText('FN'), 'Alice P. Liddell');
    assert.equal(got.getChildText('NICKNAME'), 'alp');
    const v4 = firstItem(await a.request(itemsGet(A, VCARD4_NODE)))!.getChild('vcard', NS_VCARD4)!;
    assert.equal(
      v4.getChild('note')!.getChildText('text'),
      'kept',
      'the vCard4 is stored as published',
    );
  });
});
