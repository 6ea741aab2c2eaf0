import assert from 'node:assert/strict';
import { Address, BrokerError } from '../../../broker/index.ts';
import { chatEnvelope, chatJson, parsePresence, presenceJson } from '../mapping.ts';

const alice = Address.parse('alice@localhost/dev1');
const bob = Address.parse('bob@localhost');

function condition(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof BrokerError) return err.condition;
    throw err;
  }
  return undefined;
}

describe('mqtt payload mapping', () => {
  it('reads a text payload as the body', () => {
    const env = chatEnvelope(alice, bob, Buffer.from('hello'));
    assert.equal(env.kind, 'message');
    assert.equal(env.type, 'chat');
    assert.equal(env.body, 'hello');
    assert.match(env.id!, /^mqtt-/);
  });

  it('reads a JSON payload with body, id, thread', () => {
    const env = chatEnvelope(alice, bob, Buffer.from('{"body":"hi","id":"m-1","thread":"t"}'));
    assert.equal(env.body, 'hi');
    assert.equal(env.id, 'm-1');
    assert.equal(env.thread, 't');
  });

  it('keeps text that only looks like JSON as text', () => {
    assert.equal(chatEnvelope(alice, bob, Buffer.from('{not json')).body, '{not json');
  });

  it('refuses empty, non-UTF-8 and body-less JSON payloads with bad-request', () => {
    assert.equal(
      condition(() => chatEnvelope(alice, bob, Buffer.alloc(0))),
      'bad-request',
    );
    assert.equal(
      condition(() => chatEnvelope(alice, bob, Buffer.from([0xc3, 0x28]))),
      'bad-request',
    );
    assert.equal(
      condition(() => chatEnvelope(alice, bob, Buffer.from('{"text":"x"}'))),
      'bad-request',
    );
    assert.equal(
      condition(() => chatEnvelope(alice, bob, Buffer.from('{"body":"x","type":"groupchat"}'))),
      'bad-request',
    );
  });

  it('writes chat JSON with from, id, seq, timestamp, body', () => {
    const out = JSON.parse(
      chatJson({
        kind: 'message',
        type: 'chat',
        from: alice,
        to: bob,
        id: 'x',
        body: 'b',
        seq: 7,
        timestamp: 5,
        extensions: [],
      }),
    );
    assert.deepEqual(out, { from: 'alice@localhost', id: 'x', seq: 7, timestamp: 5, body: 'b' });
  });

  it('writes an error as type error with its condition', () => {
    const out = JSON.parse(
      chatJson({
        kind: 'message',
        type: 'error',
        from: bob,
        to: alice,
        id: 'x',
        extensions: [],
        error: { condition: 'service-unavailable', type: 'cancel' },
      }),
    );
    assert.equal(out.type, 'error');
    assert.equal(out.error.condition, 'service-unavailable');
  });

  it('parses presence words and JSON', () => {
    assert.deepEqual(parsePresence(Buffer.from('online')), { kind: 'available' });
    assert.deepEqual(parsePresence(Buffer.from('offline')), { kind: 'unavailable' });
    assert.deepEqual(parsePresence(Buffer.from('dnd')), { kind: 'available', show: 'dnd' });
    assert.deepEqual(parsePresence(Buffer.from('{"show":"away","status":"charging"}')), {
      kind: 'available',
      show: 'away',
      status: 'charging',
      priority: undefined,
    });
    assert.deepEqual(parsePresence(Buffer.from('{"type":"subscribed","to":"bob"}')), {
      kind: 'subscription',
      type: 'subscribed',
      to: 'bob',
    });
    assert.equal(
      condition(() => parsePresence(Buffer.from('sleepy'))),
      'bad-request',
    );
    assert.equal(
      condition(() => parsePresence(Buffer.from('{"show":"sleepy"}'))),
      'bad-request',
    );
  });

  it('writes presence JSON per resource', () => {
    const avail = JSON.parse(
      presenceJson(
        { kind: 'presence', from: alice, to: bob, show: 'away', extensions: [] },
        alice.bare(),
      ),
    );
    assert.deepEqual(avail, {
      user: 'alice',
      jid: 'alice@localhost/dev1',
      available: true,
      show: 'away',
    });
    const gone = JSON.parse(presenceJson(undefined, bob));
    assert.equal(gone.available, false);
  });
});
