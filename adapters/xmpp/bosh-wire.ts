import { escapeXML, type Element } from '@xmpp/xml';
import { StreamParser, type ParseFailure, type StreamParserLimits } from './parser.ts';
import { NS_CLIENT, NS_HTTPBIND, NS_STREAM, NS_XBOSH } from './ns.ts';

/** The BOSH wrapper namespace [XEP-0124 §6] and XMPP-specific BOSH attributes [XEP-0206 §3-5]. */
export { NS_HTTPBIND, NS_XBOSH };
/** The highest BOSH version implemented [XEP-0124 §7.2 'ver']. */
export const BOSH_VERSION = '1.11';
/** Without a 'content' attribute in the session request [XEP-0124 §7.1]. */
export const DEFAULT_CONTENT_TYPE = 'text/xml; charset=utf-8';

/** Terminal binding conditions [XEP-0124 §17.2]. */
export type TerminalCondition =
  | 'bad-request'
  | 'host-gone'
  | 'host-unknown'
  | 'improper-addressing'
  | 'internal-server-error'
  | 'item-not-found'
  | 'other-request'
  | 'policy-violation'
  | 'remote-connection-failed'
  | 'remote-stream-error'
  | 'see-other-uri'
  | 'system-shutdown'
  | 'undefined-condition';

/** [XEP-0124 §17.1, §17.2 footnote] the deprecated HTTP codes a legacy client (no 'ver' in its session request) gets instead. */
export const LEGACY_STATUS: Partial<Record<TerminalCondition, number>> = {
  'bad-request': 400,
  'policy-violation': 403,
  'item-not-found': 404,
};

/** Answers one HTTP request; called at most once per request by the session or the service. */
export type Reply = (xml: string, status: number, contentType: string) => void;

/** One request `<body/>`, parsed and checked [XEP-0124 §6]. */
export interface BoshRequest {
  /** the wrapper's attributes by qualified name, namespace declarations included */
  attrs: Record<string, string>;
  sid?: string;
  rid: number;
  /** the client's response acknowledgement [XEP-0124 §9.2] */
  ack?: number;
  terminate: boolean;
  /** xmpp:restart='true' [XEP-0206 §5] */
  restart: boolean;
  /** the children, serialised one by one, for the connection's own parser */
  payloads: string[];
  /** the content broke a rule of the XMPP stream parser (restricted XML, size, depth): a stream error */
  failure?: { condition: ParseFailure; text: string };
}

export type ParseResult =
  { ok: true; body: BoshRequest } | { ok: false; text: string; attrs?: Record<string, string> };

/** A non-negative integer attribute no larger than 2^53-1 [XEP-0124 §14.1]; undefined if absent or malformed. */
export function uintAttr(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,16}$/.test(v)) return undefined;
  const n = Number(v);
  return n <= Number.MAX_SAFE_INTEGER ? n : undefined;
}

/** An attribute qualified by urn:xmpp:xbosh, whatever prefix the client bound to it. */
export function xboshAttr(attrs: Record<string, string>, local: string): string | undefined {
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('xmlns:') && v === NS_XBOSH) {
      const value = attrs[`${k.slice(6)}:${local}`];
      if (value !== undefined) return value;
    }
  }
  return undefined;
}

/**
 * Parse a request body with the XMPP stream parser: the `<body/>` wrapper
 * plays the stream header, its children the stanzas, so restricted XML
 * [RFC6120 11.1], the stanza size and nesting limits apply as on TCP.
 * Wrapper problems are `ok: false` (bad-request); content problems are kept
 * in `failure` and become the stream error they would be on TCP.
 */
export function parseRequest(text: string, limits: StreamParserLimits): ParseResult {
  const got: {
    root?: { name: string; uri: string; attrs: Record<string, string> };
    closed: boolean;
    failure?: BoshRequest['failure'];
  } = { closed: false };
  const payloads: string[] = [];
  const parser = new StreamParser(
    {
      streamOpened: (name, uri, attrs) => (got.root = { name, uri, attrs }),
      stanzaParsed: (el) => payloads.push(payloadXml(el)),
      streamClosed: () => (got.closed = true),
      parseFailed: (condition, t) => (got.failure = { condition, text: t }),
    },
    limits,
  );
  parser.write(text);
  const { root, failure } = got;
  if (!root) return { ok: false, text: failure?.text ?? 'no <body/> element' };
  const { name, uri, attrs } = root;
  if (uri !== NS_HTTPBIND || name.replace(/^[^:]*:/, '') !== 'body')
    return { ok: false, text: `root must be <body xmlns='${NS_HTTPBIND}'/>`, attrs }; // [XEP-0124 §6]
  if (!failure && !got.closed) return { ok: false, text: 'partial <body/>', attrs }; // [XEP-0124 §6] no partial elements
  const rid = uintAttr(attrs.rid);
  if (rid === undefined || rid === 0)
    return { ok: false, text: "'rid' missing or not a positive integer", attrs }; // [XEP-0124 §6, §14.1]
  const ack = uintAttr(attrs.ack);
  if (attrs.ack !== undefined && ack === undefined)
    return { ok: false, text: "'ack' is not an integer", attrs };
  const restart = xboshAttr(attrs, 'restart');
  return {
    ok: true,
    body: {
      attrs,
      sid: attrs.sid,
      rid,
      ack,
      terminate: attrs.type === 'terminate',
      restart: restart === 'true' || restart === '1',
      payloads,
      failure,
    },
  };
}

/**
 * COMPAT: many clients leave message/presence/iq unqualified inside `<body/>`,
 * meaning jabber:client [XEP-0206 §2 note]; the stream parser gave them the
 * wrapper's namespace, which is put back to jabber:client here.
 */
function payloadXml(el: Element): string {
  if (el.attrs.xmlns === NS_HTTPBIND) el.attrs.xmlns = NS_CLIENT;
  return el.toString();
}

/** A response `<body/>`; undefined attributes are left out. */
export function bodyXml(
  attrs: Record<string, string | number | undefined>,
  payloads: string[] = [],
): string {
  let s = `<body xmlns='${NS_HTTPBIND}'`;
  let xbosh = false;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (k.startsWith('xmpp:')) xbosh = true;
    s += ` ${k}='${escapeXML(String(v))}'`;
  }
  if (xbosh) s += ` xmlns:xmpp='${NS_XBOSH}'`;
  // [XEP-0206 §2] a body carrying <stream:features/> or <stream:error/> declares the stream prefix
  if (payloads.some((p) => p.startsWith('<stream:'))) s += ` xmlns:stream='${NS_STREAM}'`;
  return payloads.length ? `${s}>${payloads.join('')}</body>` : `${s}/>`;
}

/** `<body type='terminate'/>` with a condition [XEP-0124 §17.2]. */
export function terminateXml(condition?: TerminalCondition, payloads: string[] = []): string {
  return bodyXml({ type: 'terminate', condition }, payloads);
}

/**
 * The stream header the connection's parser expects, made from the session
 * request or a restart request (to, xml:lang, xmpp:version) [XEP-0206 §3, §5],
 * so every check of the TCP path (host-unknown, version…) applies.
 */
export function streamHeader(a: {
  to: string;
  version: string;
  lang?: string;
  from?: string;
}): string {
  let h = `<stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' to='${escapeXML(a.to)}' version='${escapeXML(a.version)}'`;
  if (a.lang !== undefined) h += ` xml:lang='${escapeXML(a.lang)}'`;
  if (a.from !== undefined) h += ` from='${escapeXML(a.from)}'`;
  return `${h}>`;
}

/** "major.minor" compared as integers [XEP-0124 §7.1 'ver']; the lower of the two. */
export function lowerVersion(a: string, b: string): string {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  if (pa.length !== 2 || pa.some((n) => !Number.isInteger(n))) return b;
  return pa[0] < pb[0] || (pa[0] === pb[0] && pa[1] < pb[1]) ? a : b;
}
