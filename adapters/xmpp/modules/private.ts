import { escapeXML, xml, type Element } from '@xmpp/xml';
import { Address, BrokerError, defineModule } from '../../../broker/index.ts';
import { xmppHooks } from '../hooks.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_BOOKMARKS, NS_BOOKMARKS2, NS_CLIENT, NS_PRIVATE } from '../ns.ts';
import { pepService, RawXml } from './pep.ts';

/** Namespaces private storage refuses [XEP-0049 3]. */
const RESERVED = new Set([NS_PRIVATE, NS_CLIENT, 'jabber:server']);

/** The node configuration XEP-0402 asks for [XEP-0402 3]. */
const BOOKMARKS2_OPTIONS = new Map<string, string[]>([
  ['pubsub#persist_items', ['true']],
  ['pubsub#max_items', ['max']],
  ['pubsub#send_last_published_item', ['never']],
  ['pubsub#access_model', ['whitelist']],
]);

/** What XEP-0048 keeps of a XEP-0402 conference (the item id is the room JID). */
function bookmarkView(conf: Element): Record<string, string> | undefined {
  if (conf.name !== 'conference' || conf.attrs.xmlns !== NS_BOOKMARKS2) return undefined;
  const v: Record<string, string> = Object.create(null);
  if (conf.attrs.name !== undefined) v.name = conf.attrs.name;
  v.autojoin = conf.attrs.autojoin === 'true' || conf.attrs.autojoin === '1' ? 'true' : 'false';
  const nick = conf.getChildText('nick');
  if (nick !== null && nick !== undefined) v.nick = nick;
  const password = conf.getChildText('password');
  if (password !== null && password !== undefined) v.password = password;
  return { ...v };
}

/**
 * XEP-0049 Private XML Storage, kept in the PEP store (`kv:pep`, under
 * `<bare JID>/p/`), with XEP-0048 bookmarks (`storage:bookmarks`) served
 * from and written to the XEP-0402 PEP node `urn:xmpp:bookmarks:1`, as
 * Prosody's mod_bookmarks does: a client on either protocol sees the
 * bookmarks the other set, and PEP notifications go out for changes made
 * through private storage.
 */
export default defineModule({
  name: 'private',
  description:
    'Private XML storage (XEP-0049), with XEP-0048 bookmarks converted to and from XEP-0402',
  depends: ['pep'],
  options: {},
  specs: [
    { spec: 'XEP-0049', status: 'complete' },
    {
      spec: 'XEP-0048',
      status: 'partial',
      note: 'through private storage, converted to and from XEP-0402 (urls are not kept); the XEP-0048 PEP node is not converted',
    },
    {
      spec: 'XEP-0402',
      status: 'complete',
      note: 'PEP node with whitelist access; #compat with XEP-0049 storage:bookmarks',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const pep = pepService(broker);
    if (!pep) throw new Error('private storage needs the pep module');
    pep.views.set(NS_BOOKMARKS2, bookmarkView);
    ctx.onUnload(() => {
      pep.views.delete(NS_BOOKMARKS2);
    });
    const iq = iqRegistry(broker);

    const payloadOf = (query: Element, from: Address, to: Address): Element => {
      if (!to.equals(from.bare()))
        throw new BrokerError('forbidden', "private storage is the account's own"); // [XEP-0049 3]
      const children = query.getChildElements();
      if (children.length !== 1)
        throw new BrokerError('not-acceptable', 'exactly one child element'); // [XEP-0049 3]
      const ns = children[0].attrs.xmlns as string | undefined;
      if (!ns || RESERVED.has(ns))
        throw new BrokerError('not-acceptable', 'no or a reserved namespace'); // [XEP-0049 3]
      return children[0];
    };
    const key = (owner: Address, el: Element) =>
      `${owner.toString()}/p/${encodeURIComponent(el.name)}:${encodeURIComponent(el.attrs.xmlns!)}`;

    /** XEP-0402 items as one XEP-0048 storage element [XEP-0402 5.1 compat]. */
    const bookmarksOut = async (owner: Address): Promise<string> => {
      const meta = await pep.meta(owner, NS_BOOKMARKS2);
      let out = '';
      for (const id of meta?.ids ?? []) {
        const v = (await pep.item(owner, NS_BOOKMARKS2, id))?.view;
        if (!v) continue;
        const c = xml('conference', { jid: id, name: v.name, autojoin: v.autojoin });
        if (v.nick !== undefined) c.append(xml('nick', {}, v.nick));
        if (v.password !== undefined) c.append(xml('password', {}, v.password));
        out += c.toString();
      }
      return `<storage xmlns='${NS_BOOKMARKS}'>${out}</storage>`;
    };

    /** A XEP-0048 storage element into XEP-0402 items: publish each conference, retract the others. */
    const bookmarksIn = async (owner: Address, storage: Element): Promise<void> => {
      const keep = new Set<string>();
      for (const c of storage.getChildren('conference')) {
        const jid = Address.tryParse(c.attrs.jid ?? '');
        if (!jid) throw new BrokerError('jid-malformed', 'conference without a valid jid');
        const conf = xml('conference', {
          xmlns: NS_BOOKMARKS2,
          name: c.attrs.name,
          autojoin: c.attrs.autojoin === 'true' || c.attrs.autojoin === '1' ? 'true' : 'false',
        });
        const nick = c.getChildText('nick');
        if (nick) conf.append(xml('nick', {}, nick));
        const password = c.getChildText('password');
        if (password) conf.append(xml('password', {}, password));
        const id = jid.bare().toString();
        keep.add(id);
        const exists = await pep.meta(owner, NS_BOOKMARKS2);
        await pep.publish(owner, NS_BOOKMARKS2, id, conf, exists ? undefined : BOOKMARKS2_OPTIONS);
      }
      const meta = await pep.meta(owner, NS_BOOKMARKS2);
      const gone = (meta?.ids ?? []).filter((id) => !keep.has(id));
      if (gone.length) await pep.retract(owner, NS_BOOKMARKS2, gone, true);
    };

    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_PRIVATE, name: 'query' }, async (req) => {
        const el = payloadOf(req.child, req.from, req.to);
        const owner = req.to;
        let inner: string;
        if (el.name === 'storage' && el.attrs.xmlns === NS_BOOKMARKS)
          inner = await bookmarksOut(owner);
        else {
          const stored = (await pep.store.get(key(owner, el))) as { xml: string } | undefined;
          inner = stored?.xml ?? `<${el.name} xmlns='${escapeXML(el.attrs.xmlns!)}'/>`; // [XEP-0049 2.2] nothing stored: the empty element
        }
        return new RawXml(`<query xmlns='${NS_PRIVATE}'>${inner}</query>`);
      }),
    );
    ctx.onUnload(
      iq.register(
        ctx.name,
        { type: 'set', ns: NS_PRIVATE, name: 'query' },
        async (req): Promise<'empty'> => {
          const el = payloadOf(req.child, req.from, req.to);
          const owner = req.to;
          if (el.name === 'storage' && el.attrs.xmlns === NS_BOOKMARKS) {
            await bookmarksIn(owner, el);
            return 'empty';
          }
          const text = el.toString();
          if (Buffer.byteLength(text) > pep.limits.maxItemBytes)
            throw new BrokerError('not-acceptable', 'too large'); // bounded like a PEP item
          const k = key(owner, el);
          if (
            !(await pep.store.get(k)) &&
            (await pep.store.keys(`${owner.toString()}/p/`)).length >= pep.limits.maxNodes
          ) {
            throw new BrokerError(
              'resource-constraint',
              `at most ${pep.limits.maxNodes} private storage namespaces`,
            ); // bounded like PEP nodes
          }
          await pep.store.put(k, { xml: text });
          return 'empty';
        },
      ),
    );
    // [XEP-0402 3] the account converts between XEP-0049 bookmarks and XEP-0402
    ctx.onUnload(
      xmppHooks(broker).on('disco:info', (info, target) =>
        target.isDomain
          ? undefined
          : { ...info, features: [...info.features, `${NS_BOOKMARKS2}#compat`] },
      ),
    );
  },
});
