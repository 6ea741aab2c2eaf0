/**
 * adapters/xmpp/bosh-wire.ts: an HTTP request body → a BOSH request or a
 * bad-request. Contract:
 * - parseRequest never throws; `ok: false` carries a text, `ok: true` a
 *   positive safe-integer rid and an ack that is a safe integer when present;
 * - what the session then builds from the wrapper (lowerVersion,
 *   xboshAttr, streamHeader) never throws, and the stream header plus the
 *   re-serialised payloads, fed to the connection's own stream parser as
 *   bosh-session.ts does, parse without a well-formedness or namespace error
 *   (re-serialisation must not change what a stanza means).
 */
import {
  BOSH_VERSION,
  lowerVersion,
  parseRequest,
  streamHeader,
  uintAttr,
  xboshAttr,
} from '../../adapters/xmpp/bosh-wire.ts';
import { StreamParser, type ParseFailure } from '../../adapters/xmpp/parser.ts';
import { check, type FuzzTarget } from '../target.ts';

const limits = { maxStanzaSize: 4096, maxDepth: 8 };

export const target: FuzzTarget = {
  about:
    'BOSH <body/> parser: never throws, rid/ack checked, payloads re-parse cleanly behind the stream header',
  cover: ['/adapters/xmpp/bosh-wire.ts', '/adapters/xmpp/parser.ts', '/saxes/', '/ltx/'],
  dict: [
    "<body xmlns='http://jabber.org/protocol/httpbind'",
    "xmlns:xmpp='urn:xmpp:xbosh'",
    " xmpp:version='1.0'",
    " xmpp:restart='true'",
    " rid='1'",
    " rid='9007199254740991'",
    " rid='9007199254740992'",
    " sid='abc'",
    " ack='1'",
    " ver='1.6'",
    " wait='60'",
    " hold='1'",
    " to='localhost'",
    " type='terminate'",
    " xml:lang='en'",
    '</body>',
    '/>',
    "<message xmlns='jabber:client' to='a@localhost'><body>x</body></message>",
    '<presence/>',
    "<a:x xmlns:a='urn:a'/>",
    ' xmlns=',
    ' xmlns:p=',
    '<p:q',
    '<stream:features/>',
    '<![CDATA[',
    '&amp;',
    '&#x27;',
    '<!--',
    '<?',
  ],
  maxLen: 8192,
  fuzz(data) {
    const text = data.toString('utf8');
    const r = parseRequest(text, limits);
    if (!r.ok) {
      check(typeof r.text === 'string' && r.text.length > 0, 'bad-request without a text');
      return;
    }
    const b = r.body;
    check(Number.isSafeInteger(b.rid) && b.rid > 0, `rid ${b.rid}`);
    check(b.ack === undefined || Number.isSafeInteger(b.ack), `ack ${b.ack}`);
    const a = b.attrs;
    // What BoshService.create and BoshSession do with the wrapper.
    if (a.ver !== undefined) lowerVersion(a.ver, BOSH_VERSION);
    uintAttr(a.wait);
    uintAttr(a.hold);
    const version = xboshAttr(a, 'version') ?? '1.0';
    (a.to ?? 'localhost').toLowerCase();
    if (b.failure) return;
    let failed: ParseFailure | undefined;
    let why = '';
    let stanzas = 0;
    const p = new StreamParser(
      {
        streamOpened: () => {},
        stanzaParsed: () => stanzas++,
        streamClosed: () => {},
        parseFailed: (c, t) => {
          failed = c;
          why = t;
        },
      },
      // Escaping and added declarations may grow a stanza: size is not what is checked here.
      { maxStanzaSize: 1 << 20, maxDepth: limits.maxDepth + 1 },
    );
    p.write(streamHeader({ to: a.to ?? 'localhost', version, lang: a['xml:lang'], from: a.from }));
    p.write(b.payloads.join(''));
    check(
      failed === undefined,
      `payloads re-parsed behind the stream header fail with ${failed}: ${why}\n${b.payloads.join('')}`,
    );
    check(
      stanzas === b.payloads.length,
      `${b.payloads.length} payloads re-parsed as ${stanzas} stanzas`,
    );
  },
};
