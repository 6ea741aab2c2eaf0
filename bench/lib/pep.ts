// PEP for the load generators: entity capabilities with +notify features
// [XEP-0115], answers to the server's disco#info query about them, and a
// count of PEP notifications by a marker in the item payload.
import { createHash } from 'node:crypto';
import type { XmppClient } from './xmpp.ts';

const NS_CAPS = 'http://jabber.org/protocol/caps';
const NS_DISCO = 'http://jabber.org/protocol/disco#info';
export const NS_BENCH = 'urn:bench:pep';
/** Text in every published payload: one per notification received. */
export const MARKER = 'PEPITEM';

/** The caps of a client wanting notifications of these nodes: the presence to send and the disco#info answer. */
export function caps(nodes: string[]): { presence: string; features: string[]; ver: string } {
  const features = [NS_CAPS, NS_DISCO, ...nodes.map((n) => `${n}+notify`)].sort();
  // [XEP-0115 5.1] category/type/lang/name<, then each feature<
  const ver = createHash('sha1')
    .update(`client/pc//bench<${features.map((f) => `${f}<`).join('')}`)
    .digest('base64');
  return {
    presence: `<presence><c xmlns='${NS_CAPS}' hash='sha-1' node='urn:bench' ver='${ver}'/></presence>`,
    features,
    ver,
  };
}

/** A publish of one item with the marker (and a number) in its payload. */
export function publishIq(id: string, node: string, n: number): string {
  return `<iq type='set' id='${id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${node}'><item id='current'><entry xmlns='${NS_BENCH}'>${MARKER} ${n}</entry></item></publish></pubsub></iq>`;
}

const attrs = (tag: string): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([\w:-]+)=(?:'([^']*)'|"([^"]*)")/g))
    out[m[1]!] = m[2] ?? m[3] ?? '';
  return out;
};

/**
 * Listen on a logged-in client (after XmppClient.login, in chat mode so its
 * own buffer stays short): answer disco#info queries with `features`, count
 * markers, and hand every stanza-ish chunk to `onText` (setup steps).
 */
export class PepListener {
  markers = 0;
  private tail = '';
  private waiters: { re: RegExp; resolve: (m: RegExpExecArray) => void }[] = [];
  /** what arrived since the last wait matched (setup only; cleared by quiet()) */
  private buf = '';
  private keep = true;

  constructor(
    readonly c: XmppClient,
    private readonly features: string[],
    readonly onMarker?: () => void,
  ) {
    c.chatMode(() => {});
    c.sock.on('data', (d: string) => this.data(d));
  }

  /** Stop keeping text for waits (measurement): only disco answers and marker counts. */
  quiet(): void {
    this.keep = false;
    this.buf = '';
  }

  private data(d: string): void {
    const text = this.tail + d;
    // markers
    let n = 0;
    for (let i = text.indexOf(MARKER); i !== -1; i = text.indexOf(MARKER, i + MARKER.length)) n++;
    // a marker wholly inside the kept tail was counted with the previous chunk
    for (
      let i = this.tail.indexOf(MARKER);
      i !== -1;
      i = this.tail.indexOf(MARKER, i + MARKER.length)
    )
      n--;
    this.markers += n;
    for (let k = 0; k < n; k++) this.onMarker?.();
    // disco#info queries from the server [XEP-0115 6.2]
    if (text.includes(NS_DISCO)) {
      for (const m of text.matchAll(/<iq\b[^>]*>\s*<query[^>]*disco#info[^>]*\/?>/g)) {
        if (m.index! + m[0].length <= this.tail.length) continue; // answered already
        const iq = attrs(m[0].slice(0, m[0].indexOf('>') + 1));
        if (iq.type !== 'get') continue;
        const q = attrs(m[0].slice(m[0].indexOf('<query')));
        const node = q.node ? ` node='${q.node}'` : '';
        this.c.write(
          `<iq type='result' id='${iq.id}' to='${iq.from}'><query xmlns='${NS_DISCO}'${node}><identity category='client' type='pc' name='bench'/>${this.features.map((f) => `<feature var='${f}'/>`).join('')}</query></iq>`,
        );
      }
    }
    this.tail = text.slice(-512);
    if (!this.keep) return;
    this.buf += d;
    for (const w of [...this.waiters]) {
      const m = w.re.exec(this.buf);
      if (!m) continue;
      this.buf = this.buf.slice(m.index + m[0].length);
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve(m);
    }
    if (this.buf.length > 1 << 20) this.buf = this.buf.slice(-(1 << 16));
  }

  waitFor(re: RegExp, ms = 30_000): Promise<RegExpExecArray> {
    const m = re.exec(this.buf);
    if (m) {
      this.buf = this.buf.slice(m.index + m[0].length);
      return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const w = { re, resolve: (x: RegExpExecArray) => (clearTimeout(t), resolve(x)) };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`timeout waiting for ${re}`));
      }, ms);
      this.waiters.push(w);
    });
  }

  /** Send an IQ and wait for its answer (result or error) by id. */
  async request(id: string, iq: string, ms = 30_000): Promise<string> {
    this.c.write(iq);
    const m = await this.waitFor(
      new RegExp(`<iq\\b[^>]*\\bid=['"]${id}['"][^>]*(?:/>|>[\\s\\S]*?</iq>)`),
      ms,
    );
    return m[0];
  }
}
