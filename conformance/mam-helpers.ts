// MAM queries for the black-box tests [XEP-0313] [XEP-0059]: one query with
// its form and RSM set, and the result messages matched by queryid.
import { nextId, xml, type Element, type TestClient } from './helpers.ts';

export const NS_MAM = 'urn:xmpp:mam:2';
export const NS_RSM = 'http://jabber.org/protocol/rsm';
export const NS_SID = 'urn:xmpp:sid:0';
export const NS_FORWARD = 'urn:xmpp:forward:0';
export const NS_DELAY = 'urn:xmpp:delay';

export interface Query {
  form?: Record<string, string | string[]>;
  max?: number;
  after?: string;
  before?: string;
  flip?: boolean;
  to?: string;
}

export interface Page {
  iq: Element;
  /** the <result/> elements, in the order received */
  results: Element[];
  ids: string[];
  bodies: string[];
  stamps: number[];
  first?: string;
  last?: string;
  count?: number;
  complete: boolean;
}

/** One MAM query; the result messages are matched by queryid [XEP-0313 query]. */
export async function mam(c: TestClient, q: Query = {}): Promise<Page> {
  const queryid = nextId('q');
  const children: Element[] = [];
  if (q.form) {
    const fields = [xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_MAM))];
    for (const [k, v] of Object.entries(q.form))
      fields.push(
        xml('field', { var: k }, ...(Array.isArray(v) ? v : [v]).map((x) => xml('value', {}, x))),
      );
    children.push(xml('x', { xmlns: 'jabber:x:data', type: 'submit' }, ...fields));
  }
  if (q.max !== undefined || q.after !== undefined || q.before !== undefined) {
    const set = xml('set', { xmlns: NS_RSM });
    if (q.max !== undefined) set.append(xml('max', {}, String(q.max)));
    if (q.after !== undefined) set.append(xml('after', {}, q.after));
    if (q.before !== undefined) set.append(xml('before', {}, q.before));
    children.push(set);
  }
  if (q.flip) children.push(xml('flip-page', {}));
  const iq = await c.request(
    xml(
      'iq',
      { type: 'set', ...(q.to ? { to: q.to } : {}) },
      xml('query', { xmlns: NS_MAM, queryid }, ...children),
    ),
    20_000,
  );
  const results = c.received
    .filter((e) => e.name === 'message' && e.getChild('result', NS_MAM)?.attrs.queryid === queryid)
    .map((e) => e.getChild('result', NS_MAM) as Element);
  c.drain();
  const fin = iq.getChild('fin', NS_MAM);
  const set = fin?.getChild('set', NS_RSM);
  const inner = (r: Element) => r.getChild('forwarded', NS_FORWARD)?.getChild('message');
  return {
    iq,
    results,
    ids: results.map((r) => r.attrs.id as string),
    bodies: results.map((r) => inner(r)?.getChildText('body') ?? ''),
    stamps: results.map((r) =>
      Date.parse(
        r.getChild('forwarded', NS_FORWARD)?.getChild('delay', NS_DELAY)?.attrs.stamp ?? '',
      ),
    ),
    first: set?.getChildText('first') ?? undefined,
    last: set?.getChildText('last') ?? undefined,
    count:
      set?.getChildText('count') === null || set === undefined
        ? undefined
        : Number(set.getChildText('count')),
    complete: fin?.attrs.complete === 'true',
  };
}
