/**
 * StreamParser on its own: chunking, limits and RFC 6120 §11.1 restricted XML.
 */
import assert from 'node:assert/strict';
import type { Element } from '@xmpp/xml';
import {
  NS_CLIENT,
  NS_STREAM,
  StreamParser,
  type ParseFailure,
  type StreamParserLimits,
} from '../parser.ts';

const HEADER = `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' to='localhost' version='1.0'>`;

interface Recorded {
  opens: { name: string; uri: string; attrs: Record<string, string> }[];
  stanzas: Element[];
  closes: number;
  errors: { condition: ParseFailure; text: string }[];
}

function make(limits: Partial<StreamParserLimits> = {}): { parser: StreamParser; rec: Recorded } {
  const rec: Recorded = { opens: [], stanzas: [], closes: 0, errors: [] };
  const parser = new StreamParser(
    {
      streamOpened: (name, uri, attrs) => rec.opens.push({ name, uri, attrs }),
      stanzaParsed: (el) => rec.stanzas.push(el),
      streamClosed: () => rec.closes++,
      parseFailed: (condition, text) => rec.errors.push({ condition, text }),
    },
    { maxStanzaSize: 1024, maxDepth: 8, ...limits },
  );
  return { parser, rec };
}

/** Feed a string as UTF-8 bytes, one byte per write. */
function byteByByte(parser: StreamParser, s: string): void {
  const buf = Buffer.from(s, 'utf8');
  for (let i = 0; i < buf.length; i++) parser.write(buf.subarray(i, i + 1));
}

const conditions = (rec: Recorded): ParseFailure[] => rec.errors.map((e) => e.condition);

describe('xmpp StreamParser', function () {
  describe('stream header and stanzas', function () {
    it('reports the header with its namespace and declared attributes [RFC6120 4.7]', () => {
      const { parser, rec } = make();
      parser.write(HEADER);
      assert.equal(rec.opens.length, 1);
      assert.equal(rec.opens[0].name, 'stream:stream');
      assert.equal(rec.opens[0].uri, NS_STREAM);
      assert.equal(rec.opens[0].attrs.xmlns, NS_CLIENT);
      assert.equal(rec.opens[0].attrs.to, 'localhost');
      assert.equal(rec.opens[0].attrs.version, '1.0');
    });

    it('a top-level element inherits the content namespace as an explicit xmlns (re-serialisable alone)', () => {
      const { parser, rec } = make();
      parser.write(
        `${HEADER}<message to='bob@localhost'><body>hi</body><x xmlns='urn:x'/></message>`,
      );
      assert.equal(rec.stanzas.length, 1);
      const el = rec.stanzas[0];
      assert.equal(el.attrs.xmlns, NS_CLIENT);
      assert.equal(el.getChildText('body'), 'hi');
      assert.equal(el.getChild('x')?.attrs.xmlns, 'urn:x');
    });

    it('whitespace between stanzas is allowed (whitespace keepalives)', () => {
      const { parser, rec } = make();
      parser.write(`${HEADER}  \n<presence/>\n\t <presence/> `);
      assert.equal(rec.stanzas.length, 2);
      assert.deepEqual(rec.errors, []);
    });

    it('</stream:stream> reports close once, after the stanzas before it [RFC6120 4.4]', () => {
      const { parser, rec } = make();
      parser.write(`${HEADER}<presence/></stream:stream>`);
      assert.equal(rec.stanzas.length, 1);
      assert.equal(rec.closes, 1);
      parser.write('<presence/>');
      assert.equal(rec.stanzas.length, 1, 'nothing after the close');
    });

    it('predefined and character entities are allowed and decoded [RFC6120 11.1]', () => {
      const { parser, rec } = make();
      parser.write(`${HEADER}<message><body>&lt;&amp;&gt;&quot;&apos;&#65;&#x42;</body></message>`);
      assert.deepEqual(rec.errors, []);
      assert.equal(rec.stanzas[0].getChildText('body'), `<&>"'AB`);
    });

    it('CDATA text is kept', () => {
      const { parser, rec } = make();
      parser.write(`${HEADER}<message><body><![CDATA[a<b]]></body></message>`);
      assert.equal(rec.stanzas[0].getChildText('body'), 'a<b');
    });
  });

  describe('chunking', function () {
    it('a stanza split byte by byte, with a multibyte UTF-8 character split across chunks, parses once', () => {
      const { parser, rec } = make();
      parser.write(HEADER);
      // € is 3 bytes, 😀 is 4: both straddle chunk boundaries when fed one byte at a time
      byteByByte(parser, `<message to='bob@localhost' id='ü'><body>price: 5 € 😀</body></message>`);
      assert.deepEqual(rec.errors, []);
      assert.equal(rec.stanzas.length, 1);
      assert.equal(rec.stanzas[0].getChildText('body'), 'price: 5 € 😀');
      assert.equal(rec.stanzas[0].attrs.id, 'ü');
    });

    it('the header itself may arrive byte by byte', () => {
      const { parser, rec } = make();
      byteByByte(parser, `${HEADER}<presence/>`);
      assert.equal(rec.opens.length, 1);
      assert.equal(rec.stanzas.length, 1);
    });

    it('a multibyte character split across two Buffers (2 + 2 bytes) is decoded, not replaced', () => {
      const { parser, rec } = make();
      parser.write(HEADER);
      const bytes = Buffer.from('<message><body>😀</body></message>', 'utf8');
      const at = bytes.indexOf(0xf0) + 2;
      parser.write(bytes.subarray(0, at));
      parser.write(bytes.subarray(at));
      assert.equal(rec.stanzas[0].getChildText('body'), '😀');
    });

    it('several stanzas in one chunk come out in order', () => {
      const { parser, rec } = make();
      parser.write(
        `${HEADER}<iq id='1' type='get'><ping xmlns='urn:xmpp:ping'/></iq><iq id='2' type='get'><ping xmlns='urn:xmpp:ping'/></iq><iq id='3' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`,
      );
      assert.deepEqual(
        rec.stanzas.map((s) => s.attrs.id),
        ['1', '2', '3'],
      );
    });

    it('nothing from a chunk that turns out malformed is handed out, not even the good stanza before the fault', () => {
      const { parser, rec } = make();
      parser.write(HEADER);
      parser.write(`<presence id='good'/><message><body>x</message>`);
      assert.deepEqual(conditions(rec), ['not-well-formed']);
      assert.equal(rec.stanzas.length, 0);
    });

    it('stops at the first failure: one error, nothing afterwards', () => {
      const { parser, rec } = make();
      parser.write(`${HEADER}<!-- a --><!-- b -->`);
      parser.write('<presence/>');
      assert.equal(rec.errors.length, 1);
      assert.equal(rec.stanzas.length, 0);
    });
  });

  describe('limits', function () {
    /** A message of exactly n characters. */
    const sized = (n: number): string => {
      const shell = `<message><body></body></message>`;
      return `<message><body>${'x'.repeat(n - shell.length)}</body></message>`;
    };

    it('a stanza of exactly maxStanzaSize characters passes; one more is policy-violation [RFC6120 4.9.3.14]', () => {
      const ok = make({ maxStanzaSize: 500 });
      ok.parser.write(HEADER);
      ok.parser.write(sized(500));
      assert.deepEqual(ok.rec.errors, []);
      assert.equal(ok.rec.stanzas.length, 1);
      const big = make({ maxStanzaSize: 500 });
      big.parser.write(HEADER);
      big.parser.write(sized(501));
      assert.deepEqual(conditions(big.rec), ['policy-violation']);
      assert.equal(big.rec.stanzas.length, 0);
    });

    it('the limit is per stanza: many stanzas just under it pass [RFC6120 4.9.3.14]', () => {
      const { parser, rec } = make({ maxStanzaSize: 500 });
      parser.write(HEADER);
      for (let i = 0; i < 20; i++) parser.write(sized(490));
      assert.deepEqual(rec.errors, []);
      assert.equal(rec.stanzas.length, 20);
    });

    it('an unfinished stanza is cut off as soon as it passes the limit, without waiting for its end', () => {
      const { parser, rec } = make({ maxStanzaSize: 500 });
      parser.write(`${HEADER}<message><body>`);
      for (let i = 0; i < 6 && rec.errors.length === 0; i++) parser.write('y'.repeat(100));
      assert.deepEqual(conditions(rec), ['policy-violation']);
    });

    it('the limit holds inside one large chunk (bigger than the 16 KiB slice)', () => {
      const { parser, rec } = make({ maxStanzaSize: 20_000 });
      parser.write(`${HEADER}<message><body>${'z'.repeat(100_000)}</body></message>`);
      assert.deepEqual(conditions(rec), ['policy-violation']);
      assert.equal(rec.stanzas.length, 0);
    });

    it('whitespace between stanzas counts too (no unbounded keepalive flood)', () => {
      const { parser, rec } = make({ maxStanzaSize: 500 });
      parser.write(HEADER);
      parser.write(' '.repeat(600));
      assert.deepEqual(conditions(rec), ['policy-violation']);
    });

    it('maxDepth levels inside a stanza pass; one more is policy-violation [RFC6120 4.9.3.14]', () => {
      const nest = (n: number): string =>
        `<message>${'<a>'.repeat(n - 1)}${'</a>'.repeat(n - 1)}</message>`;
      const ok = make({ maxDepth: 8 });
      ok.parser.write(HEADER + nest(8));
      assert.deepEqual(ok.rec.errors, []);
      assert.equal(ok.rec.stanzas.length, 1);
      const deep = make({ maxDepth: 8 });
      deep.parser.write(HEADER + nest(9));
      assert.deepEqual(conditions(deep.rec), ['policy-violation']);
    });
  });

  describe('released between stanzas (idle streams)', function () {
    /** Feed the chunks, releasing the saxes parser after each one when asked; what came out, and how many releases. */
    const feed = (
      chunks: (string | Buffer)[],
      release: boolean,
      limits: Partial<StreamParserLimits> = {},
    ) => {
      const { parser, rec } = make(limits);
      let released = 0;
      for (const c of chunks) {
        parser.write(c);
        if (release && parser.release()) released++;
      }
      return {
        released,
        opens: rec.opens.length,
        stanzas: rec.stanzas.map((s) => s.toString()),
        closes: rec.closes,
        errors: rec.errors,
      };
    };
    /** The same chunks give the same stanzas, close and errors (texts with line and column included) with and without releases. */
    const same = (chunks: (string | Buffer)[], limits: Partial<StreamParserLimits> = {}) => {
      const plain = feed(chunks, false, limits);
      const released = feed(chunks, true, limits);
      assert.ok(released.released > 0, 'released at least once');
      assert.deepEqual({ ...released, released: 0 }, plain);
      return plain;
    };

    it('stanzas after a release parse as before, with the namespaces and prefixes the header declared', () => {
      const header = `<?xml version='1.0'?><s:stream xmlns:s='${NS_STREAM}' xmlns='${NS_CLIENT}' xmlns:e='urn:example' to='localhost' version='1.0'>`;
      const out = same([
        header,
        `<presence/>`,
        `\n <message id='1'><e:x e:a='1'/><body>é</body></message>`,
        ` `,
        `<iq id='2'/>`,
        `</s:stream>`,
      ]);
      assert.equal(out.stanzas.length, 3);
      assert.match(out.stanzas[1], /<e:x e:a="1" xmlns:e="urn:example"\/>/);
      assert.equal(out.closes, 1);
    });

    it('an error after a release reports the same line and column', () => {
      const out = same([HEADER, `\n<presence/>\n`, `  \n\t `, ` <message to=bob/>`]);
      assert.deepEqual(conditions(out as unknown as Recorded), ['not-well-formed']);
      assert.match(out.errors[0].text, /^4:/);
    });

    it('text outside a stanza after a release is still not-well-formed', () => {
      same([HEADER, `<presence/>`, `  hello<presence/>`]);
    });

    it('whitespace while released counts toward maxStanzaSize as before', () => {
      const out = same([HEADER, `<presence/>`, ' '.repeat(200), ' '.repeat(200)], {
        maxStanzaSize: 500,
      });
      assert.deepEqual(conditions(out as unknown as Recorded), ['policy-violation']);
      const ok = same([HEADER, `<presence/>`, ' '.repeat(100), ' '.repeat(100), `<presence/>`], {
        maxStanzaSize: 500,
      });
      assert.equal(ok.stanzas.length, 2);
      assert.deepEqual(ok.errors, []);
    });

    it('an XML 1.1 stream stays XML 1.1 after a release', () => {
      const header = `<?xml version='1.1'?>${HEADER.slice(21)}`;
      const out = same([header, `<presence/>`, `<message><body>&#1;</body></message>`]);
      assert.deepEqual(out.errors, []);
      assert.equal(out.stanzas.length, 2);
    });

    it('nothing is released inside a stanza, or before the header', () => {
      const { parser, rec } = make();
      parser.write(`<?xml version='1.0'?>`);
      assert.equal(parser.release(), false);
      parser.write(`${HEADER.slice(21)}<message><body>`);
      assert.equal(parser.release(), false);
      parser.write(`hi</body></message>`);
      assert.equal(parser.release(), true);
      assert.equal(rec.stanzas[0].getChildText('body'), 'hi');
    });
  });

  describe('restricted XML [RFC6120 11.1]', function () {
    const rows: [string, string, ParseFailure][] = [
      ['comment between stanzas', `${HEADER}<!-- hi -->`, 'restricted-xml'],
      ['comment inside a stanza', `${HEADER}<message><!-- hi --></message>`, 'restricted-xml'],
      ['processing instruction', `${HEADER}<?php echo 1 ?>`, 'restricted-xml'],
      [
        'processing instruction before the header',
        `<?xml version='1.0'?><?xml-stylesheet href='x'?>${HEADER.slice(21)}`,
        'restricted-xml',
      ],
      [
        'DOCTYPE before the header',
        `<?xml version='1.0'?><!DOCTYPE stream:stream>${HEADER.slice(21)}`,
        'restricted-xml',
      ],
      [
        'DOCTYPE with entity declarations (billion laughs)',
        `<?xml version='1.0'?><!DOCTYPE s [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>${HEADER.slice(21)}<message><body>&b;</body></message>`,
        'restricted-xml',
      ],
      [
        'undefined entity in text',
        `${HEADER}<message><body>&nbsp;</body></message>`,
        'restricted-xml',
      ],
      ['undefined entity in an attribute', `${HEADER}<message id='&x;'/>`, 'restricted-xml'],
      [
        'external entity reference',
        `${HEADER}<message><body>&xxe;</body></message>`,
        'restricted-xml',
      ],
      ['unbound prefix', `${HEADER}<a:message/>`, 'bad-namespace-prefix'],
      ['mismatched tags', `${HEADER}<message></presence>`, 'not-well-formed'],
      ['text outside a stanza', `${HEADER}hello<presence/>`, 'not-well-formed'],
      ['unquoted attribute', `${HEADER}<message to=bob/>`, 'not-well-formed'],
      ['duplicate attribute', `${HEADER}<message to='a' to='b'/>`, 'not-well-formed'],
      ['invalid character', `${HEADER}<message><body>\u0001</body></message>`, 'not-well-formed'],
    ];
    for (const [what, input, condition] of rows) {
      it(`${what} → ${condition}`, () => {
        const { parser, rec } = make();
        parser.write(input);
        assert.deepEqual(conditions(rec), [condition]);
        assert.equal(rec.stanzas.length, 0);
      });
    }
  });
});

describe('xmpp StreamParser: prototype-named prefixes (issue 20 item 14 class)', function () {
  for (const prefix of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
    it(`a prefix named ${prefix} declared deep in a stanza stays bound to its own namespace, never to an Object.prototype member`, () => {
      const { parser, rec } = make();
      parser.write(HEADER.replace('<stream:stream ', "<stream:stream xmlns:foo='urn:foo' "));
      // declared on a grandchild: the child's prefixes are looked up in the stanza's and the header's declarations
      parser.write(
        `<message to='a@localhost'><x><z xmlns:${prefix}='urn:test'><${prefix}:y/></z></x></message>`,
      );
      assert.deepEqual(conditions(rec), []);
      assert.equal(rec.stanzas.length, 1);
      const xml = rec.stanzas[0].toString(); // throws if an attribute became a function
      assert.ok(!xml.includes('native code'), xml);
      const child = rec.stanzas[0].getChildElements()[0];
      for (const v of Object.values(child.attrs)) assert.equal(typeof v, 'string');
    });
  }
});
