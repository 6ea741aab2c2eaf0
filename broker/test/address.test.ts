import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import { Address } from '../address.ts';
import { BrokerError } from '../errors.ts';

/** Assert that parsing fails with jid-malformed. */
function malformed(input: string): void {
  assert.throws(
    () => Address.parse(input),
    (err: unknown) =>
      err instanceof BrokerError && err.condition === 'jid-malformed' && err.type === 'modify',
    `expected jid-malformed for ${JSON.stringify(input)}`,
  );
}

describe('Address', function () {
  describe('parse: structure [RFC7622 3.1]', function () {
    const ok: [string, string, string, string][] = [
      ['example.com', '', 'example.com', ''],
      ['alice@example.com', 'alice', 'example.com', ''],
      ['alice@example.com/phone', 'alice', 'example.com', 'phone'],
      ['example.com/service', '', 'example.com', 'service'],
      // the first '/' separates the resource; the resource may contain '/' and '@' [RFC7622 3.1]
      ['alice@example.com/a/b', 'alice', 'example.com', 'a/b'],
      ['alice@example.com/x@y', 'alice', 'example.com', 'x@y'],
      ['example.com/x@y', '', 'example.com', 'x@y'],
      ['[::1]', '', '[::1]', ''],
      ['alice@[2001:db8::1]/r', 'alice', '[2001:db8::1]', 'r'],
    ];
    for (const [input, local, domain, resource] of ok) {
      it(`${input} → local '${local}', domain '${domain}', resource '${resource}'`, () => {
        const a = Address.parse(input);
        assert.deepEqual([a.local, a.domain, a.resource], [local, domain, resource]);
        assert.equal(a.toString(), input);
      });
    }

    const bad: [string, string][] = [
      ['', 'empty'],
      ['@example.com', 'empty localpart [RFC7622 3.3]'],
      ['alice@', 'empty domain [RFC7622 3.2]'],
      ['alice@example.com/', 'empty resource [RFC7622 3.4]'],
      ['/r', 'empty domain before a resource [RFC7622 3.2]'],
      ['a@b@c', 'second @ lands in the domain [RFC7622 3.2]'],
      ['@x', 'empty localpart [RFC7622 3.3]'],
      ['alice@exa mple.com', 'space in domain [RFC7622 3.2]'],
      ['alice@example..com', 'empty domain label [RFC7622 3.2]'],
      ['alice@-example.com', 'label starting with a hyphen [RFC5890]'],
      ['alice@.', 'only a dot'],
      [
        'a@[x]',
        'bracketed domain that is no IPv6 address [RFC7622 3.2] (found by fuzz/targets jid)',
      ],
      ['a@[<script>]', 'markup in a bracketed domain [RFC7622 3.2]'],
      ['a@[]', 'empty IP literal [RFC7622 3.2]'],
      ['a@[ ]', 'space in an IP literal [RFC7622 3.2]'],
      ['a@[::1', 'unbalanced bracket [RFC7622 3.2]'],
      ['a@::1]', 'unbalanced bracket [RFC7622 3.2]'],
    ];
    for (const [input, why] of bad) {
      it(`${JSON.stringify(input)} → jid-malformed (${why})`, () => malformed(input));
    }
    it('an IPv6 literal domain is accepted [RFC7622 3.2]', () => {
      assert.equal(Address.parse('a@[::1]/r').domain, '[::1]');
    });
  });

  describe('normalisation [RFC7622 3.2-3.4]', function () {
    it('localpart and domain are case-folded; the resource keeps its case [RFC7622 3.3.2, 3.4.2]', () => {
      assert.equal(Address.parse('Alice@Example.COM/Phone').toString(), 'alice@example.com/Phone');
    });

    it('NFKC: fullwidth letters in the localpart and domain become ASCII [RFC7622 3.3.2]', () => {
      assert.equal(Address.parse('ＡＬＩＣＥ@ＥＸＡＭＰＬＥ.com').toString(), 'alice@example.com');
    });

    it('NFC in the resource: a decomposed é equals the composed one [RFC7622 3.4.2]', () => {
      assert.ok(Address.parse('a@b/cafe\u0301').equals(Address.parse('a@b/caf\u00e9')));
    });

    it('a trailing dot on the domain is removed [RFC7622 3.2]', () => {
      assert.equal(Address.parse('alice@example.com./r').toString(), 'alice@example.com/r');
      assert.ok(Address.parse('example.com.').equals(Address.parse('example.com')));
    });

    it('internationalised domain and localpart are kept (lower-cased) [RFC7622 3.2, 3.3]', () => {
      assert.equal(Address.parse('Jürgen@Bücher.example').toString(), 'jürgen@bücher.example');
    });

    it('Address.of normalises each part like parse', () => {
      assert.ok(
        Address.of('Alice', 'EXAMPLE.com', 'R').equals(Address.parse('alice@example.com/R')),
      );
    });
  });

  describe('forbidden characters [RFC7622 3.3.1]', function () {
    for (const ch of ['"', '&', "'", ':', '<', '>', ' ', '\t']) {
      it(`${JSON.stringify(ch)} in a localpart → jid-malformed`, () => {
        assert.throws(() => Address.of(`al${ch}ice`, 'example.com'), BrokerError);
      });
    }

    it("'/' in a localpart (via Address.of) → jid-malformed [RFC7622 3.3.1]", () => {
      assert.throws(() => Address.of('a/b', 'example.com'), BrokerError);
    });

    it("'@' in a localpart (via Address.of) → jid-malformed [RFC7622 3.3.1]", () => {
      assert.throws(() => Address.of('a@b', 'example.com'), BrokerError);
    });

    it('control characters in a localpart or resource → jid-malformed [RFC7622 3.3.1, 3.4.1]', () => {
      malformed('al\u0000ice@example.com');
      malformed('alice@example.com/r\u0007');
      malformed('alice@example.com/r\u007f');
    });

    it('spaces are allowed inside a resource [RFC7622 3.4.1]', () => {
      assert.equal(Address.parse('alice@example.com/my phone').resource, 'my phone');
    });
  });

  describe('lengths: at most 1023 octets per part [RFC7622 3.2, 3.3, 3.4]', function () {
    it('localpart of 1023 octets passes, 1024 fails', () => {
      assert.equal(Address.parse(`${'a'.repeat(1023)}@example.com`).local.length, 1023);
      malformed(`${'a'.repeat(1024)}@example.com`);
    });

    it('octets, not characters, are counted: 512 two-byte characters (1024 octets) fail', () => {
      malformed(`${'é'.repeat(512)}@example.com`);
      assert.equal(Address.parse(`${'é'.repeat(511)}@example.com`).local.length, 511);
    });

    it('resource of 1023 octets passes, 1024 fails', () => {
      assert.equal(Address.parse(`a@example.com/${'r'.repeat(1023)}`).resource.length, 1023);
      malformed(`a@example.com/${'r'.repeat(1024)}`);
    });

    it('domain of more than 1023 octets fails', () => {
      const label = 'a'.repeat(60);
      const domain = Array.from({ length: 17 }, () => label).join('.'); // 1036 octets
      malformed(`alice@${domain}`);
    });
  });

  describe('helpers', function () {
    it('tryParse returns undefined instead of throwing, and for undefined', () => {
      assert.equal(Address.tryParse('a@b@c'), undefined);
      assert.equal(Address.tryParse(undefined), undefined);
      assert.equal(Address.tryParse('a@b')?.toString(), 'a@b');
    });

    it('bare, withResource, isBare, isDomain, equals', () => {
      const full = Address.parse('alice@example.com/phone');
      assert.equal(full.bare().toString(), 'alice@example.com');
      assert.equal(full.isBare, false);
      assert.equal(full.bare().isBare, true);
      assert.equal(full.bare().isDomain, false);
      assert.equal(Address.parse('example.com').isDomain, true);
      assert.equal(Address.parse('example.com/r').isDomain, false);
      assert.equal(full.bare().withResource('pc').toString(), 'alice@example.com/pc');
      assert.ok(full.equals(Address.parse('ALICE@example.com/phone')));
      assert.ok(
        !full.equals(Address.parse('alice@example.com/Phone')),
        'resources are case-sensitive',
      );
      assert.ok(!full.equals(undefined));
    });

    it('withResource validates the resource', () => {
      assert.throws(() => Address.parse('a@b').withResource('x\u0000'), BrokerError);
    });
  });
});

describe('Address parse cache', function () {
  this.timeout(60_000);

  it('does not keep alive the text a JID or a domain was sliced from', async () => {
    // A child with --expose-gc: 2,000 JIDs, each sliced from its own 100 KB
    // string (as an attribute value is from a chunk read off a socket), go
    // through the cache. Pinned, the big strings would be ~200 MB.
    const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
    const child = `
      import { Address } from './broker/address.ts';
      const used = () => { globalThis.gc(); globalThis.gc(); return process.memoryUsage().heapUsed; };
      const before = used();
      const kept = [];
      for (let i = 0; i < 2000; i++) {
        const jid = 'user' + i + '@example.com/resource';
        const chunk = jid + '"/><body>' + 'x'.repeat(100_000) + '</body>';
        kept.push(Address.parse(chunk.slice(0, jid.length)));
      }
      const grown = used() - before;
      // Address.of's domain cache (1,000 entries) keeps what it is given the same way.
      const before2 = used();
      for (let i = 0; i < 900; i++) {
        const domain = 'host' + i + '.example.com';
        const chunk = domain + '"/><body>' + 'x'.repeat(100_000) + '</body>';
        kept.push(Address.of('alice', chunk.slice(0, domain.length)));
      }
      const grownOf = used() - before2;
      console.log(JSON.stringify({ grown, grownOf, last: kept[1999].toString(), lastOf: kept[2899].toString(), hit: Address.parse('user5@example.com/resource') === kept[5] }));
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', child],
      { cwd: repo, timeout: 60_000 },
    );
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as {
      grown: number;
      grownOf: number;
      last: string;
      lastOf: string;
      hit: boolean;
    };
    assert.equal(out.last, 'user1999@example.com/resource');
    assert.equal(out.lastOf, 'alice@host899.example.com');
    assert.ok(
      out.grownOf < 10 * 1024 * 1024,
      `heap grew by ${Math.round(out.grownOf / 1024 / 1024)} MB for 900 cached domains`,
    );
    assert.equal(out.hit, true, 'an equal JID is still a cache hit');
    assert.ok(
      out.grown < 20 * 1024 * 1024,
      `heap grew by ${Math.round(out.grown / 1024 / 1024)} MB for 2,000 cached JIDs`,
    );
  });

  describe('localpart: PRECIS IdentifierClass rules [RFC8264 4.2] [RFC8265 3.3]', function () {
    it('refuses bidirectional controls in the localpart and the resource [RFC8264 9.13]', function () {
      for (const c of [
        '\u202a',
        '\u202b',
        '\u202c',
        '\u202d',
        '\u202e',
        '\u2066',
        '\u2067',
        '\u2068',
        '\u2069',
        '\u200e',
        '\u200f',
        '\u061c',
      ]) {
        malformed(`al${c}ice@example.com`);
        malformed(`alice@example.com/ph${c}one`);
        assert.throws(() => Address.of(`x${c}`, 'example.com'), BrokerError);
      }
    });

    it('refuses default-ignorable, format, symbol and space characters outside ASCII [RFC8264 9.13, 4.2]', function () {
      for (const c of [
        '\u200b',
        '\u200d',
        '\u00ad',
        '\u2060',
        '\ufeff',
        '\u2603',
        '\u00a0',
        '\u3000',
        '\ue000',
        '\u2014',
      ])
        malformed(`a${c}b@example.com`);
    });

    it('keeps letters, digits, marks and printable ASCII, case-folded', function () {
      for (const [input, local] of [
        ['Alice.Smith-1_2@example.com', 'alice.smith-1_2'],
        ['JÜRGEN@example.com', 'jürgen'],
        ['ｆｕｌｌ@example.com', 'full'], // width mapping through NFKC
        ['中文@example.com', '中文'],
        ['שלום@example.com', 'שלום'],
        ['مرحبا1@example.com', 'مرحبا1'],
        ['a+b!#$%*=?^`{|}~@example.com', 'a+b!#$%*=?^`{|}~'],
      ] as const)
        assert.equal(Address.parse(input).local, local, input);
    });

    it('a right-to-left localpart must start with a right-to-left letter and hold no left-to-right letter [RFC5893 2]', function () {
      malformed('שלוםabc@example.com');
      malformed('abcשלום@example.com');
      malformed('1שלום@example.com');
    });
  });
});
