import { xml } from '@xmpp/xml';
import { BrokerError, defineModule } from '../../../broker/index.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_LAST } from '../ns.ts';
import { discoFeature } from './basics.ts';

/**
 * XEP-0012 Last Activity: to an account, the seconds since its last session
 * ended (0 while online), for the account itself and contacts allowed to see
 * its presence [XEP-0012 4]; to the server, its uptime [XEP-0012 5]. The
 * logout times, with the status text of the unavailable presence the last
 * session sent (none when its connection just dropped), live in
 * `kv:last-activity`.
 */
export default defineModule({
  name: 'last-activity',
  description: 'Last Activity: when an account was last online, and server uptime',
  options: {},
  specs: [
    {
      spec: 'XEP-0012',
      status: 'complete',
      note: 'logout time and the status text of the unavailable presence of the last session to leave; server uptime',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const store = broker.storage.kv<{ at: number; status?: string }>('last-activity');
    ctx.onUnload(
      broker.hooks.on('session:unbound', async (s) => {
        if (broker.sessions.sessionsOf(s.address).length === 0)
          await store.put(s.address.bare().toString(), {
            at: Date.now(),
            ...(s.goneStatus ? { status: s.goneStatus } : {}),
          });
      }),
    );
    const iq = iqRegistry(broker);
    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_LAST, name: 'query' }, async (req) => {
        if (req.to.isDomain)
          return xml('query', {
            xmlns: NS_LAST,
            seconds: String(Math.floor((Date.now() - broker.startedAt) / 1000)),
          }); // [XEP-0012 5]
        const user = req.to.bare();
        if (!req.from.bare().equals(user)) {
          const item = await broker.roster.item(user.toString(), req.from.bare().toString());
          if (item?.subscription !== 'from' && item?.subscription !== 'both')
            throw new BrokerError('forbidden'); // [XEP-0012 4]
        }
        if (broker.sessions.sessionsOf(user).some((s) => s.available))
          return xml('query', { xmlns: NS_LAST, seconds: '0' });
        const rec = await store.get(user.toString());
        if (!rec) throw new BrokerError('item-not-found', 'never logged out');
        // [XEP-0012 4] the status of the last unavailable presence as the query's text
        return xml(
          'query',
          {
            xmlns: NS_LAST,
            seconds: String(Math.max(0, Math.floor((Date.now() - rec.at) / 1000))),
          },
          ...(rec.status ? [rec.status] : []),
        );
      }),
    );
    discoFeature(ctx, NS_LAST);
  },
});
