import { xml } from '@xmpp/xml';
import { BrokerError, defineModule } from '../../../broker/index.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_TIME } from '../ns.ts';
import { discoFeature } from './basics.ts';

/** XEP-0202 Entity Time: the server's clock, in UTC [XEP-0202 4]; an account's time is its clients' (full JIDs, routed). */
export default defineModule({
  name: 'time',
  description: 'Entity Time of the server',
  options: {},
  specs: [
    {
      spec: 'XEP-0202',
      status: 'complete',
      note: 'the server answers for itself; requests to full JIDs are routed to the client',
    },
  ],
  setup(ctx) {
    const iq = iqRegistry(ctx.broker);
    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_TIME, name: 'time' }, (req) => {
        if (!req.to.isDomain) return undefined;
        return xml(
          'time',
          { xmlns: NS_TIME },
          xml('tzo', {}, '+00:00'),
          xml('utc', {}, new Date().toISOString().replace(/\.\d+Z$/, 'Z')),
        );
      }),
    );
    ctx.onUnload(
      iq.register(ctx.name, { type: 'set', ns: NS_TIME, name: 'time' }, (req) => {
        if (!req.to.isDomain) return undefined;
        throw new BrokerError('bad-request');
      }),
    );
    discoFeature(ctx, NS_TIME);
  },
});
