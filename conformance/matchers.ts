// Stanza matchers and builders for the conformance suites; re-exported by helpers.ts.
import { xml, type Element } from '@xmpp/xml';
import { NS_ROSTER, NS_STANZAS, NS_STREAM, NS_STREAMS_ERR } from './wire.ts';

export type Pred = (el: Element) => boolean;

type AttrSpec = Record<string, string | undefined | RegExp>;

function attrsMatch(el: Element, attrs: AttrSpec): boolean {
  for (const [k, v] of Object.entries(attrs)) {
    const actual = el.attrs[k];
    if (v === undefined) {
      if (actual !== undefined) return false;
    } else if (v instanceof RegExp) {
      if (actual === undefined || !v.test(actual)) return false;
    } else if (actual !== v) return false;
  }
  return true;
}

/** A stanza of this name whose attributes equal attrs (undefined = must be absent). */
export const isStanza =
  (name: 'message' | 'presence' | 'iq', attrs: AttrSpec = {}): Pred =>
  (el) =>
    el.name === name && attrsMatch(el, attrs);

export const isPresence = (attrs: AttrSpec = {}) => isStanza('presence', attrs);
export const isMessage = (attrs: AttrSpec = {}) => isStanza('message', attrs);

/** A roster push [RFC6121 2.1.6] carrying the item for jid. */
export const isRosterPush =
  (jid?: string): Pred =>
  (el) => {
    if (el.name !== 'iq' || el.attrs.type !== 'set') return false;
    const q = el.getChild('query', NS_ROSTER);
    if (!q) return false;
    return jid === undefined || q.getChildren('item').some((i) => i.attrs.jid === jid);
  };

/** The single roster item of a push or result. */
export function rosterItem(el: Element, jid: string): Element | undefined {
  return el
    .getChild('query', NS_ROSTER)
    ?.getChildren('item')
    .find((i) => i.attrs.jid === jid);
}

/** The defined condition of a stanza error child, with its type. */
export function stanzaError(el: Element): { type?: string; condition?: string } {
  const err = el.getChild('error');
  if (!err) return {};
  const cond = err.getChildElements().find((c) => c.getNS() === NS_STANZAS && c.name !== 'text');
  return { type: err.attrs.type, condition: cond?.name };
}

export const isStreamError =
  (condition?: string): Pred =>
  (el) =>
    el.is('error', NS_STREAM) &&
    (condition === undefined || el.getChild(condition, NS_STREAMS_ERR) !== undefined);

/** Initial presence, with optional priority/show/status. */
export function presence(
  opts: { priority?: number; show?: string; status?: string; to?: string; type?: string } = {},
): Element {
  const p = xml('presence', { to: opts.to, type: opts.type });
  if (opts.show) p.append(xml('show', {}, opts.show));
  if (opts.status) p.append(xml('status', {}, opts.status));
  if (opts.priority !== undefined) p.append(xml('priority', {}, String(opts.priority)));
  return p;
}

export const rosterGet = (ver?: string) =>
  xml('iq', { type: 'get' }, xml('query', { xmlns: NS_ROSTER, ver }));
