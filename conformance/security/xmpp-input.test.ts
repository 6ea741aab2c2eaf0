// Black-box, issue 20 "Also": invalid UTF-8 in an XMPP stream is not-well-formed
// [RFC6120 11.6, 4.9.3.13] (it was turned into U+FFFD and delivered), and a
// raw <stream:stream> over WebSocket is refused [RFC7395 3.3.2].
import assert from 'node:assert/strict';
import type net from 'node:net';
import { WebSocket } from 'ws';
import { BoshClient, parseStrict } from '../web/bosh-client.ts';
import {
  NS_CLIENT,
  NS_STREAM,
  closeAllRaw,
  rawLogin,
  startNode,
  uniqueName,
  type RawConn,
  type TestNode,
} from '../helpers.ts';

const PW = 'utf8 pw';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function sockOf(c: RawConn): net.Socket {
  return (c as unknown as { sock: net.Socket }).sock;
}

describe('security: XMPP input encoding and framing', function () {
  this.timeout(30_000);
  let node: TestNode;
  const a = uniqueName('u8a');
  const b = uniqueName('u8b');

  before(async function () {
    this.timeout(60_000);
    node = await startNode();
    await Promise.all([node.addUser(a, PW), node.addUser(b, PW)]);
  });
  afterEach(() => closeAllRaw());
  after(async () => {
    closeAllRaw();
    await node?.dispose();
  });

  for (const [what, chunks] of [
    ['a byte that is never UTF-8 (0xFF)', [Buffer.from([0xff])]],
    [
      'a truncated sequence split across two writes (E2 82 | 41)',
      [Buffer.from([0xe2, 0x82]), Buffer.from('A')],
    ],
    ['an overlong encoding (C0 AF)', [Buffer.from([0xc0, 0xaf])]],
  ] as [string, Buffer[]][]) {
    it(`invalid UTF-8 in a stanza: ${what} → not-well-formed, nothing delivered [RFC6120 11.6] [RFC6120 4.9.3.13]`, async () => {
      const rb = await rawLogin(node.ports.xmpp, b, PW, 'PLAIN', 'rb');
      rb.send('<presence/>');
      const ra = await rawLogin(node.ports.xmpp, a, PW, 'PLAIN', 'ra');
      const s = sockOf(ra);
      s.write(`<message xmlns='${NS_CLIENT}' type='chat' to='${b}@localhost'><body>bad `);
      for (const c of chunks) {
        s.write(c);
        await sleep(50);
      }
      s.write(` end</body></message>`);
      await ra.waitFor(
        /<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/,
        5000,
      );
      await ra.waitClosed(5000);
      await sleep(300);
      assert.ok(!/bad /.test(rb.text), `delivered: ${rb.text.slice(-300)}`);
      assert.ok(!rb.text.includes('\ufffd'));
    });
  }

  it('over WebSocket a raw <stream:stream> header is refused with <open/>, a stream error and <close/> [RFC7395 3.3.2]', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${node.ports.http}/xmpp-websocket`, ['xmpp']);
    const frames: string[] = [];
    ws.on('message', (d) => frames.push(d.toString()));
    const closed = new Promise<void>((r) => ws.once('close', () => r()));
    await new Promise<void>((r, j) => {
      ws.once('open', () => r());
      ws.once('error', j);
    });
    ws.send(
      `<stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' to='localhost' version='1.0'>`,
    );
    await Promise.race([closed, sleep(8000)]);
    ws.terminate();
    const all = frames.join('\n');
    assert.ok(!/<stream:features/.test(all), `the raw header opened a stream: ${all}`);
    assert.match(all, /<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/);
    assert.match(all, /<invalid-namespace xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/);
    assert.match(all, /<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'\/>/);
  });

  it('over BOSH a body with invalid UTF-8 ends the session with bad-request, nothing delivered [XEP-0124 §17.2] [RFC6120 11.6]', async () => {
    const url = `http://127.0.0.1:${node.ports.http}/http-bind`;
    const c = new BoshClient(url);
    const created = await c.create();
    assert.ok(c.sid, created.text);
    // the next request's <body> with a presence whose text holds 0xFF
    const head = c.next().replace(/\/>$/, '>');
    const body = Buffer.concat([
      Buffer.from(`${head}<presence xmlns='${NS_CLIENT}'><status>bad `),
      Buffer.from([0xff]),
      Buffer.from(' end</status></presence></body>'),
    ]);
    const r = await fetch(url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'text/xml; charset=utf-8' },
    });
    const reply = parseStrict(await r.text());
    assert.equal(reply.attrs.type, 'terminate');
    assert.equal(reply.attrs.condition, 'bad-request');
    // the session is gone: its next request is item-not-found [XEP-0124 §17.2]
    const after = await c.send();
    assert.equal(after.body.attrs.condition, 'item-not-found');
  });
});
