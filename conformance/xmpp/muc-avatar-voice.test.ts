// Room avatars (vcard-temp on the room JID with XEP-0153 hashes, as Prosody's
// vcard_muc serves them to Conversations and Gajim) and voice requests
// [XEP-0045 7.13, 8.6], with @xmpp/client on a real node.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  closeAllRaw,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type Element,
  type TestClient,
  type TestNode,
} from '../helpers.ts';
import {
  MUC,
  NS_DATA,
  NS_DISCO_INFO,
  errorCondition,
  fromOccupant,
  join,
  joinError,
  loginAll,
  mucItem,
  roomConfig,
  say,
} from '../muc-helpers.ts';

const PW = 'av-pw';
const NS_VCARD = 'vcard-temp';
const NS_UPDATE = 'vcard-temp:x:update';
const NS_REQUEST = 'http://jabber.org/protocol/muc#request';
const CONFIG = `
modules:
  muc:
    vcardMaxBytes: 2048
  rooms:
    voiceRequestInterval: 3600
`;

const PHOTO = Buffer.from('not really a png, but bytes all the same');
const SHA1 = createHash('sha1').update(PHOTO).digest('hex');

const vcardSet = (room: string, photo: Buffer | undefined, extra = '') =>
  xml(
    'iq',
    { type: 'set', to: `${room}@${MUC}` },
    xml(
      'vCard',
      { xmlns: NS_VCARD },
      ...(photo
        ? [
            xml(
              'PHOTO',
              {},
              xml('TYPE', {}, 'image/png'),
              xml('BINVAL', {}, photo.toString('base64')),
            ),
          ]
        : []),
      ...(extra ? [xml('DESC', {}, extra)] : []),
    ),
  );
const vcardGet = (room: string) =>
  xml('iq', { type: 'get', to: `${room}@${MUC}` }, xml('vCard', { xmlns: NS_VCARD }));
const discoInfo = (room: string) =>
  xml('iq', { type: 'get', to: `${room}@${MUC}` }, xml('query', { xmlns: NS_DISCO_INFO }));

/** The XEP-0153 photo hash of a presence from the room's bare JID. */
const roomAvatar = (room: string, hash?: string) => (el: Element) =>
  el.name === 'presence' &&
  el.attrs.from === `${room}@${MUC}` &&
  el.getChild('x', NS_UPDATE) !== undefined &&
  (hash === undefined || el.getChild('x', NS_UPDATE)!.getChildText('photo') === hash);

function formValue(x: Element, v: string): string | undefined {
  return (
    x
      .getChildren('field')
      .find((f) => f.attrs.var === v)
      ?.getChildText('value') ?? undefined
  );
}

describe('XEP-0045 room avatars and voice requests', function () {
  this.timeout(30_000);
  let node: TestNode;
  const names = { o: uniqueName('vo'), p: uniqueName('vp'), x: uniqueName('vx') };
  let owner: TestClient;
  let part: TestClient;
  let other: TestClient;

  before(async function () {
    this.timeout(60_000);
    node = await startNode({ config: CONFIG });
    [owner, part, other] = await loginAll(node, [names.o, names.p, names.x], PW, {
      presence: true,
    });
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  it('an owner sets the room vCard: occupants get the photo hash from the room, disco#info shows it [XEP-0153, XEP-0054]', async () => {
    await join(owner, 'pics', 'owner');
    await join(part, 'pics', 'part');
    assert.ok(!part.received.some(roomAvatar('pics')), 'no avatar presence before one is set');
    const res = await owner.request(vcardSet('pics', PHOTO));
    assert.equal(res.attrs.type, 'result', res.toString());
    await part.waitFor(roomAvatar('pics', SHA1), 5000, 'avatar hash to the participant');
    await owner.waitFor(roomAvatar('pics', SHA1), 5000, 'avatar hash to the owner');
    const info = await other.request(discoInfo('pics'));
    const form = info.getChild('query', NS_DISCO_INFO)!.getChild('x', NS_DATA)!;
    assert.equal(formValue(form, 'muc#roominfo_avatarhash'), SHA1);
    assert.ok(
      info
        .getChild('query', NS_DISCO_INFO)!
        .getChildren('feature')
        .some((f) => f.attrs.var === NS_VCARD),
      'vcard-temp feature',
    );
  });

  it('anyone who may see the room reads the vCard; a newcomer gets the hash when it joins [XEP-0054 3.1, XEP-0153]', async () => {
    const got = await other.request(vcardGet('pics'));
    const binval = got.getChild('vCard', NS_VCARD)?.getChild('PHOTO')?.getChildText('BINVAL');
    assert.equal(binval, PHOTO.toString('base64'));
    await join(other, 'pics', 'other');
    assert.ok(other.received.some(roomAvatar('pics', SHA1)), 'avatar presence on join');
  });

  it('vCard set by a participant → forbidden; larger than vcardMaxBytes (2048) → not-acceptable; bad base64 → bad-request', async () => {
    const byPart = await part.request(vcardSet('pics', PHOTO));
    assert.equal(errorCondition(byPart), 'forbidden', byPart.toString());
    const big = await owner.request(vcardSet('pics', Buffer.alloc(3000, 7)));
    assert.equal(errorCondition(big), 'not-acceptable', big.toString());
    const bad = await owner.request(
      xml(
        'iq',
        { type: 'set', to: `pics@${MUC}` },
        xml('vCard', { xmlns: NS_VCARD }, xml('PHOTO', {}, xml('BINVAL', {}, '!!not base64!!'))),
      ),
    );
    assert.equal(errorCondition(bad), 'bad-request', bad.toString());
    const still = await other.request(vcardGet('pics'));
    assert.equal(
      still.getChild('vCard', NS_VCARD)?.getChild('PHOTO')?.getChildText('BINVAL'),
      PHOTO.toString('base64'),
      'the refused sets changed nothing',
    );
  });

  it('a members-only room does not show its vCard to a non-member (forbidden)', async () => {
    await join(owner, 'secretpics', 'owner');
    await owner.request(vcardSet('secretpics', PHOTO));
    await owner.request(roomConfig('secretpics', { 'muc#roomconfig_membersonly': '1' }));
    const res = await other.request(vcardGet('secretpics'));
    assert.equal(errorCondition(res), 'forbidden', res.toString());
    assert.equal(await joinError(other, 'secretpics', 'other'), 'registration-required');
  });

  it('voice request: a visitor submits muc#request, the moderator gets the form, approves, the visitor speaks [XEP-0045 7.13, 8.6]', async () => {
    await join(owner, 'quiet', 'owner');
    await owner.request(roomConfig('quiet', { 'muc#roomconfig_moderatedroom': '1' }));
    const self = await join(part, 'quiet', 'part');
    assert.equal(mucItem(self).role, 'visitor');
    // A visitor has no voice [XEP-0045 7.4]
    await part.send(
      xml('message', { to: `quiet@${MUC}`, type: 'groupchat', id: 'mute' }, xml('body', {}, 'hi')),
    );
    const muted = await part.waitFor((e) => e.attrs.id === 'mute' && e.attrs.type === 'error');
    assert.equal(errorCondition(muted), 'forbidden');
    const request = () =>
      xml(
        'message',
        { to: `quiet@${MUC}`, id: `vr-${Math.random()}` },
        xml(
          'x',
          { xmlns: NS_DATA, type: 'submit' },
          xml('field', { var: 'FORM_TYPE' }, xml('value', {}, NS_REQUEST)),
          xml('field', { var: 'muc#role', type: 'list-single' }, xml('value', {}, 'participant')),
        ),
      );
    await part.send(request());
    const asked = await owner.waitFor(
      (e) =>
        e.name === 'message' &&
        e.attrs.from === `quiet@${MUC}` &&
        formValue(e.getChild('x', NS_DATA) ?? xml('x'), 'FORM_TYPE') === NS_REQUEST,
      5000,
      'voice request to the moderator',
    );
    const form = asked.getChild('x', NS_DATA)!;
    assert.equal(form.attrs.type, 'form');
    assert.equal(formValue(form, 'muc#roomnick'), 'part');
    assert.equal(formValue(form, 'muc#role'), 'participant');
    assert.equal(formValue(form, 'muc#request_allow'), 'false');
    assert.equal(formValue(form, 'muc#jid'), `${names.p}@localhost/pc`);
    // A second request within voiceRequestInterval → resource-constraint (as ejabberd)
    const again = request();
    await part.send(again);
    const tooSoon = await part.waitFor(
      (e) => e.attrs.id === again.attrs.id && e.attrs.type === 'error',
    );
    assert.equal(errorCondition(tooSoon), 'resource-constraint', tooSoon.toString());
    // The moderator approves: the form back with muc#request_allow true
    await owner.send(
      xml(
        'message',
        { to: `quiet@${MUC}` },
        xml(
          'x',
          { xmlns: NS_DATA, type: 'submit' },
          xml('field', { var: 'FORM_TYPE' }, xml('value', {}, NS_REQUEST)),
          xml('field', { var: 'muc#role' }, xml('value', {}, 'participant')),
          xml('field', { var: 'muc#jid' }, xml('value', {}, formValue(form, 'muc#jid')!)),
          xml('field', { var: 'muc#roomnick' }, xml('value', {}, 'part')),
          xml('field', { var: 'muc#request_allow' }, xml('value', {}, 'true')),
        ),
      ),
    );
    const voiced = await part.waitFor(
      (e) => fromOccupant('quiet', 'part')(e) && mucItem(e).role === 'participant',
      5000,
      'voice granted',
    );
    assert.equal(mucItem(voiced).role, 'participant');
    await say(part, 'quiet', 'now I may speak');
    // With voice, asking again → not-allowed
    const late = request();
    await part.send(late);
    const err = await part.waitFor((e) => e.attrs.id === late.attrs.id && e.attrs.type === 'error');
    assert.equal(errorCondition(err), 'not-allowed', err.toString());
  });

  it('an approval from a participant → forbidden; a voice request from outside the room → not-acceptable [XEP-0045 8.6, 7.4]', async () => {
    await join(other, 'quiet', 'other');
    const approve = xml(
      'message',
      { to: `quiet@${MUC}`, id: 'fake-approve' },
      xml(
        'x',
        { xmlns: NS_DATA, type: 'submit' },
        xml('field', { var: 'FORM_TYPE' }, xml('value', {}, NS_REQUEST)),
        xml('field', { var: 'muc#roomnick' }, xml('value', {}, 'other')),
        xml('field', { var: 'muc#request_allow' }, xml('value', {}, 'true')),
      ),
    );
    await part.send(approve);
    const denied = await part.waitFor(
      (e) => e.attrs.id === 'fake-approve' && e.attrs.type === 'error',
    );
    assert.equal(errorCondition(denied), 'forbidden', denied.toString());
    const outsider = await xmppClient({
      port: node.ports.xmpp,
      username: names.x,
      password: PW,
      resource: 'away',
    });
    const ask = xml(
      'message',
      { to: `quiet@${MUC}`, id: 'outside-ask' },
      xml(
        'x',
        { xmlns: NS_DATA, type: 'submit' },
        xml('field', { var: 'FORM_TYPE' }, xml('value', {}, NS_REQUEST)),
      ),
    );
    await outsider.send(ask);
    const out = await outsider.waitFor(
      (e) => e.attrs.id === 'outside-ask' && e.attrs.type === 'error',
    );
    assert.equal(errorCondition(out), 'not-acceptable', out.toString());
  });

  it('a persistent room keeps its avatar across a restart', async () => {
    await join(owner, 'lastingpics', 'owner');
    await owner.request(roomConfig('lastingpics', { 'muc#roomconfig_persistentroom': '1' }));
    await owner.request(vcardSet('lastingpics', PHOTO));
    await stopAllClients();
    await node.restart();
    const again = await xmppClient({
      port: node.ports.xmpp,
      username: names.x,
      password: PW,
      resource: 'pc',
    });
    const info = await again.request(discoInfo('lastingpics'));
    const form = info.getChild('query', NS_DISCO_INFO)!.getChild('x', NS_DATA)!;
    assert.equal(formValue(form, 'muc#roominfo_avatarhash'), SHA1);
    const got = await again.request(vcardGet('lastingpics'));
    assert.equal(
      got.getChild('vCard', NS_VCARD)?.getChild('PHOTO')?.getChildText('BINVAL'),
      PHOTO.toString('base64'),
    );
    await join(again, 'lastingpics', 'other');
    assert.ok(again.received.some(roomAvatar('lastingpics', SHA1)), 'hash on join after restart');
  });
});
