import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { escapeXML, type Element } from '@xmpp/xml';
import { NS_DIALBACK } from '../ns.ts';

/**
 * Dialback keys [XEP-0185 3]: HMAC-SHA256 keyed with SHA-256 of the secret,
 * over "Receiving Server, ' ', Originating Server, ' ', Stream ID", in hex.
 * Only this node checks the keys it made, so the exact scheme is ours; this
 * one is the XEP's recommendation, as Prosody's.
 */
export function dialbackKey(
  secret: string,
  receiving: string,
  originating: string,
  streamId: string,
): string {
  const k = createHash('sha256').update(secret).digest('hex');
  return createHmac('sha256', k).update(`${receiving} ${originating} ${streamId}`).digest('hex');
}

/** Constant-time comparison of a key a peer sent with the one we expect. */
export function keyMatches(given: string, expected: string): boolean {
  const a = Buffer.from(given.trim());
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** 'result' or 'verify' for a dialback element (db: prefix bound to jabber:server:dialback), else undefined. */
export function dialbackName(el: Element): 'result' | 'verify' | undefined {
  const [prefix, local] = el.name.includes(':') ? el.name.split(':', 2) : ['', el.name];
  const ours = prefix === 'db' || el.attrs.xmlns === NS_DIALBACK;
  if (!ours) return undefined;
  return local === 'result' || local === 'verify' ? local : undefined;
}

function attr(name: string, value: string | undefined): string {
  return value === undefined ? '' : ` ${name}='${escapeXML(value)}'`;
}

/** A dialback element: `<db:result/>` or `<db:verify/>` with a key or a type [XEP-0220 2.1]. */
export function dialbackXml(
  name: 'result' | 'verify',
  a: { from: string; to: string; id?: string; type?: string; key?: string; error?: string },
): string {
  const head = `<db:${name}${attr('from', a.from)}${attr('to', a.to)}${attr('id', a.id)}${attr('type', a.type)}`;
  if (a.error) return `${head}>${a.error}</db:${name}>`;
  return a.key !== undefined ? `${head}>${escapeXML(a.key)}</db:${name}>` : `${head}/>`;
}
