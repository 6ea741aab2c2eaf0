// What the user archive (mam.ts) and the room archive (muc-mam.ts) parse alike:
// XEP-0082 DateTimes in the query form and the XEP-0059 RSM set.
import type { Element } from '@xmpp/xml';
import { BrokerError } from '../../../broker/index.ts';
import { NS_RSM } from '../ns.ts';

/** [XEP-0082] a DateTime: date, time with optional fraction, Z or an offset. */
const DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** A form field's DateTime in ms; bad-request otherwise [XEP-0313 filter-time]. */
export function dateTime(value: string, field: string): number {
  const ms = DATETIME.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(ms)) throw new BrokerError('bad-request', `${field}: not an XEP-0082 DateTime`);
  return ms;
}

/** The RSM set of a query as sent: `before` '' asks for the last page [XEP-0059 2.5]. */
export interface RsmRequest {
  max?: number;
  after?: string;
  before?: string;
}

/** [XEP-0059 2] the `<set/>` of a query; index is not supported, after with before is bad-request. */
export function parseRsm(query: Element): RsmRequest {
  const set = query.getChild('set', NS_RSM);
  const out: RsmRequest = {};
  if (!set) return out;
  if (set.getChild('index'))
    throw new BrokerError('feature-not-implemented', 'RSM index is not supported'); // [XEP-0059 2.4]
  const max = set.getChild('max');
  if (max) {
    const text = max.getText().trim();
    if (!/^\d{1,9}$/.test(text))
      throw new BrokerError('bad-request', 'max must be a non-negative integer');
    out.max = Number(text);
  }
  const after = set.getChild('after');
  if (after) out.after = after.getText();
  const before = set.getChild('before');
  if (before) out.before = before.getText();
  if (out.after !== undefined && out.before !== undefined)
    throw new BrokerError('bad-request', 'after and before together');
  return out;
}
