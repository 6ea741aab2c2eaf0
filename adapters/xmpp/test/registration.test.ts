import assert from 'node:assert/strict';
import { addressKey, allowed, allowList, RegistrationThrottle } from '../modules/registration.ts';

describe('in-band registration limits (module register)', () => {
  it('IPv6 addresses count by their prefix, IPv4-mapped ones as IPv4 [XEP-0077 3.1]', () => {
    assert.equal(addressKey('2001:db8:1:2::1', 64), addressKey('2001:db8:1:2:ffff:0:0:9', 64));
    assert.notEqual(addressKey('2001:db8:1:2::1', 64), addressKey('2001:db8:1:3::1', 64));
    assert.equal(addressKey('::ffff:192.0.2.7', 64), '192.0.2.7');
    assert.equal(addressKey('192.0.2.7', 64), '192.0.2.7');
    assert.equal(addressKey('::ffff:c000:207', 64), addressKey('0:0:0:0:0:ffff:c000:207', 64));
  });

  it('the allow-list takes addresses and CIDR ranges of both families, and refuses a bad entry', () => {
    const list = allowList(['10.0.0.0/8', '2001:db8::/32', '192.0.2.1'])!;
    assert.ok(allowed(list, '10.1.2.3'));
    assert.ok(allowed(list, '::ffff:10.1.2.3'));
    assert.ok(allowed(list, '2001:db8:5::1'));
    assert.ok(allowed(list, '192.0.2.1'));
    assert.ok(!allowed(list, '192.0.2.2'));
    assert.ok(!allowed(list, '2001:db9::1'));
    assert.equal(allowList([]), undefined);
    assert.throws(() => allowList(['example.org']), /not an address/);
    assert.throws(() => allowList(['10.0.0.0/33']), /prefix/);
  });

  it('one registration per window per address; failures counted; the window ends', () => {
    const t = new RegistrationThrottle({ minSecondsBetween: 60, maxFailures: 2, v6Prefix: 64 });
    t.succeeded('2001:db8::1', 0);
    assert.throws(() => t.check('2001:db8::2', 1000), /resource-constraint/);
    t.check('2001:db8::2', 61_000);
    t.failed('192.0.2.1', 0);
    t.check('192.0.2.1', 0);
    t.failed('192.0.2.1', 0);
    assert.throws(() => t.check('192.0.2.1', 0), /resource-constraint/);
    t.check('192.0.2.1', 61_000);
  });
});
