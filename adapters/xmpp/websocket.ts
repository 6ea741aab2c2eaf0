import { escapeXML } from '@xmpp/xml';
import { SaxesParser } from 'saxes';
import type { WebSocket } from 'ws';
import { NS_CLIENT, NS_FRAMING, NS_STREAM } from './ns.ts';

export { NS_FRAMING };
import type { Transport } from './connection.ts';

/**
 * XMPP over WebSocket [RFC7395]: one complete element per message, `<open/>`
 * and `<close/>` instead of the stream header and footer. The connection's
 * byte-stream parser is kept: incoming `<open/>` becomes a stream header and
 * `<close/>` the stream end, so every check of the TCP path applies as is.
 */
export class WebSocketTransport implements Transport {
  readonly kind: string;
  secure: boolean;
  readonly canStartTls = false;
  readonly remoteAddress: string;
  private readonly ws: WebSocket;
  private closed = false;

  constructor(ws: WebSocket, ip: string, secure: boolean) {
    this.ws = ws;
    this.remoteAddress = ip;
    this.secure = secure;
    this.kind = secure ? 'wss' : 'ws';
  }

  write(data: string): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    // [RFC7395 3.4] each message must stand alone: declare the stream prefix where it is used.
    if (data.startsWith('<stream:'))
      data = data.replace(/^<stream:(\w+)/, `<stream:$1 xmlns:stream='${NS_STREAM}'`);
    this.ws.send(data);
  }

  openStream(a: { id: string; from: string; to?: string }): void {
    const to = a.to ? ` to='${escapeXML(a.to)}'` : '';
    // [RFC7395 3.3.2]
    this.write(
      `<open xmlns='${NS_FRAMING}' id='${a.id}' from='${escapeXML(a.from)}'${to} version='1.0' xml:lang='en'/>`,
    );
  }

  closeStream(errorXml?: string, seeOtherUri?: string): void {
    if (errorXml) this.write(errorXml);
    // [RFC7395 3.6.1] a redirect is an attribute of <close/>, not a see-other-host stream error
    const other = seeOtherUri ? ` see-other-uri='${escapeXML(seeOtherUri)}'` : '';
    this.write(`<close xmlns='${NS_FRAMING}'${other}/>`); // [RFC7395 3.6]
  }

  keepalive(): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.ping(); // [RFC7395 3.7] pings, not whitespace
  }

  bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  startTls(): Promise<void> {
    return Promise.reject(new Error('no STARTTLS on WebSocket'));
  }

  /** Backpressure: ws pauses its underlying socket; frames wait in the kernel and the client. */
  pause(): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.pause();
  }

  resume(): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.resume();
  }

  end(): void {
    if (this.closed) return;
    this.closed = true;
    // [RFC7395 3.6] the client closes the WebSocket after our <close/>; do not wait forever.
    const t = setTimeout(() => this.ws.terminate(), 2000);
    t.unref();
    this.ws.once('close', () => clearTimeout(t));
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(1000);
  }
}

/**
 * Translate one incoming WebSocket message into bytes for the stream parser:
 * `<open/>` → a stream header, `<close/>` → the stream end, anything else as is.
 */
export function translateFrame(frame: string): string {
  const t = frame.trimStart();
  if (!t.startsWith('<open') && !t.startsWith('<close')) return frame;
  const parsed = parseFramingElement(t);
  if (!parsed) return frame; // let the stream parser report it (not-well-formed)
  const { name, uri, attrs } = parsed;
  if (name === 'close') return uri === NS_FRAMING ? '</stream:stream>' : frame;
  if (name !== 'open') return frame;
  // A wrong framing namespace turns into a wrong stream namespace: invalid-namespace [RFC7395 3.3.1]
  const streamNs = uri === NS_FRAMING ? NS_STREAM : uri || 'urn:invalid';
  let header = `<stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${escapeXML(streamNs)}'`;
  for (const k of ['to', 'from', 'version', 'xml:lang', 'id']) {
    if (attrs[k] !== undefined) header += ` ${k}='${escapeXML(attrs[k])}'`;
  }
  return `${header}>`;
}

function parseFramingElement(
  text: string,
): { name: string; uri: string; attrs: Record<string, string> } | undefined {
  const sax = new SaxesParser({ xmlns: true });
  let out: { name: string; uri: string; attrs: Record<string, string> } | undefined;
  let bad = false;
  sax.on('error', () => (bad = true));
  sax.on('opentag', (tag) => {
    if (out) return;
    const attrs: Record<string, string> = {};
    for (const [k, a] of Object.entries(tag.attributes)) attrs[k] = a.value;
    out = { name: tag.local, uri: tag.uri, attrs };
  });
  try {
    sax.write(text).close();
  } catch {
    bad = true;
  }
  return bad ? undefined : out;
}
