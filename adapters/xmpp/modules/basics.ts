import os from 'node:os';
import { Element, xml } from '@xmpp/xml';
import { BrokerError, defineModule } from '../../../broker/index.ts';
import { xmppHooks, type DiscoInfo } from '../hooks.ts';

const NS_PING = 'urn:xmpp:ping';
const NS_VERSION = 'jabber:iq:version';
const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
const NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session';

/** XEP-0199: the server answers pings to itself and to its accounts' bare JIDs. */
export const ping = defineModule({
  name: 'ping',
  description: 'XMPP Ping',
  options: {},
  specs: [{ spec: 'XEP-0199', status: 'complete' }],
  setup(ctx) {
    const hooks = xmppHooks(ctx.broker);
    ctx.onUnload(hooks.on('iq', (req) => (req.type === 'get' && req.child.is('ping', NS_PING) ? 'empty' : undefined)));
    ctx.onUnload(hooks.on('disco:info', (info) => ({ ...info, features: [...info.features, NS_PING] })));
  },
});

/** XEP-0092: software version of the server. */
export const version = defineModule({
  name: 'version',
  description: 'Software Version',
  options: {
    showOs: { type: 'boolean', default: false, doc: 'include the operating system in answers (off: less to tell an attacker)' },
  },
  specs: [{ spec: 'XEP-0092', status: 'complete' }],
  setup(ctx) {
    const hooks = xmppHooks(ctx.broker);
    ctx.onUnload(
      hooks.on('iq', (req) => {
        if (!req.child.is('query', NS_VERSION) || !req.to.isDomain) return undefined;
        if (req.type !== 'get') throw new BrokerError('bad-request');
        const q = xml('query', { xmlns: NS_VERSION }, xml('name', {}, 'Parley'), xml('version', {}, ctx.broker.version));
        if (ctx.options.showOs) q.append(xml('os', {}, `${os.type()} ${os.release()}`));
        return q;
      }),
    );
    ctx.onUnload(hooks.on('disco:info', (info, target) => (target.isDomain ? { ...info, features: [...info.features, NS_VERSION] } : undefined)));
  },
});

/** XEP-0030: disco#info and #items, features collected from the loaded modules. */
export const disco = defineModule({
  name: 'disco',
  description: 'Service Discovery',
  options: {},
  specs: [{ spec: 'XEP-0030', status: 'complete', note: 'no nodes; items are empty' }],
  setup(ctx) {
    const hooks = xmppHooks(ctx.broker);
    ctx.onUnload(
      hooks.on('iq', async (req) => {
        const info = req.child.is('query', NS_DISCO_INFO);
        const items = req.child.is('query', NS_DISCO_ITEMS);
        if (!info && !items) return undefined;
        if (req.type !== 'get') throw new BrokerError('bad-request');
        if (req.child.attrs.node) throw new BrokerError('item-not-found'); // no nodes
        if (items) return xml('query', { xmlns: NS_DISCO_ITEMS });
        const base: DiscoInfo = req.to.isDomain
          ? { identities: [{ category: 'server', type: 'im', name: 'Parley' }], features: [NS_DISCO_INFO, NS_DISCO_ITEMS] }
          : { identities: [{ category: 'account', type: 'registered' }], features: [NS_DISCO_INFO] };
        const result = await hooks.fold('disco:info', base, req.to, req.from);
        const q = new Element('query', { xmlns: NS_DISCO_INFO });
        for (const id of result.identities) q.append(xml('identity', { category: id.category, type: id.type, name: id.name }));
        for (const f of [...new Set(result.features)].sort()) q.append(xml('feature', { var: f }));
        return q;
      }),
    );
  },
});

/** RFC 3921 session establishment, kept for old clients (advertised as optional). */
export const legacySession = defineModule({
  name: 'legacy-session',
  description: 'RFC 3921 session element (no-op)',
  options: {},
  specs: [{ spec: 'RFC3921', section: '3 (session establishment)', status: 'complete', note: 'accepted as a no-op, advertised as optional' }],
  setup(ctx) {
    const hooks = xmppHooks(ctx.broker);
    ctx.onUnload(hooks.on('iq', (req) => (req.type === 'set' && req.child.is('session', NS_SESSION) ? 'empty' : undefined)));
  },
});
