import { escapeXML, type Element } from '@xmpp/xml';
import {
  BrokerError,
  type AppCondition,
  type Broker,
  type Envelope,
  type ErrorType,
} from '../../broker/index.ts';
import { xmppHooks } from './hooks.ts';
import { NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING } from './ns.ts';
import { parseStored } from './stanza.ts';

/**
 * A service domain such as `upload.{domain}` or `proxy.{domain}`: IQs to
 * it reach a module through `broker.hosts`, as envelopes. This is the part
 * every such service shares: only this server's accounts, one payload
 * child, a handler per (type, namespace, name), disco#info with identity
 * and features, disco#items (empty) and ping, and the exact error answers.
 */

/** The payload XML of the result, or undefined for an empty result. Throw a BrokerError for an error answer. */
export type ServiceIqHandler = (
  child: Element,
  env: Envelope,
) => Promise<string | undefined> | string | undefined;

export interface ServiceDomain {
  /** the module that owns it */
  owner: string;
  host: string;
  /** listed in the server's disco#items under this name */
  name: string;
  identity: { category: string; type: string };
  /** besides disco#info, disco#items and ping */
  features: string[];
  /** extra disco#info content (an XEP-0128 form) */
  infoExtra?: () => string;
  /** keyed `get {ns}name` / `set {ns}name` */
  handlers: Record<string, ServiceIqHandler>;
  /** the wire form of a module's own error (type, application condition) */
  mapError?: (err: BrokerError) => { type?: ErrorType; app?: AppCondition } | undefined;
}

/** `get {ns}name` for a handler table. */
export const iqKey = (type: 'get' | 'set', ns: string, name: string): string =>
  `${type} {${ns}}${name}`;

/** Serve `svc.host`; returns the remover (for ctx.onUnload). */
export function serveDomain(broker: Broker, svc: ServiceDomain): () => void {
  const info = () =>
    `<query xmlns='${NS_DISCO_INFO}'><identity category='${svc.identity.category}' type='${svc.identity.type}' name='${escapeXML(svc.name)}'/>` +
    [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, ...svc.features]
      .map((f) => `<feature var='${f}'/>`)
      .join('') +
    (svc.infoExtra?.() ?? '') +
    `</query>`;
  const handlers: Record<string, ServiceIqHandler> = {
    [iqKey('get', NS_DISCO_INFO, 'query')]: (child) => {
      if (child.attrs.node) throw new BrokerError('item-not-found'); // no nodes [XEP-0030 3.2]
      return info();
    },
    [iqKey('get', NS_DISCO_ITEMS, 'query')]: () => `<query xmlns='${NS_DISCO_ITEMS}'/>`,
    [iqKey('get', NS_PING, 'ping')]: () => undefined,
    ...svc.handlers,
  };
  const result = (env: Envelope, payload?: string) =>
    broker.router.route({
      kind: 'iq',
      type: 'result',
      from: env.to,
      to: env.from,
      id: env.id,
      extensions: payload ? [payload] : [],
    });
  const error = (env: Envelope, err: BrokerError) => {
    const mapped = svc.mapError?.(err);
    return broker.router.route({
      kind: 'iq',
      type: 'error',
      from: env.to,
      to: env.from,
      id: env.id,
      extensions: [],
      error: {
        condition: err.condition,
        type: mapped?.type ?? err.type,
        text: err.text,
        app: mapped?.app ?? err.app,
      },
    });
  };
  const handle = async (env: Envelope): Promise<void> => {
    if (env.kind !== 'iq') {
      if (env.kind === 'message' && env.type !== 'error')
        await broker.router.bounce(env, 'service-unavailable');
      return;
    }
    if (env.type === 'result' || env.type === 'error') return;
    try {
      // only this server's accounts use its services
      if (env.from.domain !== broker.domain || !env.from.local)
        throw new BrokerError(
          'not-allowed',
          `only accounts of ${broker.domain} may use this service`,
        );
      if (env.to.local || env.to.resource) throw new BrokerError('service-unavailable');
      const child = parseStored(env.extensions);
      if (!child) throw new BrokerError('bad-request');
      const h = handlers[`${env.type} {${child.attrs.xmlns ?? ''}}${child.name}`];
      if (!h) throw new BrokerError('service-unavailable'); // [RFC6120 8.4]
      await result(env, await h(child, env));
    } catch (err) {
      if (err instanceof BrokerError) return error(env, err);
      throw err;
    }
  };
  const offHost = broker.hosts.register(svc.owner, svc.host, handle);
  const offItems = xmppHooks(broker).on('disco:items', (items, target) =>
    target.domain === broker.domain && !target.local
      ? [...items, { jid: svc.host, name: svc.name }]
      : undefined,
  );
  return () => {
    offItems();
    offHost();
  };
}
