// Black-box XEP-0425 moderated message retraction with @xmpp/client: only a
// moderator retracts, every occupant gets the retraction from the room, MAM
// on the room shows the tombstone in place; chat markers still pass rooms.
import assert from 'node:assert/strict';
import {
  closeAllRaw,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  type Element,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import { mam, NS_FORWARD } from '../mam-helpers.ts';
import { MUC, NS_DISCO_INFO, NS_SID, errorCondition, join, loginAll, say } from '../muc-helpers.ts';

const PW = 'modr-pw';
const NS_MODERATE = 'urn:xmpp:message-moderate:1';
const NS_RETRACT = 'urn:xmpp:message-retract:1';
const NS_MARKERS = 'urn:xmpp:chat-markers:0';

describe('XEP-0425 moderated retraction in rooms', function () {
  this.timeout(30_000);
  let node: TestNode;
  const names = { a: uniqueName('ma'), b: uniqueName('mb'), c: uniqueName('mc') };
  let a: TestClient;
  let b: TestClient;
  let c: TestClient;
  const ROOM = 'modr';
  const JID = `${ROOM}@${MUC}`;
  const moderate = (id: string, reason?: string) =>
    xml(
      'iq',
      { type: 'set', to: JID },
      xml(
        'moderate',
        { xmlns: NS_MODERATE, id },
        xml('retract', { xmlns: NS_RETRACT }),
        ...(reason ? [xml('reason', {}, reason)] : []),
      ),
    );

  before(async function () {
    this.timeout(60_000);
    node = await startNode();
    [a, b, c] = await loginAll(node, [names.a, names.b, names.c], PW, { presence: true });
    await join(a, ROOM, 'alice'); // creator: owner, moderator
    await join(b, ROOM, 'bob');
    await join(c, ROOM, 'carol');
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  it('the room advertises message moderation [XEP-0425 2]', async () => {
    const info = await b.request(
      xml('iq', { type: 'get', to: JID }, xml('query', { xmlns: NS_DISCO_INFO })),
    );
    const features = info
      .getChild('query')!
      .getChildren('feature')
      .map((f) => f.attrs.var);
    assert.ok(features.includes(NS_MODERATE), features.join(' '));
  });

  it('a participant may not moderate (forbidden); an id of no message is item-not-found [XEP-0425 3]', async () => {
    const spam = await say(b, ROOM, 'not yours to delete');
    const sid = spam.getChild('stanza-id', NS_SID)!.attrs.id as string;
    assert.equal(errorCondition(await c.request(moderate(sid))), 'forbidden');
    assert.equal(errorCondition(await a.request(moderate('999999'))), 'item-not-found');
    assert.equal(errorCondition(await a.request(moderate('not-a-seq'))), 'item-not-found');
  });

  it('a moderator retracts: every occupant gets the retraction from the room, MAM shows a tombstone in place [XEP-0425 4] [XEP-0424 5]', async () => {
    const spam = await say(b, ROOM, 'buy cheap stuff');
    const sid = spam.getChild('stanza-id', NS_SID)!.attrs.id as string;
    assert.equal((await a.request(moderate(sid, 'spam'))).attrs.type, 'result');
    for (const cl of [a, b, c]) {
      const r = await cl.waitFor(
        (el) =>
          el.name === 'message' &&
          el.attrs.from === JID &&
          el.getChild('retract', NS_RETRACT)?.attrs.id === sid,
        5000,
        'the retraction',
      );
      const ret = r.getChild('retract', NS_RETRACT)!;
      assert.equal(ret.getChild('moderated', NS_MODERATE)?.attrs.by, `${JID}/alice`);
      assert.equal(ret.getChildText('reason'), 'spam');
    }
    const page = await mam(c, { to: JID, max: 50 });
    const tomb = page.results.find((r) => r.attrs.id === sid);
    assert.ok(tomb, `result ${sid} in ${page.ids.join(',')}`);
    const msg = tomb.getChild('forwarded', NS_FORWARD)!.getChild('message') as Element;
    assert.equal(msg.getChild('body'), undefined, 'no body left');
    const retracted = msg.getChild('retracted', NS_RETRACT)!;
    assert.ok(retracted.attrs.stamp);
    assert.equal(retracted.getChild('moderated', NS_MODERATE)?.attrs.by, `${JID}/alice`);
    assert.ok(page.bodies.includes('not yours to delete'), 'the other messages stay');
  });

  it('chat markers in a room reach the occupants as sent [XEP-0333]', async () => {
    const m = await say(b, ROOM, 'read this');
    const sid = m.getChild('stanza-id', NS_SID)!.attrs.id as string;
    await c.send(
      xml(
        'message',
        { to: JID, type: 'groupchat', id: 'mk1' },
        xml('displayed', { xmlns: NS_MARKERS, id: sid }),
      ),
    );
    const got = await b.waitFor(
      (el) => el.attrs.id === 'mk1' && el.name === 'message',
      5000,
      'the marker',
    );
    assert.equal(got.getChild('displayed', NS_MARKERS)?.attrs.id, sid);
  });
});
