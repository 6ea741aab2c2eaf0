// Authentication and idle timeouts, whitespace keepalive: one shared sweep drives them all.
import assert from 'node:assert/strict';
import { expectStreamError, Harness } from './harness.ts';

describe('xmpp timeouts and keepalive (wire harness)', () => {
  let h: Harness;
  afterEach(async () => h?.stop());

  it('a connection that does not authenticate in time is closed with connection-timeout [RFC6120 4.9.3.4]', async () => {
    h = await Harness.start({ xmpp: { authTimeoutMs: 300 } });
    const c = h.connect();
    await c.open();
    const reason = await expectStreamError(c, 'connection-timeout');
    assert.equal(reason.kind, 'auth-timeout');
  });

  it('a bound session is not subject to the authentication timeout', async () => {
    h = await Harness.start({ xmpp: { authTimeoutMs: 1000 } });
    const { client } = await h.user('alice', 'alice-pw', 'r1');
    await new Promise((r) => setTimeout(r, 1800));
    assert.equal(client.isClosed, false);
  });

  it('an idle session is closed with connection-timeout; traffic keeps it open [RFC6120 4.6.1]', async () => {
    h = await Harness.start({ xmpp: { idleTimeoutMs: 600 } });
    const { client: busy } = await h.user('alice', 'alice-pw', 'busy');
    const { client: idle } = await h.user('bob', 'bob-pw', 'idle');
    // The busy client sends whitespace keepalives; the idle one sends nothing.
    const t = setInterval(() => busy.send(' '), 150);
    try {
      const reason = await expectStreamError(idle, 'connection-timeout');
      assert.equal(reason.kind, 'idle-timeout');
      assert.equal(busy.isClosed, false);
    } finally {
      clearInterval(t);
    }
  });

  it('a session quiet long enough to release its parser state still takes stanzas, keepalives and the stream end', async () => {
    h = await Harness.start();
    const { client } = await h.user('alice', 'alice-pw', 'quiet');
    await new Promise((r) => setTimeout(r, 1400));
    client.send(' ');
    await new Promise((r) => setTimeout(r, 1400));
    await client.ping();
    await new Promise((r) => setTimeout(r, 1400));
    client.send('</stream:stream>');
    await client.expect(/<\/stream:stream>$/);
    assert.equal(client.conn.closeReason?.kind, 'client-closed');
  });

  it('the server sends whitespace keepalives to bound sessions [RFC6120 4.6.1]', async () => {
    h = await Harness.start({ xmpp: { keepaliveIntervalMs: 300 } });
    const { client } = await h.user('alice', 'alice-pw', 'k');
    const before = client.transport.writes.length;
    await new Promise((r) => setTimeout(r, 1600));
    const spaces = client.transport.writes.slice(before).filter((w) => w === ' ');
    assert.ok(spaces.length >= 2, `expected at least 2 keepalives, got ${spaces.length}`);
  });
});
