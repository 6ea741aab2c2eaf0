import { BrokerError, defineModule } from '../../../broker/index.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_VCARD } from '../ns.ts';
import { discoFeature } from './basics.ts';
import { RawXml } from './pep.ts';

/**
 * XEP-0054 vcard-temp: each account stores one vCard (`kv:vcard`, the XML
 * as sent); anyone on the server may read it [XEP-0054 3.1], only the
 * account sets it [XEP-0054 3.2].
 */
export default defineModule({
  name: 'vcard',
  description: 'vcard-temp: one vCard per account',
  options: {
    maxBytes: { type: 'number', default: 128 * 1024, min: 256, doc: 'largest vCard, bytes of XML (photos included); larger is refused with not-acceptable' },
  },
  specs: [{ spec: 'XEP-0054', status: 'complete', note: 'XEP-0153 avatar hashes in presence are not added' }],
  setup(ctx) {
    const store = ctx.broker.storage.kv<{ xml: string }>('vcard');
    const iq = iqRegistry(ctx.broker);
    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_VCARD, name: 'vCard' }, async (req) => {
        if (req.to.isDomain) return undefined;
        const stored = await store.get(req.to.bare().toString());
        return new RawXml(stored?.xml ?? `<vCard xmlns='${NS_VCARD}'/>`); // [XEP-0054 3.1] none: an empty vCard
      }),
    );
    ctx.onUnload(
      iq.register(ctx.name, { type: 'set', ns: NS_VCARD, name: 'vCard' }, async (req): Promise<'empty'> => {
        if (!req.to.isDomain && !req.to.equals(req.from.bare())) throw new BrokerError('forbidden', 'only the account sets its vCard'); // [XEP-0054 3.2]
        const text = req.child.toString();
        if (Buffer.byteLength(text) > ctx.options.maxBytes) throw new BrokerError('not-acceptable', `vCard larger than ${ctx.options.maxBytes} bytes`);
        await store.put(req.from.bare().toString(), { xml: text });
        return 'empty';
      }),
    );
    discoFeature(ctx, NS_VCARD, false);
  },
});
