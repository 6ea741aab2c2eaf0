import { StringDecoder } from 'node:string_decoder';
import { Element } from '@xmpp/xml';
import { SaxesParser, type SaxesTagNS } from 'saxes';

export const NS_STREAM = 'http://etherx.jabber.org/streams';
export const NS_CLIENT = 'jabber:client';

/** Stream-level failures the parser detects, named by their stream error condition [RFC6120 4.9.3]. */
export type ParseFailure = 'not-well-formed' | 'restricted-xml' | 'policy-violation' | 'bad-namespace-prefix';

export interface StreamParserEvents {
  /** the stream header: root element name, its namespace and attributes (declared namespaces included) */
  open(name: string, uri: string, attrs: Record<string, string>): void;
  stanza(el: Element): void;
  close(): void;
  error(condition: ParseFailure, text: string): void;
}

export interface StreamParserLimits {
  /** largest top-level element (and the largest run of bytes between two), in characters */
  maxStanzaSize: number;
  /** deepest nesting inside one stanza */
  maxDepth: number;
}

/** Feed at most this many characters to saxes at once, so the size limit bites early. */
const SLICE = 16 * 1024;

/**
 * An XMPP stream parser: saxes (strict, namespace-aware) building ltx
 * Elements, with the limits the parser itself lacks: size of a top-level
 * element, nesting depth, and RFC 6120 §11.1 restricted XML (comments,
 * processing instructions, DTDs, entity references other than the predefined
 * ones). One instance per stream; a stream restart makes a new one.
 *
 * Completed stanzas are handed out only after the chunk that completed them
 * parsed cleanly, so nothing from a chunk that turns out malformed is routed.
 */
export class StreamParser {
  private readonly sax: SaxesParser<{ xmlns: true; position: true }>;
  private readonly decoder = new StringDecoder('utf8');
  private readonly ev: StreamParserEvents;
  private readonly limits: StreamParserLimits;
  private depth = 0;
  private cursor: Element | null = null;
  private boundary = 0;
  private failed = false;
  private opened = false;
  private ready: Element[] = [];
  private closed = false;
  /** prefix declarations of the stream header and of the current stanza */
  private headerNs: Record<string, string> = {};
  private stanzaNs: Record<string, string> = {};

  constructor(ev: StreamParserEvents, limits: StreamParserLimits) {
    this.ev = ev;
    this.limits = limits;
    const sax = new SaxesParser({ xmlns: true, position: true });
    this.sax = sax;
    sax.on('error', (err) => {
      const msg = err.message;
      if (/undefined entity/.test(msg)) this.fail('restricted-xml', 'entity references are not allowed'); // [RFC6120 11.1]
      else if (/unbound namespace prefix/.test(msg)) this.fail('bad-namespace-prefix', msg); // [RFC6120 4.9.3.2]
      else this.fail('not-well-formed', msg); // [RFC6120 4.9.3.13]
    });
    // [RFC6120 11.1] no comments, processing instructions, DTDs
    sax.on('comment', () => this.fail('restricted-xml', 'comments are not allowed'));
    sax.on('processinginstruction', () => this.fail('restricted-xml', 'processing instructions are not allowed'));
    sax.on('doctype', () => this.fail('restricted-xml', 'DTDs are not allowed'));
    sax.on('opentag', (tag) => this.onOpen(tag as SaxesTagNS));
    sax.on('closetag', () => this.onClose());
    sax.on('text', (t) => this.onText(t));
    sax.on('cdata', (t) => this.onText(t));
  }

  /** Feed bytes (or text). Stops at the first failure. */
  write(chunk: Buffer | string): void {
    if (this.failed || this.closed) return;
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    for (let i = 0; i < text.length && !this.failed; i += SLICE) {
      this.sax.write(text.slice(i, i + SLICE));
      if (this.failed) break;
      this.checkSize();
    }
    const ready = this.ready;
    this.ready = [];
    if (this.failed) return;
    for (const el of ready) this.ev.stanza(el);
    if (this.closed) this.ev.close();
  }

  private checkSize(): void {
    if (this.sax.position - this.boundary > this.limits.maxStanzaSize) {
      this.fail('policy-violation', `stanza larger than ${this.limits.maxStanzaSize}`); // [RFC6120 4.9.3.14]
    }
  }

  private fail(condition: ParseFailure, text: string): void {
    if (this.failed) return;
    this.failed = true;
    this.ev.error(condition, text);
  }

  private onOpen(tag: SaxesTagNS): void {
    if (this.failed) return;
    const attrs: Record<string, string> = {};
    for (const [k, a] of Object.entries(tag.attributes)) attrs[k] = a.value;
    if (!this.opened) {
      this.opened = true;
      this.depth = 1;
      this.boundary = this.sax.position;
      this.headerNs = prefixDecls(attrs);
      this.ev.open(tag.name, tag.uri, attrs);
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
      this.boundary = this.sax.position;
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
    const used = new Set<string>();
    const walk = (e: Element): void => {
      for (const name of [e.name, ...Object.keys(e.attrs)]) {
        const i = name.indexOf(':');
        if (i > 0) used.add(name.slice(0, i));
      }
      for (const c of e.children) if (typeof c !== 'string') walk(c);
    };
    walk(el);
    for (const p of used) {
      if (p === 'xml' || p === 'xmlns' || el.attrs[`xmlns:${p}`] !== undefined) continue;
      const uri = this.stanzaNs[p] ?? this.headerNs[p];
      if (uri !== undefined) el.attrs[`xmlns:${p}`] = uri;
    }
  }

  private onText(t: string): void {
    if (this.failed) return;
    if (this.cursor) this.cursor.t(t);
    else if (this.depth <= 1 && t.trim() !== '') this.fail('not-well-formed', 'text outside a stanza');
  }
}

function prefixDecls(attrs: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (k.startsWith('xmlns:')) out[k.slice(6)] = v;
  return out;
}
