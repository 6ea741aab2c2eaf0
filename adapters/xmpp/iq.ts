import type { Element } from '@xmpp/xml';
import { escapeXML } from '@xmpp/xml';
import { Address, BrokerError, type Broker, type Envelope } from '../../broker/index.ts';
import type { XmppConnection } from './connection.ts';
import type { IqAnswer, IqRequest, PreAuthIqRequest } from './hooks.ts';
import { answerFromClient, iqRegistry } from './iq-registry.ts';
import { NS_CLIENT } from './ns.ts';
import { errorReply } from './stanza.ts';

const IQ_TYPES = new Set(['get', 'set', 'result', 'error']);

/**
 * IQ semantics [RFC6120 8.2.3]: id required, a known type, exactly one child
 * for get/set. Requests to the server, to the sender's account or to another
 * account's bare JID are answered by the module registered for their type and
 * payload (iq-registry.ts), else service-unavailable [RFC6120 8.4]; requests
 * to a full JID are routed.
 */
export async function handleIq(
  broker: Broker,
  conn: XmppConnection,
  el: Element,
  env: Envelope,
): Promise<void> {
  const type = el.attrs.type ?? '';
  if (!el.attrs.id) return conn.replyError(el, new BrokerError('bad-request', 'iq without id')); // [RFC6120 8.2.3]
  if (!IQ_TYPES.has(type))
    return conn.replyError(el, new BrokerError('bad-request', 'invalid iq type')); // [RFC6120 8.2.3]
  const children = el.getChildElements();
  if ((type === 'get' || type === 'set') && children.length !== 1) {
    return conn.replyError(
      el,
      new BrokerError('bad-request', 'iq get/set must have exactly one child'),
    ); // [RFC6120 8.2.3]
  }
  if (type === 'result' && children.length > 1)
    return conn.replyError(el, new BrokerError('bad-request', 'iq result has at most one child'));
  const to = el.attrs.to === undefined ? conn.address.bare() : env.to;
  const local = to.domain === broker.domain && to.isBare;
  if (type === 'result' || type === 'error') {
    if (!local) await broker.router.route(env, conn);
    // answers to our pings end here; others to an account (an app server answering a push publish [XEP-0357])
    // go through the router, whose 'route:filter' hands them to the module that asked; the rest stop there
    else if (!answerFromClient(conn, el)) await broker.router.route(env, conn);
    return;
  }
  if (!local) return broker.router.route(env, conn);
  if (to.local && !to.equals(conn.address.bare()) && !(await broker.userExists(to))) {
    return conn.replyError(el, new BrokerError('service-unavailable')); // [RFC6121 8.5.1]
  }
  const req: IqRequest = {
    conn,
    stanza: el,
    child: children[0],
    type: type as 'get' | 'set',
    from: conn.address,
    to,
  };
  let answer;
  try {
    // One lookup by (type, payload namespace, name) [iq-registry.ts]
    const keyed = iqRegistry(broker).lookup(type, children[0]);
    answer = keyed ? await keyed(req) : undefined;
  } catch (err) {
    if (err instanceof BrokerError) return conn.replyError(el, err);
    broker.log.error({ err, ns: children[0].attrs.xmlns }, 'iq handler failed');
    return conn.replyError(el, new BrokerError('internal-server-error')); // a throwing handler answers internal-server-error
  }
  if (answer === undefined) return conn.replyError(el, new BrokerError('service-unavailable')); // [RFC6120 8.4] nobody handled it
  const from = el.attrs.to === undefined ? '' : ` from='${escapeXML(to.toString())}'`;
  const head = `<iq xmlns='${NS_CLIENT}' type='result' id='${escapeXML(el.attrs.id)}'${from} to='${escapeXML(conn.address.toString())}'`;
  conn.sendStanza(answer === 'empty' ? `${head}/>` : `${head}>${answer.toString()}</iq>`);
}

/**
 * An IQ on a stream that has not authenticated: answered when a module
 * registered a pre-authentication handler for its type and payload and it
 * is addressed to the server (no `to`, or the domain); the answer has no
 * `to`, as the client has no address yet. False when nobody takes it (the
 * stream then ends with not-authorized, as for any other stanza before
 * authentication [RFC6120 4.9.3.12]).
 */
export async function handlePreAuthIq(
  broker: Broker,
  conn: XmppConnection,
  el: Element,
): Promise<boolean> {
  const type = el.attrs.type;
  const children = el.getChildElements();
  if ((type !== 'get' && type !== 'set') || children.length !== 1 || !el.attrs.id) return false;
  if (el.attrs.to !== undefined && el.attrs.to !== broker.domain) return false;
  if (el.attrs.from !== undefined) return false; // no address to claim yet [RFC6120 8.1.2.1]
  const handler = iqRegistry(broker).lookupPreAuth(type, children[0]);
  if (!handler) return false;
  const req: PreAuthIqRequest = { conn, stanza: el, child: children[0], type };
  let answer: IqAnswer;
  try {
    answer = await handler(req);
  } catch (err) {
    if (!(err instanceof BrokerError))
      broker.log.error(
        { err, ns: children[0].attrs.xmlns },
        'pre-authentication iq handler failed',
      );
    conn.sendStanza(
      errorReply(
        el,
        err instanceof BrokerError ? err : new BrokerError('internal-server-error'),
        broker.domain,
        undefined,
      ),
    );
    return true;
  }
  const head = `<iq xmlns='${NS_CLIENT}' type='result' id='${escapeXML(el.attrs.id)}' from='${escapeXML(broker.domain)}'`;
  conn.sendStanza(answer === 'empty' ? `${head}/>` : `${head}>${answer.toString()}</iq>`);
  return true;
}

/** Helper for modules: the requester's bare address. */
export function requesterBare(addr: Address): string {
  return addr.bare().toString();
}
