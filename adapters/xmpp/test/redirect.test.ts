/**
 * Closing a stream with a redirect (a draining cluster node, docs/cluster.md
 * "Draining"): see-other-host on TCP [RFC6120 4.9.3.19], see-other-uri on
 * WebSocket [RFC7395 3.6.1]. The cluster test drives the whole drain with
 * real clients; this checks the bytes, including an IPv6 address.
 */
import assert from 'node:assert/strict';
import type { WebSocket } from 'ws';
import { WebSocketTransport } from '../websocket.ts';
import { Harness, NS_STREAMS_ERR, parseOne } from './harness.ts';

describe('stream redirects on drain', function () {
  let h: Harness;
  beforeEach(async () => (h = await Harness.start()));
  afterEach(() => h.stop());

  it('see-other-host carries the other host as character data, an IPv6 address in brackets, then the stream ends [RFC6120 4.9.3.19]', async () => {
    const { client } = await h.user('alice', 'alice-pw', 'pc');
    client.conn.close({ kind: 'see-other-host', to: '[2001:db8::1]:5222', text: 'draining' });
    const text = await client.expect(/<stream:error>[\s\S]*?<\/stream:error><\/stream:stream>/);
    const err = parseOne(
      text
        .replace(/<\/stream:stream>$/, '')
        .replace('stream:error', 'error')
        .replace('</stream:error>', '</error>'),
    );
    assert.equal(err.getChildText('see-other-host', NS_STREAMS_ERR), '[2001:db8::1]:5222');
    assert.equal(err.getChildText('text', NS_STREAMS_ERR), 'draining');
    await client.closed();
    assert.equal(h.broker.sessions.count(), 0, 'the session is unbound (not kept for resumption)');
  });

  it('WebSocket: <close see-other-uri/> and no see-other-host stream error [RFC7395 3.6.1]', () => {
    const sent: string[] = [];
    const ws = { OPEN: 1, readyState: 1, send: (d: string) => sent.push(d) };
    const t = new WebSocketTransport(ws as unknown as WebSocket, '127.0.0.1', true);
    t.closeStream(undefined, "wss://n1.example/xmpp-websocket?a=1&b='2'");
    assert.deepEqual(sent, [
      `<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='wss://n1.example/xmpp-websocket?a=1&amp;b=&apos;2&apos;'/>`,
    ]);
  });
});
