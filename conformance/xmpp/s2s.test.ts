// Server-to-server federation between two Parley nodes for two domains
// (conformance/s2s-helpers.ts): real sockets, STARTTLS with certificates from
// the test CA checked for each domain, dialback [XEP-0220] both ways, real
// @xmpp/client users on both sides.
import assert from 'node:assert/strict';
import { presence, stopAllClients, xml } from '../helpers.ts';
import { link, startFederatedNode, type FederatedNode } from '../s2s-helpers.ts';

const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

describe('s2s federation between two Parley nodes [RFC6120] [XEP-0220]', function () {
  this.timeout(60_000);
  let a: FederatedNode;
  let b: FederatedNode;

  before(async () => {
    a = await startFederatedNode('alpha.localhost', ['alice']);
    b = await startFederatedNode('beta.localhost', ['bob']);
    link(a, b);
  });
  afterEach(() => stopAllClients());
  after(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('a chat message crosses to the other domain and the answer comes back [RFC6120 8.1.2.1] [XEP-0220 2.1]', async () => {
    const alice = await a.login('alice', 'phone');
    const bob = await b.login('bob', 'laptop');
    await alice.send(presence());
    await bob.send(presence());
    await alice.send(
      xml(
        'message',
        { to: 'bob@beta.localhost', type: 'chat', id: 'm1' },
        xml('body', {}, 'hello beta'),
      ),
    );
    const got = await bob.waitFor(
      (el) => el.is('message') && el.getChildText('body') === 'hello beta',
      15_000,
    );
    assert.equal(got.attrs.from, 'alice@alpha.localhost/phone');
    assert.equal(got.attrs.type, 'chat');
    assert.equal(got.attrs.id, 'm1');
    await bob.send(
      xml(
        'message',
        { to: got.attrs.from, type: 'chat', id: 'm2' },
        xml('body', {}, 'hello alpha'),
      ),
    );
    const back = await alice.waitFor(
      (el) => el.is('message') && el.getChildText('body') === 'hello alpha',
      15_000,
    );
    assert.equal(back.attrs.from, 'bob@beta.localhost/laptop');
  });

  it('a message to a user the remote domain does not have comes back as an error over s2s [RFC6121 8.5.2.2.1]', async () => {
    const alice = await a.login('alice');
    await alice.send(
      xml(
        'message',
        { to: 'nobody@beta.localhost', type: 'chat', id: 'x1' },
        xml('body', {}, 'anyone?'),
      ),
    );
    const err = await alice.waitFor((el) => el.is('message') && el.attrs.id === 'x1', 15_000);
    assert.equal(err.attrs.type, 'error');
    assert.equal(err.attrs.from, 'nobody@beta.localhost');
    assert.ok(err.getChild('error')?.getChild('service-unavailable', NS_STANZAS));
  });

  it('directed presence reaches a remote user [RFC6121 4.6]', async () => {
    const alice = await a.login('alice', 'p');
    const bob = await b.login('bob', 'q');
    await bob.send(presence());
    await alice.send(xml('presence', { to: 'bob@beta.localhost/q' }, xml('status', {}, 'here')));
    const p = await bob.waitFor(
      (el) => el.is('presence') && el.attrs.from === 'alice@alpha.localhost/p',
      15_000,
    );
    assert.equal(p.getChildText('status'), 'here');
  });

  it('an unreachable domain bounces with remote-server-not-found [RFC6120 8.3.3.16]', async () => {
    a.s2s.opts.routes['closed.localhost'] = '127.0.0.1:1';
    const alice = await a.login('alice');
    await alice.send(
      xml('message', { to: 'x@closed.localhost', type: 'chat', id: 'u1' }, xml('body', {}, 'hi')),
    );
    const err = await alice.waitFor((el) => el.is('message') && el.attrs.id === 'u1', 15_000);
    assert.equal(err.attrs.type, 'error');
    assert.ok(err.getChild('error')?.getChild('remote-server-not-found', NS_STANZAS));
  });

  it('a peer whose certificate is not for its domain is not trusted [RFC6120 13.7.2]', async () => {
    // beta's listener, reached as gamma.localhost: its certificate names beta, not gamma.
    a.s2s.opts.routes['gamma.localhost'] = `127.0.0.1:${b.s2sPort}`;
    b.broker.hosts.register('test', 'gamma.localhost', () => {});
    const alice = await a.login('alice');
    await alice.send(
      xml('message', { to: 'x@gamma.localhost', type: 'chat', id: 'g1' }, xml('body', {}, 'hi')),
    );
    const err = await alice.waitFor((el) => el.is('message') && el.attrs.id === 'g1', 15_000);
    assert.equal(err.attrs.type, 'error');
    assert.ok(
      err.getChild('error')?.getChild('remote-server-not-found', NS_STANZAS),
      err.toString(),
    );
  });
});
