// Server-to-server federation between two Parley nodes for two domains
// (conformance/s2s-helpers.ts): real sockets, STARTTLS with certificates from
// the test CA checked for each domain, dialback [XEP-0220] both ways, real
// @xmpp/client users on both sides.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { testCa } from '../test-ca.ts';
import { mam } from '../mam-helpers.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { presence, startNode, stopAllClients, xml, xmppClient, type TestNode } from '../helpers.ts';
import { link, startFederatedNode, type FederatedNode } from '../s2s-helpers.ts';

const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const HEADER = (to: string, from = 'alpha.localhost') =>
  `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='${from}' to='${to}' version='1.0'>`;

/** A hand-driven peer server on a raw socket: what it reads is kept as text, waited on by pattern. */
function rawPeer(port: number) {
  let sock: net.Socket = net.connect(port, '127.0.0.1');
  let text = '';
  let waiters: (() => void)[] = [];
  const onData = (d: Buffer) => {
    text += d.toString('utf8');
    for (const w of waiters) w();
  };
  sock.on('data', onData);
  let closed = false;
  const onClose = () => {
    closed = true;
    for (const w of waiters) w();
  };
  sock.on('close', onClose);
  return {
    send: (s: string) => sock.write(s),
    get text() {
      return text;
    },
    /** resolves with the text read so far once it matches, fails after 15 s */
    until(re: RegExp): Promise<string> {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (re.test(text)) {
            waiters = waiters.filter((w) => w !== check);
            clearTimeout(t);
            resolve(text);
          } else if (closed) {
            clearTimeout(t);
            reject(new Error(`closed without ${re}; read: ${text}`));
          }
        };
        const t = setTimeout(() => reject(new Error(`no ${re}; read: ${text}`)), 15_000);
        waiters.push(check);
        check();
      });
    },
    /** STARTTLS as a client, checking the server's certificate for `servername` */
    async startTls(servername: string): Promise<void> {
      sock.removeListener('data', onData);
      const secure = tls.connect({ socket: sock, servername, ca: await testCa() });
      await new Promise((r, j) => secure.once('secureConnect', r).once('error', j));
      text = '';
      sock = secure;
      secure.on('data', onData);
      secure.on('close', onClose);
    },
    /** resolves once the server closed the connection */
    closed: () => new Promise<void>((r) => (closed ? r() : sock.once('close', () => r()))),
    destroy: () => sock.destroy(),
  };
}

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

  it('a message to a remote contact is in the sender archive, and carries no stanza-id of ours to the peer [XEP-0313] [XEP-0359 4]', async () => {
    const alice = await a.login('alice', 'arch');
    const bob = await b.login('bob', 'arch');
    await bob.send(presence());
    await alice.send(
      xml(
        'message',
        { to: 'bob@beta.localhost', type: 'chat', id: 'arch1' },
        xml('body', {}, 'keep me'),
      ),
    );
    const got = await bob.waitFor(
      (el) => el.is('message') && el.getChildText('body') === 'keep me',
      15_000,
    );
    // beta's own archive id for bob is the only stanza-id
    const ids = got.getChildren('stanza-id', 'urn:xmpp:sid:0');
    assert.equal(ids.length, 1, got.toString());
    assert.equal(ids[0].attrs.by, 'bob@beta.localhost');
    const page = await mam(alice, { form: { with: 'bob@beta.localhost' } });
    assert.ok(page.bodies.includes('keep me'), page.bodies.join('|'));
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

  describe('hostile peers on the s2s listener', () => {
    it('a stanza before STARTTLS ends the stream with policy-violation and reaches no one [RFC6120 5.3.1]', async () => {
      const bob = await b.login('bob', 'h1');
      await bob.send(presence());
      const peer = rawPeer(b.s2sPort);
      peer.send(HEADER('beta.localhost'));
      await peer.until(/<starttls[^>]*><required\/><\/starttls>/);
      peer.send(
        `<message from='alice@alpha.localhost' to='bob@beta.localhost/h1' type='chat'><body>spoofed</body></message>`,
      );
      await peer.until(/<policy-violation/);
      await peer.closed();
      await bob.expectNone((el) => el.is('message'), 300);
    });

    it('a stream to a domain this node does not serve is refused with host-unknown [RFC6120 4.9.3.6]', async () => {
      const peer = rawPeer(b.s2sPort);
      peer.send(HEADER('elsewhere.localhost'));
      await peer.until(/<host-unknown/);
      await peer.closed();
    });

    it('a jabber:client stream on the s2s port is refused with invalid-namespace [RFC6120 4.9.3.10]', async () => {
      const peer = rawPeer(b.s2sPort);
      peer.send(
        `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='beta.localhost' version='1.0'>`,
      );
      await peer.until(/<invalid-namespace/);
      await peer.closed();
    });

    it('a forged dialback key is found invalid by the authoritative server, and stanzas from that domain end the stream with invalid-from [XEP-0220 2.4] [RFC6120 4.9.3.9]', async () => {
      const bob = await b.login('bob', 'h2');
      await bob.send(presence());
      const peer = rawPeer(b.s2sPort);
      peer.send(HEADER('beta.localhost'));
      await peer.until(/<\/stream:features>/);
      peer.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
      await peer.until(/<proceed/);
      await peer.startTls('beta.localhost'); // beta's certificate is checked as a real peer would
      peer.send(HEADER('beta.localhost'));
      await peer.until(/<dialback xmlns='urn:xmpp:features:dialback'>/);
      // Claims alpha.localhost; beta asks alpha (the real node), which made no such key.
      peer.send(
        `<db:result from='alpha.localhost' to='beta.localhost'>${'ab'.repeat(32)}</db:result>`,
      );
      await peer.until(/<db:result[^>]*type='invalid'/);
      peer.send(
        `<message from='alice@alpha.localhost' to='bob@beta.localhost/h2' type='chat'><body>spoofed</body></message>`,
      );
      await peer.until(/<invalid-from/);
      await peer.closed();
      await bob.expectNone((el) => el.is('message'), 300);
    });

    it('a peer that keeps sending faster than the inbound rate is closed with policy-violation [RFC6120 4.9.3.14]', async () => {
      // The c2s rates (xmpp.inbound*) apply to s2s streams: 1000 bytes/s, kept over it for 300 ms.
      const slow = await startFederatedNode(
        'slow.localhost',
        [],
        {},
        {
          inboundBytesPerSecond: 1000,
          inboundBurstSeconds: 1,
          inboundThrottleLimitMs: 300,
        },
      );
      const peer = rawPeer(slow.s2sPort);
      try {
        peer.send(HEADER('slow.localhost'));
        await peer.until(/<stream:features>/);
        const flood = setInterval(() => peer.send(' '.repeat(4000)), 50);
        try {
          // the rate's text, not the whitespace run's size limit (xmpp.maxStanzaSize)
          await peer.until(/<policy-violation[^]*sending faster than allowed/);
        } finally {
          clearInterval(flood);
        }
      } finally {
        peer.destroy();
        await slow.stop();
      }
    });

    it('more connections from one address than s2s.maxConnectionsPerIp are refused with policy-violation', async () => {
      // Other tests' streams from 127.0.0.1 may still count: open one more than the limit, the last ones are refused.
      const max = b.s2s.opts.maxConnectionsPerIp;
      const peers = Array.from({ length: max + 1 }, () => rawPeer(b.s2sPort));
      try {
        const outcome: string[] = [];
        for (const p of peers) {
          p.send(HEADER('beta.localhost'));
          const t = await p.until(/<stream:features>|<policy-violation/);
          outcome.push(/<policy-violation/.test(t) ? 'refused' : 'open');
        }
        assert.equal(outcome.at(-1), 'refused');
        assert.ok(outcome.filter((o) => o === 'open').length <= max, outcome.join(' '));
      } finally {
        for (const p of peers) p.destroy();
      }
    });
  });
});

describe('s2s configured through the parley command [RFC6120] [XEP-0220]', function () {
  this.timeout(60_000);
  let node: TestNode;
  let alpha: FederatedNode;
  let caDir: string;

  before(async () => {
    alpha = await startFederatedNode('alpha.localhost', ['alice']);
    caDir = mkdtempSync(path.join(os.tmpdir(), 'parley-s2s-ca-'));
    writeFileSync(path.join(caDir, 'ca.pem'), await testCa());
    node = await startNode({
      config: [
        's2s:',
        '  enabled: true',
        '  listen: { host: 127.0.0.1, port: 0 }',
        `  ca: ${path.join(caDir, 'ca.pem')}`,
        `  routes: { alpha.localhost: "127.0.0.1:${alpha.s2sPort}" }`,
        '',
      ].join('\n'),
    });
    const ready = node.log
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; s2s?: number })
      .find((r) => r.msg === 'parley node ready');
    assert.ok(ready?.s2s, 'the ready line names the s2s port');
    alpha.s2s.opts.routes.localhost = `127.0.0.1:${ready.s2s}`;
    await node.addUser('carol', 'pw-carol');
  });
  afterEach(() => stopAllClients());
  after(async () => {
    await node?.dispose();
    await alpha?.stop();
    rmSync(caDir, { recursive: true, force: true });
  });

  it('s2s.enabled, s2s.routes and s2s.ca from the config file: a message reaches the other domain and back', async () => {
    const carol = await xmppClient({
      port: node.ports.xmpp,
      username: 'carol',
      password: 'pw-carol',
    });
    const alice = await alpha.login('alice', 'desk');
    await carol.send(presence());
    await alice.send(presence());
    await carol.send(
      xml(
        'message',
        { to: 'alice@alpha.localhost/desk', type: 'chat' },
        xml('body', {}, 'from the cli node'),
      ),
    );
    const got = await alice.waitFor(
      (el) => el.is('message') && el.getChildText('body') === 'from the cli node',
      15_000,
    );
    assert.equal(got.attrs.from, carol.jid);
    await alice.send(xml('message', { to: carol.jid, type: 'chat' }, xml('body', {}, 'back')));
    await carol.waitFor((el) => el.is('message') && el.getChildText('body') === 'back', 15_000);
  });
});
