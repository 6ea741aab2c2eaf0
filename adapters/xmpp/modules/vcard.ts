import type { Element } from '@xmpp/xml';
import { Address, BrokerError, defineModule, type Broker } from '../../../broker/index.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_VCARD } from '../ns.ts';
import { discoFeature } from './basics.ts';
import { RawXml } from './pep.ts';

/** The stored vCards, for modules that convert to and from them (vcard-pep: XEP-0153, XEP-0398, XEP-0292). */
export interface VcardService {
  /** the stored vCard's XML, if any */
  get(owner: Address): Promise<string | undefined>;
  /** store a vCard (already checked) and tell the listeners, unless `quiet` (a conversion writing back) */
  put(owner: Address, vcard: Element, quiet?: boolean): Promise<void>;
  /** called after the account set its vCard (vcard-temp set), with the element stored and the one it replaced */
  readonly changed: Set<
    (owner: Address, vcard: Element, previous: string | undefined) => Promise<void>
  >;
  readonly maxBytes: number;
}

const services = new WeakMap<Broker, VcardService>();

export function vcardService(broker: Broker): VcardService | undefined {
  return services.get(broker);
}

/**
 * XEP-0054 vcard-temp: each account stores one vCard (`kv:vcard`, the XML
 * as sent); anyone on the server may read it [XEP-0054 3.1], only the
 * account sets it [XEP-0054 3.2]. The vcard-pep module keeps it in step
 * with the PEP avatar and vCard4 nodes.
 */
export default defineModule({
  name: 'vcard',
  description: 'vcard-temp: one vCard per account',
  options: {
    maxBytes: {
      type: 'number',
      default: 128 * 1024,
      min: 256,
      doc: 'largest vCard, bytes of XML (photos included); larger is refused with not-acceptable',
    },
  },
  specs: [
    {
      spec: 'XEP-0054',
      status: 'complete',
      note: 'avatar hashes in presence and PEP conversions: module vcard-pep',
    },
  ],
  setup(ctx) {
    const store = ctx.broker.storage.kv<{ xml: string }>('vcard');
    const service: VcardService = {
      async get(owner) {
        return (await store.get(owner.bare().toString()))?.xml;
      },
      async put(owner, vcard, quiet = false) {
        const text = vcard.toString();
        if (Buffer.byteLength(text) > ctx.options.maxBytes)
          throw new BrokerError(
            'not-acceptable',
            `vCard larger than ${ctx.options.maxBytes} bytes`,
          );
        const key = owner.bare().toString();
        const previous = !quiet && service.changed.size ? (await store.get(key))?.xml : undefined;
        await store.put(key, { xml: text });
        if (quiet) return;
        for (const fn of service.changed) {
          // The vCard is stored: a conversion that fails (PEP node limit) is logged, not the client's error.
          await fn(owner.bare(), vcard, previous).catch((err: unknown) =>
            ctx.log.warn({ err, owner: key }, 'vCard conversion failed'),
          );
        }
      },
      changed: new Set(),
      maxBytes: ctx.options.maxBytes,
    };
    services.set(ctx.broker, service);
    ctx.onUnload(() => {
      services.delete(ctx.broker);
    });
    const iq = iqRegistry(ctx.broker);
    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_VCARD, name: 'vCard' }, async (req) => {
        if (req.to.isDomain) return undefined;
        return new RawXml((await service.get(req.to)) ?? `<vCard xmlns='${NS_VCARD}'/>`); // [XEP-0054 3.1] none: an empty vCard
      }),
    );
    ctx.onUnload(
      iq.register(
        ctx.name,
        { type: 'set', ns: NS_VCARD, name: 'vCard' },
        async (req): Promise<'empty'> => {
          if (!req.to.isDomain && !req.to.equals(req.from.bare()))
            throw new BrokerError('forbidden', 'only the account sets its vCard'); // [XEP-0054 3.2]
          await service.put(req.from.bare(), req.child);
          return 'empty';
        },
      ),
    );
    discoFeature(ctx, NS_VCARD, false);
  },
});
