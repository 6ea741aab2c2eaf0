import { escapeXML, escapeXMLText, type Element } from '@xmpp/xml';
import { Address, BrokerError, type Broker } from '../../broker/index.ts';
import { NS_BIND, NS_CLIENT } from './ns.ts';

/**
 * Resource binding [RFC6120 7]: check the bind IQ and reserve the resource
 * it asks for (or a generated one). Returns the full address, or the error
 * to answer with; the stream (connection.ts) binds the session.
 */
export function reserveResource(
  broker: Broker,
  el: Element,
  username: string,
): { full: Address } | { error: BrokerError } {
  const type = el.attrs.type;
  const child = el.getChildElements()[0];
  if (!el.attrs.id) return { error: new BrokerError('bad-request', 'iq without id') };
  if (type !== 'set' || !child || !child.is('bind', NS_BIND))
    return { error: new BrokerError('not-authorized', 'bind a resource first') };
  try {
    const requested = child.getChildText('resource')?.trim() || undefined;
    return { full: broker.sessions.reserve(Address.of(username, broker.domain), requested) };
  } catch (err) {
    if (err instanceof BrokerError) {
      // [RFC6120 7.7.2.1] a resource that fails Resourceprep is bad-request
      return {
        error: err.condition === 'jid-malformed' ? new BrokerError('bad-request', err.text) : err,
      };
    }
    throw err;
  }
}

/** The bind result carrying the full JID [RFC6120 7.6.1]. */
export function bindResultXml(id: string, full: Address): string {
  return `<iq xmlns='${NS_CLIENT}' type='result' id='${escapeXML(id)}'><bind xmlns='${NS_BIND}'><jid>${escapeXMLText(full.toString())}</jid></bind></iq>`;
}
