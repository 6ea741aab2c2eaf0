// Black-box: what the server itself answers: ping, version, disco, unknown IQs.
import assert from 'node:assert/strict';
import {
  DOMAIN,
  closeAllRaw,
  stanzaError,
  startNode,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';

const PW = 'svc-pw';
const NS_PING = 'urn:xmpp:ping';
const NS_VERSION = 'jabber:iq:version';
const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';

describe('XMPP server services', function () {
  this.timeout(30_000);
  let node: TestNode;
  let c: TestClient;
  const user = uniqueName('svc');

  before(async function () {
    this.timeout(60_000);
    node = await startNode();
    await node.addUser(user, PW);
    c = await xmppClient({ port: node.ports.xmpp, username: user, password: PW, resource: 'svc' });
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await node?.dispose();
  });

  it('ping to the server → empty result from the server, same id [XEP-0199 4.2]', async () => {
    const req = xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: NS_PING }));
    const r = await c.request(req);
    assert.equal(r.attrs.type, 'result', r.toString());
    assert.equal(r.attrs.id, req.attrs.id);
    assert.equal(r.attrs.from, DOMAIN);
    assert.equal(r.attrs.to, c.jid);
    assert.equal(r.getChildElements().length, 0);
  });

  it('software version of the server: name and version [XEP-0092]', async () => {
    const r = await c.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: NS_VERSION })),
    );
    assert.equal(r.attrs.type, 'result', r.toString());
    const q = r.getChild('query', NS_VERSION);
    assert.ok(q, r.toString());
    assert.ok(q.getChildText('name'), 'no <name/>');
    assert.ok(q.getChildText('version'), 'no <version/>');
  });

  it('disco#info of the server: server/im identity and the features of the loaded modules [XEP-0030 3.1]', async () => {
    const r = await c.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: NS_DISCO_INFO })),
    );
    assert.equal(r.attrs.type, 'result', r.toString());
    const q = r.getChild('query', NS_DISCO_INFO);
    assert.ok(q, r.toString());
    const ids = q.getChildren('identity').map((i) => `${i.attrs.category}/${i.attrs.type}`);
    assert.ok(ids.includes('server/im'), `identities: ${ids.join(', ')}`);
    const features = q.getChildren('feature').map((f) => f.attrs.var);
    for (const f of [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION, 'jabber:iq:roster'])
      assert.ok(features.includes(f), `feature ${f} missing: ${features.join(' ')}`);
    assert.equal(new Set(features).size, features.length, 'duplicate features [XEP-0030 3.1]');
  });

  it('disco#items of the server: its service domains, here the chatrooms and file upload [XEP-0030 4.1] [XEP-0045 6.1] [XEP-0363 3]', async () => {
    const r = await c.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: NS_DISCO_ITEMS })),
    );
    assert.equal(r.attrs.type, 'result', r.toString());
    const items = r.getChild('query', NS_DISCO_ITEMS)!.getChildElements();
    assert.deepEqual(items.map((i) => i.attrs.jid).sort(), [
      `conference.${DOMAIN}`,
      `upload.${DOMAIN}`,
    ]);
  });

  it('an IQ get in an unknown namespace → service-unavailable [RFC6120 8.4]', async () => {
    const req = xml(
      'iq',
      { type: 'get', to: DOMAIN },
      xml('query', { xmlns: 'urn:example:unknown' }),
    );
    const r = await c.request(req);
    assert.equal(r.attrs.type, 'error', r.toString());
    assert.equal(r.attrs.id, req.attrs.id);
    assert.deepEqual(stanzaError(r), { type: 'cancel', condition: 'service-unavailable' });
  });

  it('an IQ get with two children → bad-request [RFC6120 8.2.3]', async () => {
    const r = await c.request(
      xml(
        'iq',
        { type: 'get', to: DOMAIN },
        xml('ping', { xmlns: NS_PING }),
        xml('query', { xmlns: NS_VERSION }),
      ),
    );
    assert.equal(r.attrs.type, 'error', r.toString());
    assert.equal(stanzaError(r).condition, 'bad-request');
  });
});
