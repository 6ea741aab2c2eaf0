import { isUtf8 } from 'node:buffer';
import { Element, escapeXML } from '@xmpp/xml';
import { SaxesParser, type SaxesTagNS } from 'saxes';

import { NS_CLIENT, NS_STREAM } from './ns.ts';

export { NS_CLIENT, NS_STREAM };

/** Stream-level failures the parser detects, named by their stream error condition [RFC6120 4.9.3]. */
export type ParseFailure =
  'not-well-formed' | 'restricted-xml' | 'policy-violation' | 'bad-namespace-prefix';

export interface StreamParserEvents {
  /** the stream header: root element name, its namespace and attributes (declared namespaces included) */
  streamOpened(name: string, uri: string, attrs: Record<string, string>): void;
  stanzaParsed(el: Element): void;
  streamClosed(): void;
  parseFailed(condition: ParseFailure, text: string): void;
}

export interface StreamParserLimits {
  /** largest top-level element (and the largest run of bytes between two), in characters */
  maxStanzaSize: number;
  /** deepest nesting inside one stanza */
  maxDepth: number;
}

/** Feed at most this many characters to saxes at once, so the size limit bites early. */
const SLICE = 16 * 1024;

/** Whitespace that saxes keeps no state for between stanzas (a CR may be carried over to join a LF). */
const QUIET = /^[ \t\n]*$/;

/** The replayed header and the prefix declarations of almost every stream, one of each for all of them. */
const USUAL_REOPEN = `<stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}'>`;
const USUAL_HEADER_NS: Readonly<Record<string, string>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, string>, { stream: NS_STREAM }),
);

type Saxes = SaxesParser<{ xmlns: true; position: true }>;

/**
 * An XMPP stream parser: saxes (strict, namespace-aware) building ltx
 * Elements, with the limits the parser itself lacks: size of a top-level
 * element, nesting depth, and RFC 6120 §11.1 restricted XML (comments,
 * processing instructions, DTDs, entity references other than the predefined
 * ones). One instance per stream; a stream restart makes a new one.
 *
 * Completed stanzas are handed out only after the chunk that completed them
 * parsed cleanly, so nothing from a chunk that turns out malformed is routed.
 *
 * A saxes parser holds several kilobytes, so an idle stream lets it go:
 * `release()` between stanzas drops it, and the next bytes get a fresh one
 * that first parses a replay of the stream header (its namespace
 * declarations) and carries on with the same line, column and size count.
 */
export class StreamParser {
  /** undefined while released */
  private sax?: Saxes;
  /** only while a chunk ended inside a multi-byte character; fatal: invalid UTF-8 throws */
  private decoder?: TextDecoder;
  private readonly ev: StreamParserEvents;
  private readonly limits: StreamParserLimits;
  private depth = 0;
  private cursor: Element | null = null;
  private boundary = 0;
  /** characters given to the current saxes parser, a carried-over one included */
  private fed = 0;
  /** whitespace since the last stanza when the last chunk was written, or -1 */
  private quiet = -1;
  private failed = false;
  private opened = false;
  private ready: Element[] = [];
  private closed = false;
  /** prefix declarations of the stream header and of the current stanza */
  private headerNs?: Readonly<Record<string, string>>;
  private stanzaNs?: Record<string, string>;
  /** the stream header's name and namespace declarations, replayed to a fresh saxes parser */
  private reopen = '';
  /** saxes' position in the stream while released */
  private line = 1;
  private column = 0;

  constructor(ev: StreamParserEvents, limits: StreamParserLimits) {
    this.ev = ev;
    this.limits = limits;
    this.sax = this.newSax();
  }

  private newSax(): Saxes {
    const sax: Saxes = new SaxesParser({ xmlns: true, position: true });
    sax.on('error', (err) => {
      const msg = err.message;
      if (/undefined entity/.test(msg))
        this.fail('restricted-xml', 'entity references are not allowed'); // [RFC6120 11.1]
      else if (/unbound namespace prefix/.test(msg))
        this.fail('bad-namespace-prefix', msg); // [RFC6120 4.9.3.2]
      else this.fail('not-well-formed', msg); // [RFC6120 4.9.3.13]
    });
    // [RFC6120 11.1] no comments, processing instructions, DTDs
    sax.on('comment', () => this.fail('restricted-xml', 'comments are not allowed'));
    sax.on('processinginstruction', () =>
      this.fail('restricted-xml', 'processing instructions are not allowed'),
    );
    sax.on('doctype', () => this.fail('restricted-xml', 'DTDs are not allowed'));
    sax.on('opentag', (tag) => this.onOpen(tag as SaxesTagNS));
    sax.on('closetag', () => this.onClose());
    sax.on('text', (t) => this.onText(t));
    sax.on('cdata', (t) => this.onText(t));
    return sax;
  }

  /** Feed bytes (or text). Stops at the first failure. */
  write(chunk: Buffer | string): void {
    if (this.failed || this.closed) return;
    const text = typeof chunk === 'string' ? chunk : this.decode(chunk);
    // [RFC6120 11.6] a stream is UTF-8: bytes that are not are not-well-formed [4.9.3.13], never U+FFFD
    if (text === undefined) return this.fail('not-well-formed', 'invalid UTF-8');
    if (!this.sax && QUIET.test(text)) return this.idleWhitespace(text);
    const sax = (this.sax ??= this.resume());
    for (let i = 0; i < text.length && !this.failed; i += SLICE) {
      const slice = text.slice(i, i + SLICE);
      sax.write(slice);
      this.fed += slice.length;
      if (this.failed) break;
      this.checkSize();
    }
    this.quiet = this.quietRun(text);
    const ready = this.ready;
    this.ready = [];
    if (this.failed) return;
    for (const el of ready) this.ev.stanzaParsed(el);
    if (this.closed) this.ev.streamClosed();
  }

  /** Drop the saxes parser if the stream is between stanzas with nothing pending; true if it did. */
  release(): boolean {
    if (!this.sax || this.quiet < 0 || this.failed || this.closed) return false;
    this.line = this.sax.line;
    this.column = this.sax.column;
    this.sax = undefined;
    this.stanzaNs = undefined;
    return true;
  }

  /** A UTF-8 decoder is only needed to carry a character split between chunks; undefined for invalid UTF-8. */
  private decode(chunk: Buffer): string | undefined {
    const split = chunk.length > 0 && chunk[chunk.length - 1] >= 0x80; // an ASCII byte ends every character
    if (!split && !this.decoder) return isUtf8(chunk) ? chunk.toString('utf8') : undefined;
    try {
      const text = (this.decoder ??= new TextDecoder('utf-8', { fatal: true })).decode(chunk, {
        stream: split,
      });
      if (!split) this.decoder = undefined;
      return text;
    } catch {
      return undefined;
    }
  }

  /** Whitespace since the last stanza, -1 unless the stream is between stanzas with only that seen since. */
  private quietRun(text: string): number {
    if (this.failed || this.closed || this.depth !== 1 || this.cursor) return -1;
    const run = this.fed - this.boundary;
    return run === 0 || (run <= text.length && QUIET.test(text.slice(text.length - run)))
      ? run
      : -1;
  }

  /** Whitespace to a released parser: counted as saxes and checkSize() would count it, nothing else to do. */
  private idleWhitespace(text: string): void {
    for (let i = 0; i < text.length; i++) {
      if (text.charCodeAt(i) === 10) {
        this.line++;
        this.column = 0;
      } else this.column++;
    }
    for (let i = 0; i < text.length; i += SLICE) {
      const n = Math.min(SLICE, text.length - i);
      this.quiet += n;
      // Between two writes saxes' position counts the last slice twice; checkSize() sees it so.
      if (this.quiet + n > this.limits.maxStanzaSize)
        return this.fail('policy-violation', `stanza larger than ${this.limits.maxStanzaSize}`); // [RFC6120 4.9.3.14]
    }
  }

  /** A fresh saxes parser inside the stream header, where the released one stopped. */
  private resume(): Saxes {
    const sax = this.newSax();
    this.depth = 0;
    sax.write(this.reopen);
    sax.line = this.line;
    sax.column = this.column;
    this.fed = this.reopen.length;
    this.boundary = this.fed - this.quiet;
    return sax;
  }

  private checkSize(): void {
    if (this.sax!.position - this.boundary > this.limits.maxStanzaSize) {
      this.fail('policy-violation', `stanza larger than ${this.limits.maxStanzaSize}`); // [RFC6120 4.9.3.14]
    }
  }

  private fail(condition: ParseFailure, text: string): void {
    if (this.failed) return;
    this.failed = true;
    this.ev.parseFailed(condition, text);
  }

  private onOpen(tag: SaxesTagNS): void {
    if (this.failed) return;
    const attrs: Record<string, string> = {};
    const given = tag.attributes;
    for (const k in given) attrs[k] = given[k].value; // for…in: no entries array per element
    if (this.depth === 0) {
      this.depth = 1;
      if (this.opened) return; // the replayed header of a resumed parser
      this.opened = true;
      this.boundary = this.sax!.position;
      const ns = prefixDecls(attrs);
      this.headerNs =
        ns && Object.keys(ns).length === 1 && ns.stream === NS_STREAM ? USUAL_HEADER_NS : ns;
      this.reopen = reopenXml(tag.name, attrs, this.sax!.xmlDecl.version);
      this.ev.streamOpened(tag.name, tag.uri, attrs);
      return;
    }
    this.depth++;
    if (this.depth - 1 > this.limits.maxDepth) {
      this.fail('policy-violation', `nesting deeper than ${this.limits.maxDepth}`);
      return;
    }
    // Keep the element's effective namespace on the top-level element so it can be re-serialised on its own.
    if (this.depth === 2 && !attrs.xmlns && !tag.prefix) attrs.xmlns = tag.uri;
    if (this.depth === 2) this.stanzaNs = prefixDecls(attrs);
    const el = new Element(tag.name, attrs);
    if (this.cursor) this.cursor.cnode(el);
    this.cursor = el; // saxes emits closetag for self-closing tags too
  }

  private onClose(): void {
    if (this.failed) return;
    this.depth--;
    if (this.depth === 0) {
      this.closed = true; // </stream:stream>
      return;
    }
    const el = this.cursor!;
    const parent = el.parent as Element | null;
    if (this.depth === 2) this.bindPrefixes(el);
    if (this.depth === 1) {
      this.cursor = null;
      this.ready.push(el);
      this.checkSize();
      this.boundary = this.sax!.position;
    } else {
      this.cursor = parent;
    }
  }

  /**
   * A stanza child is kept and re-sent on its own (Envelope extensions), so it
   * must carry the prefix declarations it inherited from the stanza or the
   * stream header; otherwise the receiver would get unbound prefixes.
   */
  private bindPrefixes(el: Element): void {
    const used = usedPrefixes(el, undefined);
    if (!used) return; // the common case (<body/>, <active/>…): nothing allocated
    for (const p of used) {
      if (p === 'xml' || p === 'xmlns' || el.attrs[`xmlns:${p}`] !== undefined) continue;
      const uri = this.stanzaNs?.[p] ?? this.headerNs?.[p];
      if (uri !== undefined) el.attrs[`xmlns:${p}`] = uri;
    }
  }

  private onText(t: string): void {
    if (this.failed) return;
    if (this.cursor) this.cursor.t(t);
    else if (this.depth <= 1 && t.trim() !== '')
      this.fail('not-well-formed', 'text outside a stanza');
  }
}

/** Prefixes used in element and attribute names of a subtree; undefined when none is. */
function usedPrefixes(e: Element, into: Set<string> | undefined): Set<string> | undefined {
  let i = e.name.indexOf(':');
  if (i > 0) (into ??= new Set()).add(e.name.slice(0, i));
  for (const name in e.attrs) {
    i = name.indexOf(':');
    if (i > 0) (into ??= new Set()).add(name.slice(0, i));
  }
  for (const c of e.children) if (typeof c !== 'string') into = usedPrefixes(c, into);
  return into;
}

function prefixDecls(attrs: Record<string, string>): Record<string, string> | undefined {
  let out: Record<string, string> | undefined;
  // Keyed by prefixes the client chose: no prototype, so a prefix named `constructor` is just a prefix.
  for (const k in attrs)
    if (k.startsWith('xmlns:'))
      (out ??= Object.create(null) as Record<string, string>)[k.slice(6)] = attrs[k];
  return out;
}

/** The stream header reduced to what parsing the rest of the stream depends on: its name, namespaces and XML version. */
function reopenXml(
  name: string,
  attrs: Record<string, string>,
  version: string | undefined,
): string {
  let h = version === '1.1' ? `<?xml version='1.1'?><${name}` : `<${name}`;
  if (attrs.xmlns !== undefined) h += ` xmlns='${escapeXML(attrs.xmlns)}'`;
  for (const [k, v] of Object.entries(attrs))
    if (k.startsWith('xmlns:')) h += ` ${k}='${escapeXML(v)}'`;
  h += '>';
  return h === USUAL_REOPEN ? USUAL_REOPEN : h;
}
