import assert from 'node:assert/strict';
import { xml } from '@xmpp/xml';
import { verificationHash } from '../modules/caps.ts';

describe('XEP-0115 verification string', () => {
  it('matches the simple example of XEP-0115 5.2', () => {
    const q = xml(
      'query',
      { xmlns: 'http://jabber.org/protocol/disco#info' },
      xml('identity', { category: 'client', type: 'pc', name: 'Exodus 0.9.1' }),
      ...[
        'http://jabber.org/protocol/caps',
        'http://jabber.org/protocol/disco#info',
        'http://jabber.org/protocol/disco#items',
        'http://jabber.org/protocol/muc',
      ].map((v) => xml('feature', { var: v })),
    );
    assert.equal(verificationHash(q, 'sha-1'), 'QgayPKawpkPSDYmwT/WM94uAlu0=');
  });

  it('unknown hash functions give no hash (the ver is then used for that session only)', () => {
    assert.equal(verificationHash(xml('query'), 'md5'), undefined);
  });
});
