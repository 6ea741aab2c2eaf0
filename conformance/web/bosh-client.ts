// A raw BOSH client for the conformance suite [XEP-0124, XEP-0206]: every
// request is a hand-written <body/>, every response is parsed strictly
// (namespace-aware: an undeclared prefix such as stream: fails the test).
import { randomInt } from 'node:crypto';
import type { Element } from '@xmpp/xml';
import { DOMAIN, NS_BIND, NS_SASL, NS_STREAM, parseStrict, ScramClient } from '../helpers.ts';

export { parseStrict };

export const NS_HTTPBIND = 'http://jabber.org/protocol/httpbind';
export const NS_XBOSH = 'urn:xmpp:xbosh';

export interface BoshResponse {
  status: number;
  headers: Headers;
  text: string;
  /** the parsed <body/> (undefined when the response is not XML) */
  body: Element;
}

/** POST a text body to the BOSH endpoint. */
export async function post(
  url: string,
  text: string,
  headers: Record<string, string> = {},
): Promise<BoshResponse> {
  const r = await fetch(url, {
    method: 'POST',
    body: text,
    headers: { 'content-type': 'text/xml; charset=utf-8', ...headers },
  });
  const t = await r.text();
  return {
    status: r.status,
    headers: r.headers,
    text: t,
    body: t.trim().startsWith('<') ? parseStrict(t) : (undefined as unknown as Element),
  };
}

const attrText = (attrs: Record<string, string | number | undefined>): string =>
  Object.entries(attrs)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}='${v}'`)
    .join('');

/** One BOSH session driven by hand: explicit rids, an inbox of every payload received. */
export class BoshClient {
  sid = '';
  /** the last rid used */
  rid: number;
  /** payloads received and not yet consumed by waitFor */
  readonly inbox: Element[] = [];

  constructor(
    readonly url: string,
    firstRid = randomInt(1_000_000, 1_000_000_000),
  ) {
    this.rid = firstRid - 1;
  }

  /** A <body/> text; the wrapper declares the xmpp: prefix for xmpp:restart / xmpp:version. */
  wrap(attrs: Record<string, string | number | undefined>, inner = ''): string {
    const open = `<body xmlns='${NS_HTTPBIND}' xmlns:xmpp='${NS_XBOSH}'${attrText(attrs)}`;
    return inner ? `${open}>${inner}</body>` : `${open}/>`;
  }

  /** The session creation request [XEP-0124 §7.1, XEP-0206 §3]. */
  async create(attrs: Record<string, string | number | undefined> = {}): Promise<BoshResponse> {
    const r = await this.post(
      this.wrap({
        rid: ++this.rid,
        to: DOMAIN,
        'xml:lang': 'en',
        wait: 2,
        hold: 1,
        ver: '1.6',
        'xmpp:version': '1.0',
        ...attrs,
      }),
    );
    this.sid = r.body.attrs.sid ?? '';
    return r;
  }

  /** The text of the next request (rid + 1). */
  next(inner = '', attrs: Record<string, string | number | undefined> = {}): string {
    return this.wrap({ rid: ++this.rid, sid: this.sid, ...attrs }, inner);
  }

  /** Send the next request and wait for its response. */
  send(inner = '', attrs: Record<string, string | number | undefined> = {}): Promise<BoshResponse> {
    return this.post(this.next(inner, attrs));
  }

  async post(text: string): Promise<BoshResponse> {
    const r = await post(this.url, text);
    if (r.body) this.inbox.push(...r.body.getChildElements());
    return r;
  }

  /** The first payload matching pred, polling with empty requests until it comes. */
  async waitFor(
    pred: (el: Element) => boolean,
    timeoutMs = 8000,
    what = 'payload',
  ): Promise<Element> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex(pred);
      if (i !== -1) return this.inbox.splice(i, 1)[0];
      if (Date.now() > deadline)
        throw new Error(
          `no ${what} within ${timeoutMs} ms; inbox: ${this.inbox.map(String).join(' ')}`,
        );
      const r = await this.send();
      if (r.body?.attrs.type === 'terminate')
        throw new Error(`session terminated while waiting for ${what}: ${r.text}`);
    }
  }

  /** SASL SCRAM-SHA-256, restart, bind [XEP-0206 §5]; returns the bound JID and the restart response. */
  async login(
    username: string,
    password: string,
    resource = 'bosh',
  ): Promise<{ jid: string; restart: BoshResponse; scram: ScramClient }> {
    const scram = new ScramClient('SHA-256', username, password);
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    await this.send(
      `<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${b64(scram.clientFirst())}</auth>`,
    );
    const challenge = await this.waitFor(
      (el) => el.is('challenge', NS_SASL) || el.is('failure', NS_SASL),
      8000,
      'SASL challenge',
    );
    if (!challenge.is('challenge', NS_SASL)) throw new Error(`SASL failed: ${challenge}`);
    const serverFirst = Buffer.from(challenge.getText(), 'base64').toString('utf8');
    await this.send(
      `<response xmlns='${NS_SASL}'>${b64(scram.clientFinal(serverFirst))}</response>`,
    );
    const outcome = await this.waitFor(
      (el) => el.is('success', NS_SASL) || el.is('failure', NS_SASL),
      8000,
      'SASL outcome',
    );
    if (!outcome.is('success', NS_SASL)) throw new Error(`SASL failed: ${outcome}`);
    if (!scram.verifyServerFinal(Buffer.from(outcome.getText(), 'base64').toString('utf8')))
      throw new Error('bad SCRAM server signature');
    this.inbox.length = 0; // the first stream's features are stale now
    const restart = await this.send('', { to: DOMAIN, 'xml:lang': 'en', 'xmpp:restart': 'true' });
    await this.waitFor((el) => el.is('features', NS_STREAM), 8000, 'stream features after restart');
    await this.send(
      `<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='${NS_BIND}'><resource>${resource}</resource></bind></iq>`,
    );
    const bound = await this.waitFor(
      (el) => el.name === 'iq' && el.attrs.id === 'bind1',
      8000,
      'bind result',
    );
    const jid = bound.getChild('bind', NS_BIND)?.getChildText('jid');
    if (bound.attrs.type !== 'result' || !jid) throw new Error(`bind failed: ${bound}`);
    return { jid, restart, scram };
  }
}
