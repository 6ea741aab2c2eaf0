import xmlLib, { Element, escapeXML, escapeXMLText } from '@xmpp/xml';
import {
  Address,
  BrokerError,
  MESSAGE_TYPES,
  PRESENCE_TYPES,
  SHOW_VALUES,
  type Envelope,
  type ErrorCondition,
  type ErrorType,
  type AppCondition,
} from '../../broker/index.ts';
import { chatMetaXml, readChatChild } from './chat-meta.ts';
import { NS_CLIENT, NS_DELAY, NS_SID, NS_STANZAS } from './ns.ts';

export { NS_DELAY, NS_SID, NS_STANZAS };

/** A stanza-id that claims to come from this server (its domain or one of its accounts) [XEP-0359 §5]. */
function ourStanzaId(c: Element, domain: string): boolean {
  if (c.name !== 'stanza-id' || c.attrs.xmlns !== NS_SID) return false;
  const by = Address.tryParse(c.attrs.by ?? '');
  return by === undefined || by.domain === domain;
}

/**
 * Element → Envelope for a stanza a client sent. `from` is stamped by the
 * caller. Throws BrokerError('bad-request' | 'jid-malformed') on invalid input.
 */
export function toEnvelope(el: Element, from: Address, defaultTo: Address): Envelope {
  const kind = el.name as Envelope['kind'];
  const type = el.attrs.type;
  const toAttr = el.attrs.to;
  let to = defaultTo;
  if (toAttr !== undefined) to = Address.parse(toAttr); // [RFC6120 8.3.3.8] jid-malformed
  const env: Envelope = { kind, from, to, extensions: [] };
  if (type !== undefined) env.type = type;
  if (el.attrs.id !== undefined) env.id = el.attrs.id;
  switch (kind) {
    case 'message':
      if (type !== undefined && !MESSAGE_TYPES.has(type))
        throw new BrokerError('bad-request', 'unknown message type');
      for (const c of el.getChildElements()) {
        const ns = c.attrs.xmlns;
        const core = ns === undefined || ns === NS_CLIENT;
        if (core && c.name === 'body' && env.body === undefined && !c.attrs['xml:lang'])
          env.body = c.getText();
        else if (core && c.name === 'subject' && env.subject === undefined && !c.attrs['xml:lang'])
          env.subject = c.getText();
        else if (core && c.name === 'thread' && env.thread === undefined && !c.attrs.parent)
          env.thread = c.getText();
        else if (ourStanzaId(c, from.domain))
          continue; // [XEP-0359 §5] only the archive says its own ids
        else if (!core && readChatChild(env, c))
          continue; // receipts, markers, retraction, correction: env.chat
        else env.extensions.push(c.toString());
      }
      break;
    case 'presence':
      if (type !== undefined && !PRESENCE_TYPES.has(type))
        throw new BrokerError('bad-request', 'unknown presence type');
      for (const c of el.getChildElements()) {
        const ns = c.attrs.xmlns;
        const core = ns === undefined || ns === NS_CLIENT;
        if (core && c.name === 'show') {
          const show = c.getText();
          // An empty <show/> is plain availability, as Prosody and ejabberd take it (docs/leniency.md)
          if (show.trim() === '') continue;
          if (!SHOW_VALUES.has(show)) throw new BrokerError('bad-request', 'invalid show value'); // [RFC6121 4.7.2.1]
          env.show = show;
        } else if (core && c.name === 'status' && env.status === undefined && !c.attrs['xml:lang'])
          env.status = c.getText();
        else if (core && c.name === 'priority') {
          const p = c.getText().trim();
          if (!/^[+-]?\d+$/.test(p) || Number(p) < -128 || Number(p) > 127) {
            throw new BrokerError('bad-request', 'priority must be an integer from -128 to 127'); // [RFC6121 4.7.2.3]
          }
          env.priority = Number(p);
        } else env.extensions.push(c.toString());
      }
      break;
    case 'iq':
      for (const c of el.getChildElements()) env.extensions.push(c.toString());
      break;
  }
  return env;
}

/** The error child of a stanza [RFC6120 8.3.2]. */
export function errorXml(
  condition: ErrorCondition,
  type: ErrorType,
  text?: string,
  app?: AppCondition,
): string {
  let s = `<error type='${type}'><${condition} xmlns='${NS_STANZAS}'/>`;
  if (text) s += `<text xmlns='${NS_STANZAS}'>${escapeXMLText(text)}</text>`;
  if (app) {
    // [RFC6120 8.3.4] application-specific condition
    s += `<${app.name} xmlns='${escapeXML(app.ns)}'`;
    for (const [k, v] of Object.entries(app.attrs ?? {})) s += attr(k, v);
    if (!app.children?.length) s += '/>';
    else
      s += `>${app.children.map(([n, t]) => `<${n}>${escapeXMLText(t)}</${n}>`).join('')}</${app.name}>`;
  }
  return `${s}</error>`;
}

function attr(name: string, value: string | undefined): string {
  return value === undefined ? '' : ` ${name}='${escapeXML(value)}'`;
}

function stamp(ms: number): string {
  return new Date(ms).toISOString();
}

/** Envelope → stanza XML for delivery to a client (or, with `ns` jabber:server, to a peer server). */
export function envelopeXml(env: Envelope, to: Address, ns: string = NS_CLIENT): string {
  let s = `<${env.kind}${attr('xmlns', ns)}${attr('from', env.from.toString())}${attr('to', to.toString())}${attr('type', env.type)}${attr('id', env.id)}>`;
  if (env.kind === 'message') {
    if (env.subject !== undefined) s += `<subject>${escapeXMLText(env.subject)}</subject>`;
    if (env.body !== undefined) s += `<body>${escapeXMLText(env.body)}</body>`;
    if (env.thread !== undefined) s += `<thread>${escapeXMLText(env.thread)}</thread>`;
    if (env.chat !== undefined) s += chatMetaXml(env.chat);
  } else if (env.kind === 'presence') {
    if (env.show !== undefined) s += `<show>${env.show}</show>`;
    if (env.status !== undefined) s += `<status>${escapeXMLText(env.status)}</status>`;
    if (env.priority !== undefined && env.priority !== 0)
      s += `<priority>${env.priority}</priority>`;
  }
  for (const x of env.extensions) s += x;
  if (env.archive !== undefined && env.kind === 'message') {
    // [XEP-0359 §4] the id in the recipient's own archive, said by that archive (the bare JID)
    const owner = to.bare().toString();
    if (env.archive.owners.includes(owner))
      s += `<stanza-id xmlns='${NS_SID}' by='${escapeXML(owner)}' id='${escapeXML(env.archive.id)}'/>`;
  }
  if (env.delay) {
    // [XEP-0203] when and where it was delayed
    s += `<delay xmlns='${NS_DELAY}'${attr('from', env.delay.from)} stamp='${stamp(env.delay.stamp)}'>${env.delay.reason ? escapeXMLText(env.delay.reason) : ''}</delay>`;
  }
  if (env.type === 'error' && env.error)
    s += errorXml(env.error.condition, env.error.type, env.error.text, env.error.app);
  return `${s}</${env.kind}>`;
}

/**
 * An error reply to a stanza the client sent [RFC6120 8.3.1]: from and to
 * swapped, the same id, the original payload for IQs. No `clientTo` before
 * authentication (the client has no address yet).
 */
export function errorReply(
  el: Element,
  err: BrokerError,
  serverFrom: string,
  clientTo: string | undefined,
): string {
  const from = el.attrs.to ?? serverFrom;
  let s = `<${el.name} xmlns='${NS_CLIENT}'${attr('from', from)}${attr('to', clientTo)} type='error'${attr('id', el.attrs.id)}>`;
  if (el.name === 'iq') {
    const child = el.getChildElements()[0];
    if (child) s += child.toString();
  }
  s += errorXml(err.condition, err.type, err.text, err.app);
  return `${s}</${el.name}>`;
}

const Parser = (
  xmlLib as unknown as {
    Parser: new () => { on(e: string, fn: (x: Element) => void): void; write(s: string): void };
  }
).Parser;

/**
 * The first element of serialised XML the node wrote itself (an envelope's
 * extensions, a stored vCard or PEP payload), parsed back; undefined when
 * there is none.
 */
export function parseStored(parts: string | string[]): Element | undefined {
  let out: Element | undefined;
  const p = new Parser();
  p.on('element', (el: Element) => (out ??= el));
  p.on('error', () => {});
  p.write(`<w xmlns='${NS_CLIENT}'>${typeof parts === 'string' ? parts : parts.join('')}</w>`);
  return out;
}
