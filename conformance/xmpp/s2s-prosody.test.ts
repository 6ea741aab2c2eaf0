// Federation with a real Prosody 0.12 as the remote domain remote.test
// (conformance/prosody-remote.ts): Parley (parley.test) and Prosody reach
// each other over s2s on loopback, STARTTLS with certificates from the test
// CA for each domain, dialback [XEP-0220] both ways. A real @xmpp/client user
// on each server; an XEP-0114 component on Prosody plays the push app server.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import xmlLib, { type Element } from '@xmpp/xml';
import { presence, stopAllClients, xml, xmppClient } from '../helpers.ts';
import { startProsody, type ProsodyRemote } from '../prosody-remote.ts';
import { startFederatedNode, type FederatedNode } from '../s2s-helpers.ts';

const NS_PUSH = 'urn:xmpp:push:0';
const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

const LtxParser = (
  xmlLib as unknown as {
    Parser: new () => {
      on(e: 'start' | 'element', fn: (el: Element) => void): void;
      on(e: 'error', fn: (err: Error) => void): void;
      write(s: string): void;
    };
  }
).Parser;

/** A raw XEP-0114 component: handshake is SHA-1 of the stream id and the secret [XEP-0114 3]. */
async function component(port: number, name: string, secret: string) {
  const sock = net.connect(port, '127.0.0.1');
  const parser = new LtxParser();
  const got: Element[] = [];
  let waiter: ((el: Element) => void) | undefined;
  let id = '';
  const opened = new Promise<void>((resolve) =>
    parser.on('start', (el) => {
      id = el.attrs.id;
      resolve();
    }),
  );
  parser.on('element', (el) => {
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w(el);
    } else got.push(el);
  });
  sock.on('data', (d) => parser.write(d.toString('utf8')));
  const next = (ms = 20_000): Promise<Element> =>
    got.length
      ? Promise.resolve(got.shift()!)
      : new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`component: nothing within ${ms} ms`)), ms);
          waiter = (el) => {
            clearTimeout(t);
            resolve(el);
          };
        });
  await new Promise((r) => sock.once('connect', r));
  sock.write(
    `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='${name}'>`,
  );
  await opened;
  sock.write(
    `<handshake>${createHash('sha1')
      .update(id + secret)
      .digest('hex')}</handshake>`,
  );
  const hs = await next();
  assert.equal(hs.name, 'handshake', `component handshake: ${hs.toString()}`);
  return {
    next,
    /** nothing arrives within ms */
    async none(ms: number): Promise<void> {
      await new Promise((r) => setTimeout(r, ms));
      assert.equal(got.length, 0, `unexpected: ${got.map((e) => e.toString()).join(' ')}`);
    },
    send: (s: string) => sock.write(s),
    close: () => sock.destroy(),
  };
}

describe('s2s federation with a real Prosody [RFC6120] [XEP-0220]', function () {
  this.timeout(90_000);
  let parley: FederatedNode;
  let prosody: ProsodyRemote;

  before(async () => {
    parley = await startFederatedNode('parley.test', ['alice', 'dave']);
    prosody = await startProsody('remote.test', ['romeo'], { 'parley.test': parley.s2sPort });
    // Static routes in place of the SRV records a real deployment has for both names.
    parley.s2s.opts.routes['remote.test'] = `127.0.0.1:${prosody.s2sPort}`;
    parley.s2s.opts.routes['push.remote.test'] = `127.0.0.1:${prosody.s2sPort}`;
  });
  afterEach(() => stopAllClients());
  after(async () => {
    await parley?.stop();
    await prosody?.stop();
  });

  const romeoLogin = () =>
    xmppClient({ port: prosody.c2sPort, username: 'romeo', password: 'pw', domain: 'remote.test' });

  it('a Parley user and a Prosody user exchange chat messages over s2s [RFC6120 8.1.2.1] [XEP-0220 2.1]', async () => {
    const alice = await parley.login('alice', 'phone');
    const romeo = await romeoLogin();
    await alice.send(presence());
    await romeo.send(presence());
    await alice.send(
      xml(
        'message',
        { to: 'romeo@remote.test', type: 'chat', id: 'p1' },
        xml('body', {}, 'to prosody'),
      ),
    );
    const got = await romeo.waitFor(
      (el) => el.is('message') && el.getChildText('body') === 'to prosody',
      30_000,
    );
    assert.equal(got.attrs.from, 'alice@parley.test/phone');
    await romeo.send(
      xml(
        'message',
        { to: 'alice@parley.test', type: 'chat', id: 'p2' },
        xml('body', {}, 'from prosody'),
      ),
    );
    const back = await alice.waitFor(
      (el) => el.is('message') && el.getChildText('body') === 'from prosody',
      30_000,
    );
    assert.equal(back.attrs.from, romeo.jid);
  });

  it('a push publish reaches an app server behind Prosody; its cancel error removes the registration [XEP-0357 7]', async () => {
    const app = await component(prosody.componentPort, 'push.remote.test', prosody.componentSecret);
    try {
      const dave = await parley.login('dave');
      const enabled = await dave.request(
        xml(
          'iq',
          { type: 'set' },
          xml('enable', { xmlns: NS_PUSH, jid: 'push.remote.test', node: 'n-dave' }),
        ),
      );
      assert.equal(enabled.attrs.type, 'result');
      await dave.stop();
      const alice = await parley.login('alice');
      await alice.send(
        xml('message', { to: 'dave@parley.test', type: 'chat' }, xml('body', {}, 'wake up')),
      );
      const iq = await app.next(30_000);
      assert.equal(iq.name, 'iq');
      assert.equal(iq.attrs.type, 'set');
      assert.equal(iq.attrs.from, 'dave@parley.test');
      assert.equal(iq.attrs.to, 'push.remote.test');
      const publish = iq.getChild('pubsub', NS_PUBSUB)?.getChild('publish');
      assert.equal(publish?.attrs.node, 'n-dave');
      assert.ok(publish?.getChild('item')?.getChild('notification', NS_PUSH));
      // The app server no longer knows the node [XEP-0357 7]
      app.send(
        `<iq type='error' from='push.remote.test' to='dave@parley.test' id='${iq.attrs.id}'><error type='cancel'><item-not-found xmlns='${NS_STANZAS}'/></error></iq>`,
      );
      const kv = parley.broker.storage.kv('push');
      for (let i = 0; i < 200 && (await kv.keys('dave@parley.test/')).length > 0; i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(await kv.keys('dave@parley.test/'), [], 'registration removed');
      await alice.send(
        xml('message', { to: 'dave@parley.test', type: 'chat' }, xml('body', {}, 'again')),
      );
      await app.none(1500);
    } finally {
      app.close();
    }
  });
});
