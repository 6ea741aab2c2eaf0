import { Element, escapeXML, escapeXMLText } from '@xmpp/xml';
import { Address, BrokerError, defineModule, type RosterItem } from '../../../broker/index.ts';
import { addStreamFeature } from '../features.ts';
import type { IqRequest } from '../hooks.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_ROSTER as NS, NS_ROSTERVER } from '../ns.ts';
import { discoFeature } from './basics.ts';

/** One roster item as XML [RFC6121 2.1.2]. */
export function rosterItemXml(item: RosterItem): string {
  const sub = item.removed ? 'remove' : item.subscription;
  let s = `<item jid='${escapeXML(item.jid)}' subscription='${sub}'`;
  if (item.name) s += ` name='${escapeXML(item.name)}'`;
  if (item.ask && !item.removed) s += ` ask='subscribe'`;
  if (item.approved && !item.removed) s += ` approved='true'`;
  const groups = item.removed ? [] : item.groups;
  if (groups.length === 0) return `${s}/>`;
  return `${s}>${groups.map((g) => `<group>${escapeXMLText(g)}</group>`).join('')}</item>`;
}

/** The roster protocol: get (with versioning), set, remove [RFC6121 2]. */
export default defineModule({
  name: 'roster',
  description: 'Roster get/set/remove, pushes and roster versioning',
  options: {},
  specs: [
    { spec: 'RFC6121', section: '2 (roster management, versioning)', status: 'complete' },
    { spec: 'RFC6121', section: '3 (subscriptions, pre-approval)', status: 'complete' },
  ],
  setup(ctx) {
    const broker = ctx.broker;
    const handle = async (req: IqRequest) => {
      const user = req.from.bare();
      // [RFC6121 2.1.5] only the account itself may read or change its roster
      if (!req.to.equals(user)) throw new BrokerError('forbidden');
      if (req.type === 'get') {
        req.conn.interested = true; // [RFC6121 2.2] now an interested resource
        const { ver, items } = await broker.roster.get(user.toString());
        const clientVer = req.child.attrs.ver;
        // [RFC6121 2.6.3] same version: empty result, changes (none) follow as pushes
        if (clientVer !== undefined && clientVer === ver) return 'empty';
        const q = new Element('query', { xmlns: NS, ver });
        const xml = items.map(rosterItemXml).join('');
        return new RawElement(q, xml);
      }
      const items = req.child.getChildren('item');
      if (items.length !== 1) throw new BrokerError('bad-request', 'exactly one item'); // [RFC6121 2.3.3]
      const item = items[0];
      let contact: Address;
      try {
        contact = Address.parse(item.attrs.jid ?? '');
      } catch {
        throw new BrokerError('bad-request', 'invalid jid'); // [RFC6121 2.3.3]
      }
      const sub = item.attrs.subscription;
      if (sub === 'remove') {
        const before = await broker.roster.remove(user.toString(), contact.toString());
        await broker.presence.rosterRemoved(user, before); // [RFC6121 2.5.2]
        return 'empty';
      }
      if (sub !== undefined && sub !== 'none' && sub !== 'both' && sub !== 'from' && sub !== 'to') {
        throw new BrokerError('bad-request', 'invalid subscription value');
      }
      // [RFC6121 2.1.2.5] the client's subscription attribute is ignored (except remove)
      const groups = item.getChildren('group').map((g) => g.getText());
      await broker.roster.set(
        user.toString(),
        contact.bare().toString(),
        item.attrs.name || undefined,
        groups,
      );
      return 'empty' as const;
    };
    const iq = iqRegistry(broker);
    ctx.onUnload(iq.register(ctx.name, { type: 'get', ns: NS, name: 'query' }, handle));
    ctx.onUnload(iq.register(ctx.name, { type: 'set', ns: NS, name: 'query' }, handle));
    ctx.onUnload(addStreamFeature(broker, () => `<ver xmlns='${NS_ROSTERVER}'/>`)); // [RFC6121 2.6.1] roster versioning
    discoFeature(ctx, NS);
  },
});

/** An element whose children are pre-serialised XML. */
class RawElement extends Element {
  private readonly raw: string;
  constructor(el: Element, raw: string) {
    super(el.name, el.attrs);
    this.raw = raw;
  }
  override toString(): string {
    const attrs = Object.entries(this.attrs)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => ` ${k}='${escapeXML(String(v))}'`)
      .join('');
    return `<${this.name}${attrs}>${this.raw}</${this.name}>`;
  }
}
