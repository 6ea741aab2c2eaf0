/**
 * adapters/xmpp/parser.ts: raw bytes of a c2s stream → stream header,
 * stanzas, close, or one parse failure. Contract:
 * - write() and release() never throw; a failure arrives only through
 *   parseFailed, once, with one of the ParseFailure conditions, and nothing
 *   follows it;
 * - no stanza is deeper than maxDepth, and the output is bounded by the input;
 * - how the bytes are cut into chunks, and whether the parser was released
 *   between stanzas, changes nothing when the stream stays well-formed.
 */
import type { Element } from '@xmpp/xml';
import { StreamParser, type ParseFailure } from '../../adapters/xmpp/parser.ts';
import { check, splitPoints, type FuzzTarget } from '../target.ts';

const CONDITIONS = new Set<ParseFailure>([
  'not-well-formed',
  'restricted-xml',
  'policy-violation',
  'bad-namespace-prefix',
]);

interface Outcome {
  opened?: string;
  stanzas: string[];
  closed: number;
  failed?: ParseFailure;
  events: number;
}

function depth(e: Element): number {
  let d = 0;
  for (const c of e.children) if (typeof c !== 'string') d = Math.max(d, depth(c));
  return d + 1;
}

function parse(
  data: Buffer,
  cuts: number[] | undefined,
  release: boolean,
  limits: { maxStanzaSize: number; maxDepth: number },
): Outcome {
  const out: Outcome = { stanzas: [], closed: 0, events: 0 };
  const p = new StreamParser(
    {
      streamOpened: (name, uri, attrs) => {
        check(out.failed === undefined, 'event after parseFailed');
        check(out.opened === undefined, 'two stream headers');
        out.events++;
        out.opened = `${name} ${uri} ${JSON.stringify(attrs)}`;
      },
      stanzaParsed: (el) => {
        check(out.failed === undefined, 'stanza after parseFailed');
        check(out.closed === 0, 'stanza after the stream closed');
        check(depth(el) <= limits.maxDepth, `stanza deeper than maxDepth ${limits.maxDepth}`);
        out.events++;
        out.stanzas.push(el.toString());
      },
      streamClosed: () => {
        check(out.failed === undefined, 'close after parseFailed');
        out.events++;
        out.closed++;
      },
      parseFailed: (condition) => {
        check(out.failed === undefined, 'parseFailed twice');
        check(CONDITIONS.has(condition), `unknown condition ${condition}`);
        out.failed = condition;
      },
    },
    limits,
  );
  let at = 0;
  for (const cut of cuts ?? [data.length]) {
    p.write(data.subarray(at, cut));
    at = cut;
    if (release) p.release();
  }
  check(out.closed <= 1, 'streamClosed more than once');
  return out;
}

export const target: FuzzTarget = {
  about:
    'XMPP stream parser: never throws, fails once with a stream error condition, chunking/release-invariant',
  cover: ['/adapters/xmpp/parser.ts', '/saxes/', '/ltx/'],
  dict: [
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    '</stream:stream>',
    '<message',
    '</message>',
    '<presence/>',
    "<iq type='get' id='1'>",
    '</iq>',
    '<body>',
    '</body>',
    ' xmlns=',
    ' xmlns:a=',
    ' xml:lang=',
    "'urn:x'",
    '<a:b',
    '</a:b>',
    '/>',
    '>',
    '<',
    '</',
    '<![CDATA[',
    ']]>',
    '<!--',
    '-->',
    '<?xml version="1.0"?>',
    "<?xml version='1.1'?>",
    '<!DOCTYPE x [<!ENTITY a "b">]>',
    '&amp;',
    '&lt;',
    '&#x41;',
    '&#0;',
    '&#x10FFFF;',
    '&a;',
    '\r\n',
    '\r',
    '  \n\t',
    '\u0085',
    '\u2028',
  ],
  maxLen: 8192,
  fuzz(data) {
    const seed = data.length ? data[data.length - 1] : 0;
    const cuts = splitPoints(data, seed);
    // Small limits, random cuts and releases: only the documented failure path.
    const small = { maxStanzaSize: 1024, maxDepth: 6 };
    const a = parse(data, cuts, seed % 2 === 0, small);
    let out = 0;
    for (const s of a.stanzas) out += s.length;
    // Escaping can grow a character into 6 (" → &quot;) and each stanza gains its xmlns.
    check(
      out <= data.length * 6 + a.stanzas.length * 64,
      `output ${out} chars from ${data.length} bytes`,
    );
    // Large limits: the whole input at once, and cut up with releases between writes, must agree.
    const big = { maxStanzaSize: 1 << 20, maxDepth: 64 };
    const whole = parse(data, undefined, false, big);
    const cut = parse(data, cuts, true, big);
    if (whole.failed === undefined && cut.failed === undefined) {
      check(
        whole.opened === cut.opened,
        `stream header differs when chunked: ${whole.opened} / ${cut.opened}`,
      );
      check(whole.closed === cut.closed, 'stream close differs when chunked');
      check(
        whole.stanzas.length === cut.stanzas.length,
        `${whole.stanzas.length} stanzas whole, ${cut.stanzas.length} chunked`,
      );
      for (let i = 0; i < whole.stanzas.length; i++)
        check(
          whole.stanzas[i] === cut.stanzas[i],
          `stanza ${i} differs when chunked:\n${whole.stanzas[i]}\n${cut.stanzas[i]}`,
        );
    } else {
      check(
        (whole.failed === undefined) === (cut.failed === undefined) ||
          whole.failed === 'policy-violation' ||
          cut.failed === 'policy-violation',
        `failure depends on chunking: whole ${whole.failed}, chunked ${cut.failed}`,
      );
    }
  },
};
