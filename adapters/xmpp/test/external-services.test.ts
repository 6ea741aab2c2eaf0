// XEP-0215 service URIs [RFC7064, RFC7065] and the coturn use-auth-secret
// credentials, checked against openssl's HMAC (a second implementation).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { parseServiceUri, turnCredentials } from '../modules/external-services.ts';

describe('external services: URIs and TURN credentials', () => {
  it('parses stun/turn/turns URIs with default ports and transports [RFC7064 3.1, RFC7065 3.1]', () => {
    assert.deepEqual(parseServiceUri('stun:stun.example.org'), {
      type: 'stun',
      host: 'stun.example.org',
      port: 3478,
      transport: undefined,
    });
    assert.deepEqual(parseServiceUri('turn:turn.example.org'), {
      type: 'turn',
      host: 'turn.example.org',
      port: 3478,
      transport: 'udp',
    });
    assert.deepEqual(parseServiceUri('turn:198.51.100.7:3479?transport=tcp'), {
      type: 'turn',
      host: '198.51.100.7',
      port: 3479,
      transport: 'tcp',
    });
    assert.deepEqual(parseServiceUri('turns:[2001:db8::1]'), {
      type: 'turns',
      host: '2001:db8::1',
      port: 5349,
      transport: 'tcp',
    });
  });

  it('refuses what is not such a URI: other schemes, paths, credentials, bad ports, STUN with a transport', () => {
    for (const bad of [
      'http://turn.example.org',
      'turn:user:pw@turn.example.org',
      'turn:turn.example.org/x',
      'turn:turn.example.org:99999',
      'turn:turn.example.org?transport=sctp',
      'stun:s.example.org?transport=udp',
      'turn:',
      'turn:a b',
    ]) {
      assert.throws(
        () => parseServiceUri(bad),
        /expected stun:|out of range|transport is a TURN parameter/,
        bad,
      );
    }
  });

  it('username is "<expiry seconds>:<user>", password base64(HMAC-SHA1(secret, username)) as openssl computes it', () => {
    const c = turnCredentials('north', 'alice@example.org', 1_700_000_000_999);
    assert.equal(c.username, '1700000000:alice@example.org');
    const r = spawnSync('openssl', ['dgst', '-sha1', '-hmac', 'north', '-binary'], {
      input: c.username,
    });
    assert.equal(r.status, 0, String(r.stderr));
    assert.equal(c.password, r.stdout.toString('base64'));
  });
});
