/**
 * broker/address.ts: a JID string from the wire → a normalised Address.
 * Contract [RFC7622]:
 * - only BrokerError('jid-malformed') escapes parse(), and tryParse never throws;
 * - each part is at most 1023 bytes of UTF-8 [RFC7622 3.2-3.4];
 * - the domain holds no space or control character, and a bracketed domain is
 *   an IPv6 literal [RFC7622 3.2];
 * - preparation is idempotent: parsing the output again gives the same
 *   address [RFC8265 7] (otherwise two spellings of one account compare unequal).
 */
import net from 'node:net';
import { Address, BrokerError } from '../../broker/index.ts';
import { check, type FuzzTarget } from '../target.ts';

const BYTES = (s: string) => Buffer.byteLength(s, 'utf8');

export const target: FuzzTarget = {
  about:
    'JID parser: only jid-malformed escapes, parts bounded, domain well-formed, normalisation idempotent',
  cover: ['/broker/address.ts'],
  dict: [
    '@',
    '/',
    '.',
    '[',
    ']',
    '::1',
    'localhost',
    'example.com',
    'a@b/c',
    '\u0130',
    '\u212a',
    '\u00df',
    '\ufb01',
    '\u0345',
    '\u03f4',
    '\u1e9e',
    '\u2488',
    '\u33c7',
    '\u0149',
    '\u01c5',
    '\u1f88',
    '\u0390',
    '\u2160',
    '\uff0e',
    '\u3002',
    '\u200d',
    '\u202e',
    ' ',
    '\t',
    '\u00a0',
    "'",
    '"',
    '<',
    '&',
    '-',
    '_',
    'xn--',
    '1.2.3.4',
  ],
  maxLen: 2200,
  fuzz(data) {
    const input = data.toString('utf8');
    check(Address.tryParse(input) === undefined || true, 'tryParse');
    let a: Address;
    try {
      a = Address.parse(input);
    } catch (err) {
      if (err instanceof BrokerError && err.condition === 'jid-malformed') return;
      throw err;
    }
    check(
      BYTES(a.local) <= 1023 && BYTES(a.domain) <= 1023 && BYTES(a.resource) <= 1023,
      'a part longer than 1023 bytes',
    );
    check(a.domain.length > 0, 'empty domain');
    check(
      !/[\s\u0000-\u001f\u007f]/u.test(a.domain),
      `space or control character in domain ${JSON.stringify(a.domain)}`,
    );
    if (a.domain.startsWith('['))
      check(
        a.domain.endsWith(']') && net.isIPv6(a.domain.slice(1, -1)),
        `bracketed domain is not an IPv6 literal: ${JSON.stringify(a.domain)}`,
      );
    const s = a.toString();
    let b: Address;
    try {
      b = Address.parse(s);
    } catch (err) {
      throw new Error(
        `normalised JID ${JSON.stringify(s)} (from ${JSON.stringify(input)}) does not parse again: ${(err as Error).message}`,
      );
    }
    check(
      b.toString() === s,
      `normalisation is not idempotent: ${JSON.stringify(input)} → ${JSON.stringify(s)} → ${JSON.stringify(b.toString())}`,
    );
    check(a.bare().equals(Address.parse(a.bare().toString())), 'bare() does not round-trip');
  },
};
