// Black-box XEP-0215 (STUN/TURN discovery with coturn credentials) and
// XEP-0157 (contact addresses): an @xmpp/client asks the server; the TURN
// credentials it gets are tried on Debian's coturn started on loopback with
// use-auth-secret, through a minimal TURN client (conformance/turn-client.ts).
import assert from 'node:assert/strict';
import {
  DOMAIN,
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
import { allocate, relayedPort, startCoturn, STUN, type Coturn } from '../turn-client.ts';

const NS = 'urn:xmpp:extdisco:2';
const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const PW = 'pw-extdisco';
const SECRET = 'parley-turn-secret-ä';

describe('XEP-0215 external services with a real coturn; XEP-0157 contact addresses', function () {
  this.timeout(30_000);
  let node: TestNode;
  let turn: Coturn;
  let c: TestClient;
  const user = uniqueName('caller');

  const services = (type?: string) =>
    c.request(
      xml(
        'iq',
        { type: 'get', to: DOMAIN },
        xml('services', { xmlns: NS, ...(type ? { type } : {}) }),
      ),
    );
  const list = (r: Element) => {
    assert.equal(r.attrs.type, 'result', r.toString());
    return r.getChild('services', NS)!.getChildren('service');
  };

  before(async function () {
    this.timeout(60_000);
    turn = await startCoturn(SECRET);
    node = await startNode({
      config:
        `modules:\n  external-services:\n    services: ['stun:127.0.0.1:${turn.port}', 'turn:127.0.0.1:${turn.port}?transport=udp', 'turns:turn.example.org']\n` +
        `    secret: '${SECRET}'\n    credentialTtlSeconds: 600\n` +
        `  contact-info:\n    abuse: ['mailto:abuse@example.org', 'xmpp:abuse@example.org']\n    security: ['https://example.org/security']\n`,
    });
    await node.addUser(user, PW);
    c = await xmppClient({ port: node.ports.xmpp, username: user, password: PW });
  });
  after(async () => {
    await stopAllClients();
    await node?.dispose();
    await turn?.stop();
  });

  it('the server advertises urn:xmpp:extdisco:2 and lists every configured service [XEP-0215]', async () => {
    const info = await c.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: NS_DISCO_INFO })),
    );
    assert.ok(
      info
        .getChild('query')!
        .getChildren('feature')
        .some((f) => f.attrs.var === NS),
      info.toString(),
    );
    const all = list(await services());
    assert.deepEqual(
      all.map((s) => [s.attrs.type, s.attrs.host, s.attrs.port, s.attrs.transport]),
      [
        ['stun', '127.0.0.1', String(turn.port), undefined],
        ['turn', '127.0.0.1', String(turn.port), 'udp'],
        ['turns', 'turn.example.org', '5349', 'tcp'],
      ],
    );
    assert.equal(all[0].attrs.username, undefined, 'STUN needs no credentials');
    for (const s of all.slice(1)) {
      assert.equal(s.attrs.restricted, '1');
      assert.match(s.attrs.username, new RegExp(`^\\d+:${user}@${DOMAIN}$`));
      const expires = Date.parse(s.attrs.expires);
      assert.ok(expires > Date.now() + 590_000 && expires < Date.now() + 610_000, s.attrs.expires);
      assert.equal(
        Number(s.attrs.username.split(':')[0]) * 1000,
        expires,
        'the username carries the expiry',
      );
    }
  });

  it('a type filter lists only that type [XEP-0215]', async () => {
    assert.deepEqual(
      list(await services('turn')).map((s) => s.attrs.type),
      ['turn'],
    );
    assert.deepEqual(list(await services('ftp')), []);
  });

  it('coturn (use-auth-secret) accepts the TURN credentials: Allocate succeeds with a relayed address [XEP-0215; RFC8656 7.2]', async () => {
    const s = list(await services('turn'))[0];
    const r = await allocate(turn.port, s.attrs.username, s.attrs.password);
    assert.equal(r.type, STUN.ALLOCATE_OK, `error ${r.error}`);
    const relay = relayedPort(r);
    assert.ok(relay && relay >= 40000 && relay <= 40999, String(relay));
  });

  it('coturn refuses a wrong password and a username for another expiry (401) [RFC8489 9.2.4]', async () => {
    const s = list(await services('turn'))[0];
    const wrong = await allocate(turn.port, s.attrs.username, `${s.attrs.password.slice(0, -2)}AA`);
    assert.equal(wrong.type, STUN.ALLOCATE_ERROR);
    assert.equal(wrong.error, 401);
    const [exp, who] = s.attrs.username.split(':');
    const later = await allocate(turn.port, `${Number(exp) + 3600}:${who}`, s.attrs.password);
    assert.equal(later.error, 401, 'the password is bound to the username with its expiry');
  });

  it('credentials query for one service; unknown host or a STUN service → item-not-found [XEP-0215]', async () => {
    const r = await c.request(
      xml(
        'iq',
        { type: 'get', to: DOMAIN },
        xml('credentials', { xmlns: NS }, xml('service', { host: '127.0.0.1', type: 'turn' })),
      ),
    );
    assert.equal(r.attrs.type, 'result', r.toString());
    const s = r.getChild('credentials', NS)!.getChild('service')!;
    assert.equal(s.attrs.host, '127.0.0.1');
    const ok = await allocate(turn.port, s.attrs.username, s.attrs.password);
    assert.equal(ok.type, STUN.ALLOCATE_OK, `error ${ok.error}`);
    for (const svc of [
      { host: 'other.example', type: 'turn' },
      { host: '127.0.0.1', type: 'stun' },
    ]) {
      const e = await c.request(
        xml(
          'iq',
          { type: 'get', to: DOMAIN },
          xml('credentials', { xmlns: NS }, xml('service', svc)),
        ),
      );
      assert.deepEqual(
        stanzaError(e),
        { type: 'cancel', condition: 'item-not-found' },
        e.toString(),
      );
    }
    const bad = await c.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('credentials', { xmlns: NS })),
    );
    assert.equal(stanzaError(bad).condition, 'bad-request');
  });

  it("the server's disco#info carries the serverinfo form with the configured addresses [XEP-0157; XEP-0128]", async () => {
    const q = (
      await c.request(
        xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: NS_DISCO_INFO })),
      )
    ).getChild('query')!;
    const forms = q.getChildren('x', 'jabber:x:data');
    assert.equal(forms.length, 1, q.toString());
    const fields = new Map(
      forms[0]
        .getChildren('field')
        .map((f) => [f.attrs.var, f.getChildren('value').map((v) => v.getText())]),
    );
    assert.deepEqual(fields.get('FORM_TYPE'), ['http://jabber.org/network/serverinfo']);
    assert.deepEqual(fields.get('abuse-addresses'), [
      'mailto:abuse@example.org',
      'xmpp:abuse@example.org',
    ]);
    assert.deepEqual(fields.get('security-addresses'), ['https://example.org/security']);
    assert.equal(fields.has('admin-addresses'), false, 'kinds not configured are left out');
    const account = (
      await c.request(
        xml('iq', { type: 'get', to: `${user}@${DOMAIN}` }, xml('query', { xmlns: NS_DISCO_INFO })),
      )
    ).getChild('query')!;
    assert.equal(
      account.getChildren('x', 'jabber:x:data').length,
      0,
      'only the server has the form',
    );
  });
});
