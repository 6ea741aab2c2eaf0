import os from 'node:os';
import { Element, xml } from '@xmpp/xml';
import { BrokerError, defineModule, type Broker } from '../../../broker/index.ts';
import { addStreamFeature } from '../features.ts';
import { xmppHooks, type DiscoInfo, type IqRequest } from '../hooks.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_SESSION, NS_VERSION } from '../ns.ts';

/** Adds `feature` to disco#info of the domain (`domainOnly`) or of every target. */
export function discoFeature(
  ctx: { broker: Broker; onUnload(fn: () => void): void },
  feature: string,
  domainOnly = true,
): void {
  ctx.onUnload(
    xmppHooks(ctx.broker).on('disco:info', (info, target) =>
      !domainOnly || target.isDomain
        ? { ...info, features: [...info.features, feature] }
        : undefined,
    ),
  );
}

/** XEP-0199: the server answers pings to itself and to its accounts' bare JIDs. */
export const ping = defineModule({
  name: 'ping',
  description: 'XMPP Ping (answers; see server-ping for pings the server sends)',
  options: {},
  specs: [{ spec: 'XEP-0199', section: '4.2-4.3 (client-to-server pings)', status: 'complete' }],
  setup(ctx) {
    ctx.onUnload(
      iqRegistry(ctx.broker).register(
        ctx.name,
        { type: 'get', ns: NS_PING, name: 'ping' },
        () => 'empty',
      ),
    );
    discoFeature(ctx, NS_PING, false);
  },
});

/** XEP-0092: software version of the server. */
export const version = defineModule({
  name: 'version',
  description: 'Software Version',
  options: {
    showOs: {
      type: 'boolean',
      default: false,
      doc: 'include the operating system in answers (off: less to tell an attacker)',
    },
  },
  specs: [{ spec: 'XEP-0092', status: 'complete' }],
  setup(ctx) {
    const iq = iqRegistry(ctx.broker);
    const answer = (req: IqRequest) => {
      if (!req.to.isDomain) return undefined; // an account's version is its clients' business
      const q = xml(
        'query',
        { xmlns: NS_VERSION },
        xml('name', {}, 'Parley'),
        xml('version', {}, ctx.broker.version),
      );
      if (ctx.options.showOs) q.append(xml('os', {}, `${os.type()} ${os.release()}`));
      return q;
    };
    ctx.onUnload(iq.register(ctx.name, { type: 'get', ns: NS_VERSION, name: 'query' }, answer));
    ctx.onUnload(
      iq.register(ctx.name, { type: 'set', ns: NS_VERSION, name: 'query' }, (req) => {
        if (!req.to.isDomain) return undefined;
        throw new BrokerError('bad-request');
      }),
    );
    discoFeature(ctx, NS_VERSION);
  },
});

/** XEP-0030: disco#info and #items, features collected from the loaded modules. */
export const disco = defineModule({
  name: 'disco',
  description: 'Service Discovery',
  options: {},
  specs: [
    {
      spec: 'XEP-0030',
      status: 'complete',
      note: "nodes only where a module answers them (ad-hoc commands); the domain's items are the service domains modules add (conference.{domain})",
    },
  ],
  setup(ctx) {
    const hooks = xmppHooks(ctx.broker);
    const iq = iqRegistry(ctx.broker);
    const info = async (req: IqRequest) => {
      const node = req.child.attrs.node as string | undefined;
      const base: DiscoInfo = req.to.isDomain
        ? {
            identities: [{ category: 'server', type: 'im', name: 'Parley' }],
            features: [NS_DISCO_INFO, NS_DISCO_ITEMS],
          }
        : { identities: [{ category: 'account', type: 'registered' }], features: [NS_DISCO_INFO] };
      // A node only a module knows (an ad-hoc command); none: item-not-found [XEP-0030 3.2]
      const result = node
        ? await hooks.fold('disco:node-info', undefined, req.to, req.from, node)
        : await hooks.fold('disco:info', base, req.to, req.from);
      if (!result) throw new BrokerError('item-not-found');
      const q = new Element('query', { xmlns: NS_DISCO_INFO });
      for (const id of result.identities)
        q.append(xml('identity', { category: id.category, type: id.type, name: id.name }));
      for (const f of [...new Set(result.features)].sort()) q.append(xml('feature', { var: f }));
      for (const form of result.forms ?? []) q.append(form); // [XEP-0128 2] after the features
      if (node) q.attrs.node = node;
      return q;
    };
    const items = async (req: IqRequest) => {
      const node = req.child.attrs.node as string | undefined;
      const list: { jid: string; node?: string; name?: string }[] | undefined = node
        ? await hooks.fold('disco:node-items', undefined, req.to, req.from, node)
        : req.to.isDomain
          ? await hooks.fold('disco:items', [], req.to, req.from)
          : [];
      if (!list) throw new BrokerError('item-not-found');
      const q = xml('query', { xmlns: NS_DISCO_ITEMS, ...(node && { node }) });
      for (const it of list) q.append(xml('item', { jid: it.jid, node: it.node, name: it.name }));
      return q;
    };
    const badRequest = () => {
      throw new BrokerError('bad-request');
    };
    ctx.onUnload(iq.register(ctx.name, { type: 'get', ns: NS_DISCO_INFO, name: 'query' }, info));
    ctx.onUnload(iq.register(ctx.name, { type: 'get', ns: NS_DISCO_ITEMS, name: 'query' }, items));
    ctx.onUnload(
      iq.register(ctx.name, { type: 'set', ns: NS_DISCO_INFO, name: 'query' }, badRequest),
    );
    ctx.onUnload(
      iq.register(ctx.name, { type: 'set', ns: NS_DISCO_ITEMS, name: 'query' }, badRequest),
    );
  },
});

/** RFC 3921 session establishment, kept for old clients (advertised as optional). */
export const legacySession = defineModule({
  name: 'legacy-session',
  description: 'RFC 3921 session element (no-op)',
  options: {},
  specs: [
    {
      spec: 'RFC3921',
      section: '3 (session establishment)',
      status: 'complete',
      note: 'accepted as a no-op, advertised as optional',
    },
  ],
  setup(ctx) {
    ctx.onUnload(
      iqRegistry(ctx.broker).register(
        ctx.name,
        { type: 'set', ns: NS_SESSION, name: 'session' },
        () => 'empty',
      ),
    );
    ctx.onUnload(
      addStreamFeature(ctx.broker, () => `<session xmlns='${NS_SESSION}'><optional/></session>`),
    ); // [RFC3921 3], optional per RFC 6121 Appendix E
  },
});
