import assert from 'node:assert/strict';
import { eventually } from '../../../broker/test/helpers.ts';
import { Address } from '../../../broker/index.ts';
import { connectBytes, startHarness, type Harness } from './harness.ts';

describe('mqtt CONNECT and sessions', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({ maxClientIdLength: 40, maxKeepaliveSeconds: 600 });
  });
  afterEach(() => h.stop());

  /** CONNACK return code for raw CONNECT fields. */
  async function code(fields: Parameters<typeof connectBytes>[0]): Promise<number> {
    const r = await h.raw();
    r.send(connectBytes(fields));
    return r.connack();
  }

  it('binds an authenticated connection as a session: username → account, client id → resource', async () => {
    await h.login('alice', 'sensor-1');
    await eventually(() => {
      const s = h.broker.sessions.get(Address.parse('alice@localhost/sensor-1'));
      assert.ok(s, 'session bound');
      assert.equal(s.protocol, 'mqtt');
      assert.equal(s.available, true);
    });
  });

  it('does not keep the password once the CONNECT is authenticated', async () => {
    await h.login('alice', 'sensor-1');
    // mqtt-packet's parser holds the CONNECT packet for the connection's life.
    const clients = Object.values(
      (
        h.server.aedes as unknown as {
          clients: Record<
            string,
            { _parser: { settings: { username?: string; password?: Buffer } } }
          >;
        }
      ).clients,
    );
    assert.equal(clients.length, 1);
    const held = clients[0]!._parser.settings;
    assert.equal(held.username, 'alice', 'the parser does hold the CONNECT packet');
    assert.equal(held.password, undefined);
  });

  it('answers each refusal with its CONNACK code [MQTT-3.2.2-5]', async () => {
    assert.equal(
      await code({ clientId: 'c', username: 'alice', password: 'wrong' }),
      4,
      'bad password',
    );
    assert.equal(
      await code({ clientId: 'c', username: 'nobody', password: 'x' }),
      4,
      'unknown user',
    );
    assert.equal(await code({ clientId: 'c', username: 'alice' }), 4, 'no password');
    assert.equal(await code({ clientId: 'c' }), 5, 'anonymous not allowed');
    assert.equal(await code({ clientId: 'c', username: 'alice', password: 'alice-pw' }), 0);
  });

  it('refuses an empty client id with clean session 0 with code 2 [MQTT-3.1.3-8]', async () => {
    assert.equal(
      await code({ clientId: '', clean: false, username: 'alice', password: 'alice-pw' }),
      2,
    );
  });

  it('assigns an id to an empty client id with clean session 1 [MQTT-3.1.3-6]', async () => {
    assert.equal(
      await code({ clientId: '', clean: true, username: 'alice', password: 'alice-pw' }),
      0,
    );
    await eventually(() =>
      assert.match(
        h.broker.sessions.sessionsOf(Address.parse('alice@localhost'))[0]?.address.resource ?? '',
        /^mqtt-[0-9a-f]{16}$/,
      ),
    );
  });

  it('refuses client ids over the limit, and over 23 characters on MQTT 3.1, with code 2 [MQTT-3.1.3-5]', async () => {
    assert.equal(
      await code({ clientId: 'x'.repeat(41), username: 'alice', password: 'alice-pw' }),
      2,
    );
    assert.equal(
      await code({ clientId: 'x'.repeat(40), username: 'alice', password: 'alice-pw' }),
      0,
    );
    assert.equal(
      await code({
        clientId: 'y'.repeat(24),
        protocolVersion: 3,
        username: 'alice',
        password: 'alice-pw',
      }),
      2,
    );
  });

  it('refuses a keepalive outside the bounds with code 2', async () => {
    assert.equal(
      await code({ clientId: 'k', keepalive: 601, username: 'alice', password: 'alice-pw' }),
      2,
    );
  });

  it('refuses an unsupported protocol level with code 1 [MQTT-3.1.2-2]', async () => {
    const r = await h.raw();
    const bytes = connectBytes({ clientId: 'v', username: 'alice', password: 'alice-pw' });
    bytes[8] = 6; // protocol level byte after the 2+4 byte protocol name
    r.send(bytes);
    assert.equal(await r.connack(), 1);
    assert.equal(await r.waitClosed(), true);
  });

  it('keeps client ids per account: two users may use the same id', async () => {
    const a = await h.login('alice', 'phone');
    const b = await h.login('bob', 'phone');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(a.connected, true);
    assert.equal(b.connected, true);
  });

  it('takes over a connection of the same account and client id [MQTT-3.1.4-2]', async () => {
    const first = await h.login('alice', 'dev');
    const closed = new Promise<void>((r) => first.once('close', () => r()));
    await h.login('alice', 'dev');
    await closed;
    await eventually(() => {
      const s = h.broker.sessions.sessionsOf(Address.parse('alice@localhost'));
      assert.equal(s.length, 1);
      assert.equal(s[0].available, true);
    });
  });

  it('unbinds the session on DISCONNECT and on an abrupt drop', async () => {
    const a = await h.login('alice', 'a1');
    const b = await h.login('alice', 'a2');
    await eventually(() =>
      assert.equal(h.broker.sessions.sessionsOf(Address.parse('alice@localhost')).length, 2),
    );
    await a.endAsync();
    b.stream.destroy();
    await eventually(() =>
      assert.equal(h.broker.sessions.sessionsOf(Address.parse('alice@localhost')).length, 0),
    );
  });

  it('lets anonymous clients in only when allowed, without a session', async () => {
    await h.stop();
    h = await startHarness({ allowAnonymous: true });
    const c = await h.connect({ clientId: 'anon' });
    assert.equal(c.connected, true);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(h.broker.sessions.count(), 0);
  });
});
