// Over 600 lines, one module on purpose: XEP-0163 PEP with the XEP-0060 subset it needs (publish-options,
// items, retract, configure, delete) shares one node store and one notification path. Next split: node
// configuration forms into a file of their own.
import { randomBytes } from 'node:crypto';
import { Element, escapeXML, xml } from '@xmpp/xml';
import { Address, BrokerError, defineModule, type Broker } from '../../../broker/index.ts';
import { XmppConnection } from '../connection.ts';
import { xmppHooks, type IqRequest } from '../hooks.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_DATA, NS_PUBSUB, NS_PUBSUB_ERRORS, NS_PUBSUB_EVENT, NS_PUBSUB_OWNER } from '../ns.ts';
import { capsOf } from './caps.ts';

const NODE_CONFIG = 'http://jabber.org/protocol/pubsub#node_config';
const PUBLISH_OPTIONS = 'http://jabber.org/protocol/pubsub#publish-options';

export type AccessModel = 'open' | 'presence' | 'whitelist';
const ACCESS_MODELS = new Set<string>(['open', 'presence', 'whitelist']);
const SEND_LAST = new Set(['never', 'on_sub', 'on_sub_and_presence']);

/** A node's configuration [XEP-0060 16.4.4 pubsub#node_config], the subset PEP needs. */
export interface NodeConfig {
  access: AccessModel;
  /** items kept; `maxIsMax` when the client asked for 'max' (the configured bound) */
  maxItems: number;
  maxIsMax: boolean;
  persist: boolean;
  sendLast: string;
  notifyRetract: boolean;
  /** other node_config fields accepted and kept as given (title, notify_delete…): [var, values] */
  extra: [string, string[]][];
}

/** Fields Parley accepts and keeps without acting on them (clients send them in publish-options). */
const KEPT_FIELDS = new Set([
  'pubsub#title',
  'pubsub#description',
  'pubsub#type',
  'pubsub#deliver_notifications',
  'pubsub#deliver_payloads',
  'pubsub#notify_config',
  'pubsub#notify_delete',
  'pubsub#notify_sub',
  'pubsub#presence_based_delivery',
  'pubsub#publish_model',
  'pubsub#purge_offline',
  'pubsub#notification_type',
  'pubsub#itemreply',
  'pubsub#max_payload_size',
  'pubsub#item_expire',
]);

interface NodeMeta {
  config: NodeConfig;
  /** item ids, oldest first */
  ids: string[];
}

/** One stored item: the payload as XML, and what other views (XEP-0048) need of it. */
export interface ItemRecord {
  payload: string;
  publisher: string;
  ts: number;
  /** module data derived at publish time (bookmark fields for XEP-0048) */
  view?: Record<string, string>;
}

type PepValue = NodeMeta | ItemRecord | { xml: string };

function perr(
  condition: ConstructorParameters<typeof BrokerError>[0],
  app?: string,
  text?: string,
): BrokerError {
  return new BrokerError(
    condition,
    text,
    undefined,
    app ? { name: app, ns: NS_PUBSUB_ERRORS } : undefined,
  );
}

const truthy = (v: string) => v === '1' || v === 'true';
function bool(v: string | undefined, field: string): boolean {
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw perr('not-acceptable', undefined, `${field}: not a boolean`);
}

/** A submitted data form's fields, by var [XEP-0004]; checks FORM_TYPE. */
export function formFields(x: Element | undefined, formType: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (!x) return out;
  if (x.attrs.type !== undefined && x.attrs.type !== 'submit')
    throw perr('bad-request', undefined, 'the form must be of type submit');
  for (const f of x.getChildren('field')) {
    const name = f.attrs.var as string | undefined;
    if (!name) continue;
    out.set(
      name,
      f.getChildren('value').map((v) => v.getText()),
    );
  }
  const ft = out.get('FORM_TYPE')?.[0];
  if (ft !== undefined && ft !== formType)
    throw perr('bad-request', undefined, `FORM_TYPE must be ${formType}`);
  out.delete('FORM_TYPE');
  return out;
}

/** Node ids and item ids as key parts: no '/', nothing a prefix scan would mistake. */
const enc = encodeURIComponent;

/**
 * The PEP service of every account [XEP-0163] on a subset of XEP-0060:
 * nodes with their items in one key-value store (`kv:pep`), one record per
 * node and one per item, so a publish writes two records whatever the node
 * holds. Writes of one account are serialised.
 */
export class PepService {
  private readonly broker: Broker;
  readonly store: ReturnType<Broker['storage']['kv']>;
  readonly limits: { maxItems: number; maxItemBytes: number; maxNodes: number };
  private readonly locks = new Map<string, Promise<unknown>>();
  /** per node: what other views (XEP-0048 bookmarks) keep of an item, computed when it is published */
  readonly views = new Map<string, (payload: Element) => Record<string, string> | undefined>();
  /** called after an item was published, outside the account's write lock (XEP-0398 conversions may publish again) */
  readonly published = new Set<
    (owner: Address, node: string, id: string, payload: Element) => Promise<void>
  >();
  /** called after items were retracted or a node purged or deleted, outside the lock */
  readonly emptied = new Set<(owner: Address, node: string) => Promise<void>>();
  /** called after an item was published, retracted, a node purged or deleted */
  private readonly notifyFn: (
    owner: Address,
    node: string,
    config: NodeConfig,
    event: string,
  ) => Promise<void>;

  constructor(
    broker: Broker,
    limits: PepService['limits'],
    notify: (owner: Address, node: string, config: NodeConfig, event: string) => Promise<void>,
  ) {
    this.broker = broker;
    this.store = broker.storage.kv('pep');
    this.limits = limits;
    this.notifyFn = notify;
  }

  defaultConfig(): NodeConfig {
    // [XEP-0163 4] presence access by default; one item (the current one) unless configured
    return {
      access: 'presence',
      maxItems: 1,
      maxIsMax: false,
      persist: true,
      sendLast: 'on_sub_and_presence',
      notifyRetract: true,
      extra: [],
    };
  }

  /**
   * `fields` applied to a copy of `base`; throws bad-request for a field
   * Parley does not know [XEP-0060 8.2.5.3] and not-acceptable for a value
   * out of range.
   */
  applyConfig(base: NodeConfig, fields: Map<string, string[]>): NodeConfig {
    const c: NodeConfig = { ...base, extra: base.extra.map(([k, v]) => [k, [...v]]) };
    for (const [name, values] of fields) {
      const v = values[0];
      switch (name) {
        case 'pubsub#access_model':
          if (v === undefined || !ACCESS_MODELS.has(v))
            throw perr(
              'not-acceptable',
              undefined,
              `access model ${v ?? '(none)'} is not supported`,
            );
          c.access = v as AccessModel;
          break;
        case 'pubsub#max_items':
          if (v === 'max') {
            c.maxItems = this.limits.maxItems; // [XEP-0060 16.4.4] 'max': the service's maximum
            c.maxIsMax = true;
          } else {
            const n = Number(v);
            if (!Number.isInteger(n) || n < 1 || n > this.limits.maxItems)
              throw perr(
                'not-acceptable',
                undefined,
                `max_items must be 1..${this.limits.maxItems} or max`,
              );
            c.maxItems = n;
            c.maxIsMax = false;
          }
          break;
        case 'pubsub#persist_items':
          c.persist = bool(v, name);
          break;
        case 'pubsub#notify_retract':
          c.notifyRetract = bool(v, name);
          break;
        case 'pubsub#send_last_published_item':
          if (v === undefined || !SEND_LAST.has(v))
            throw perr('not-acceptable', undefined, `${name}: ${v ?? '(none)'}`);
          c.sendLast = v;
          break;
        default:
          if (!KEPT_FIELDS.has(name))
            throw perr('bad-request', undefined, `unknown node configuration field ${name}`); // [XEP-0060 8.2.5.3]
          c.extra = [...c.extra.filter(([k]) => k !== name), [name, values]];
      }
    }
    return c;
  }

  /** The value a field has in a config, normalised for comparison (publish-options preconditions). */
  private fieldValue(c: NodeConfig, name: string): string {
    switch (name) {
      case 'pubsub#access_model':
        return c.access;
      case 'pubsub#max_items':
        return c.maxIsMax || c.maxItems === this.limits.maxItems ? 'max' : String(c.maxItems);
      case 'pubsub#persist_items':
        return String(c.persist);
      case 'pubsub#notify_retract':
        return String(c.notifyRetract);
      case 'pubsub#send_last_published_item':
        return c.sendLast;
      default:
        return JSON.stringify(c.extra.find(([k]) => k === name)?.[1] ?? null);
    }
  }

  /** The config as a form [XEP-0060 8.2.1]. */
  configForm(c: NodeConfig, type: 'form' | 'result' = 'form'): Element {
    const x = xml('x', { xmlns: NS_DATA, type });
    const field = (v: string, t: string, ...values: string[]) =>
      x.append(xml('field', { var: v, type: t }, ...values.map((val) => xml('value', {}, val))));
    field('FORM_TYPE', 'hidden', NODE_CONFIG);
    const access = xml(
      'field',
      { var: 'pubsub#access_model', type: 'list-single' },
      xml('value', {}, c.access),
    );
    for (const m of ACCESS_MODELS) access.append(xml('option', {}, xml('value', {}, m)));
    x.append(access);
    field('pubsub#max_items', 'text-single', c.maxIsMax ? 'max' : String(c.maxItems));
    field('pubsub#persist_items', 'boolean', c.persist ? '1' : '0');
    field('pubsub#notify_retract', 'boolean', c.notifyRetract ? '1' : '0');
    field('pubsub#send_last_published_item', 'list-single', c.sendLast);
    for (const [k, v] of c.extra) field(k, 'text-single', ...v);
    return x;
  }

  metaKey(owner: Address, node: string): string {
    return `${owner.toString()}/n/${enc(node)}`;
  }

  itemKey(owner: Address, node: string, id: string): string {
    return `${owner.toString()}/i/${enc(node)}/${enc(id)}`;
  }

  async meta(owner: Address, node: string): Promise<NodeMeta | undefined> {
    return (await this.store.get(this.metaKey(owner, node))) as NodeMeta | undefined;
  }

  async item(owner: Address, node: string, id: string): Promise<ItemRecord | undefined> {
    return (await this.store.get(this.itemKey(owner, node, id))) as ItemRecord | undefined;
  }

  /** Every node of an account with its meta. */
  async nodes(owner: Address): Promise<[string, NodeMeta][]> {
    const prefix = `${owner.toString()}/n/`;
    return (await this.store.entries(prefix)).map(([k, v]) => [
      decodeURIComponent(k.slice(prefix.length)),
      v as NodeMeta,
    ]);
  }

  /** Serialise the writes of one account. */
  locked<T>(owner: Address, fn: () => Promise<T>): Promise<T> {
    const key = owner.toString();
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return run;
  }

  /** Create a node [XEP-0060 8.1]; conflict when it exists. */
  create(owner: Address, node: string, config: NodeConfig): Promise<void> {
    return this.locked(owner, async () => {
      if (await this.meta(owner, node)) throw perr('conflict', undefined, 'the node exists'); // [XEP-0060 8.1.3]
      await this.checkNodeCount(owner);
      await this.store.put(this.metaKey(owner, node), { config, ids: [] } satisfies NodeMeta);
    });
  }

  private async checkNodeCount(owner: Address): Promise<void> {
    if ((await this.store.keys(`${owner.toString()}/n/`)).length >= this.limits.maxNodes) {
      throw perr(
        'not-allowed',
        'max-nodes-exceeded',
        `at most ${this.limits.maxNodes} nodes per account`,
      ); // [XEP-0060 pubsub#errors]
    }
  }

  /**
   * Publish one item [XEP-0060 7.1], creating the node with `options` if it
   * does not exist [XEP-0163 3, XEP-0060 7.1.4]; on an existing node the
   * options are preconditions [XEP-0060 7.1.5]. Returns the item id.
   */
  async publish(
    owner: Address,
    node: string,
    id: string | undefined,
    payload: Element,
    options: Map<string, string[]> | undefined,
    view?: Record<string, string>,
  ): Promise<string> {
    const text = payload.toString();
    if (Buffer.byteLength(text) > this.limits.maxItemBytes)
      throw perr('not-acceptable', 'payload-too-big'); // [XEP-0060 7.1.3.4]
    const itemId = id || randomBytes(8).toString('hex');
    await this.locked(owner, async () => {
      let meta = await this.meta(owner, node);
      if (!meta) {
        let config: NodeConfig;
        try {
          config = options ? this.applyConfig(this.defaultConfig(), options) : this.defaultConfig();
        } catch (err) {
          if (err instanceof BrokerError) throw perr('conflict', 'precondition-not-met', err.text); // [XEP-0060 7.1.5]
          throw err;
        }
        await this.checkNodeCount(owner);
        meta = { config, ids: [] };
      } else if (options?.size) {
        let wanted: NodeConfig;
        try {
          wanted = this.applyConfig(meta.config, options);
        } catch (err) {
          if (err instanceof BrokerError) throw perr('conflict', 'precondition-not-met', err.text);
          throw err;
        }
        for (const name of options.keys()) {
          if (this.fieldValue(wanted, name) !== this.fieldValue(meta.config, name)) {
            throw perr(
              'conflict',
              'precondition-not-met',
              `${name} differs from the node's configuration`,
            ); // [XEP-0060 7.1.5]
          }
        }
      }
      const rec: ItemRecord = { payload: text, publisher: owner.toString(), ts: Date.now() };
      const v = view ?? this.views.get(node)?.(payload);
      if (v) rec.view = v;
      const ops: { type: 'put' | 'del'; key: string; value?: PepValue }[] = [];
      if (meta.config.persist) {
        const ids = meta.ids.filter((x) => x !== itemId);
        ids.push(itemId);
        // [XEP-0060 7.1.2, 16.4.4] beyond max_items the oldest items go
        while (ids.length > meta.config.maxItems)
          ops.push({ type: 'del', key: this.itemKey(owner, node, ids.shift()!) });
        meta = { ...meta, ids };
        ops.push({ type: 'put', key: this.itemKey(owner, node, itemId), value: rec });
      }
      ops.push({ type: 'put', key: this.metaKey(owner, node), value: meta });
      await this.store.batch(ops as Parameters<typeof this.store.batch>[0]);
      const event = `<event xmlns='${NS_PUBSUB_EVENT}'><items node='${escapeXML(node)}'><item id='${escapeXML(itemId)}'>${text}</item></items></event>`;
      await this.notifyFn(owner, node, meta.config, event);
    });
    for (const fn of this.published) await fn(owner, node, itemId, payload);
    return itemId;
  }

  /** Retract items [XEP-0060 7.2]; item-not-found when the node or an item does not exist. */
  async retract(owner: Address, node: string, ids: string[], notify: boolean): Promise<void> {
    await this.locked(owner, async () => {
      const meta = await this.meta(owner, node);
      if (!meta) throw perr('item-not-found', undefined, 'no such node'); // [XEP-0060 7.2.3]
      for (const id of ids)
        if (!meta.ids.includes(id)) throw perr('item-not-found', undefined, `no item ${id}`); // [XEP-0060 7.2.3]
      const gone = new Set(ids);
      await this.store.batch([
        ...ids.map((id) => ({ type: 'del' as const, key: this.itemKey(owner, node, id) })),
        {
          type: 'put',
          key: this.metaKey(owner, node),
          value: { ...meta, ids: meta.ids.filter((x) => !gone.has(x)) },
        },
      ]);
      if (notify || meta.config.notifyRetract) {
        const retracts = ids.map((id) => `<retract id='${escapeXML(id)}'/>`).join('');
        await this.notifyFn(
          owner,
          node,
          meta.config,
          `<event xmlns='${NS_PUBSUB_EVENT}'><items node='${escapeXML(node)}'>${retracts}</items></event>`,
        );
      }
    });
    for (const fn of this.emptied) await fn(owner, node);
  }

  /** Delete a node and its items [XEP-0060 8.4]; `purge` keeps the node [XEP-0060 8.5]. */
  async remove(owner: Address, node: string, purge: boolean): Promise<void> {
    await this.locked(owner, async () => {
      const meta = await this.meta(owner, node);
      if (!meta) throw perr('item-not-found', undefined, 'no such node'); // [XEP-0060 8.4.3.2]
      const ops: { type: 'put' | 'del'; key: string; value?: PepValue }[] = meta.ids.map((id) => ({
        type: 'del',
        key: this.itemKey(owner, node, id),
      }));
      ops.push(
        purge
          ? { type: 'put', key: this.metaKey(owner, node), value: { ...meta, ids: [] } }
          : { type: 'del', key: this.metaKey(owner, node) },
      );
      await this.store.batch(ops as Parameters<typeof this.store.batch>[0]);
      const what = purge ? 'purge' : 'delete';
      await this.notifyFn(
        owner,
        node,
        meta.config,
        `<event xmlns='${NS_PUBSUB_EVENT}'><${what} node='${escapeXML(node)}'/></event>`,
      );
    });
    for (const fn of this.emptied) await fn(owner, node);
  }

  /** Change a node's configuration [XEP-0060 8.2]. */
  configure(owner: Address, node: string, fields: Map<string, string[]>): Promise<void> {
    return this.locked(owner, async () => {
      const meta = await this.meta(owner, node);
      if (!meta) throw perr('item-not-found', undefined, 'no such node');
      const config = this.applyConfig(meta.config, fields);
      const ids = [...meta.ids];
      const ops: { type: 'put' | 'del'; key: string; value?: PepValue }[] = [];
      while (ids.length > config.maxItems)
        ops.push({ type: 'del', key: this.itemKey(owner, node, ids.shift()!) });
      ops.push({ type: 'put', key: this.metaKey(owner, node), value: { config, ids } });
      await this.store.batch(ops as Parameters<typeof this.store.batch>[0]);
    });
  }

  /** May `requester` read `owner`'s node? Throws the XEP-0060 error when not [XEP-0060 6.5.9]. */
  async checkAccess(owner: Address, requester: Address, config: NodeConfig): Promise<void> {
    if (requester.bare().equals(owner)) return;
    switch (config.access) {
      case 'open':
        return;
      case 'presence': {
        const item = await this.broker.roster.item(owner.toString(), requester.bare().toString());
        if (item?.subscription === 'from' || item?.subscription === 'both') return;
        throw perr('not-authorized', 'presence-subscription-required'); // [XEP-0060 6.5.9.6]
      }
      case 'whitelist':
        throw perr('not-allowed', 'closed-node'); // [XEP-0060 6.5.9.8] only the owner is on the whitelist
    }
  }
}

const services = new WeakMap<Broker, PepService>();

/** The PEP service of a broker (for modules built on it: private storage, bookmarks). */
export function pepService(broker: Broker): PepService | undefined {
  return services.get(broker);
}

const notifyFeature = (node: string) => `${node}+notify`;

/**
 * XEP-0163 Personal Eventing Protocol: a pubsub service at every account's
 * bare JID, on the XEP-0060 subset clients use (publish with
 * publish-options, items, retract, delete, purge, node configuration,
 * create). Notifications go to the owner's resources and to contacts with a
 * presence subscription (`from`/`both`) whose client advertises
 * `<node>+notify` through entity capabilities (XEP-0115, the caps module);
 * a session whose caps newly ask for a node gets its last item. Explicit
 * subscriptions are not offered: PEP subscriptions are implied by presence.
 */
export default defineModule({
  name: 'pep',
  description:
    'Personal Eventing Protocol: a pubsub service per account (avatars, nicknames, OMEMO device lists, bookmarks)',
  depends: ['caps'],
  options: {
    maxItemsPerNode: {
      type: 'number',
      default: 256,
      min: 1,
      doc: "items a node keeps at most; a node configured with max_items 'max' keeps this many",
    },
    maxItemBytes: {
      type: 'number',
      default: 256 * 1024,
      min: 64,
      doc: 'largest item payload, bytes of XML; larger is refused with not-acceptable/payload-too-big',
    },
    maxNodesPerUser: {
      type: 'number',
      default: 100,
      min: 1,
      doc: 'nodes per account; more are refused with not-allowed/max-nodes-exceeded',
    },
  },
  specs: [
    {
      spec: 'XEP-0163',
      status: 'complete',
      note: 'notifications to the owner and to contacts with a from/both subscription by +notify caps; last item on presence; no explicit subscriptions; local users only',
    },
    {
      spec: 'XEP-0060',
      section:
        'PEP subset: publish (publish-options), items (id, max_items), retract, create, configure, delete, purge',
      status: 'partial',
      note: 'access models open, presence, whitelist (owner only); no explicit subscriptions, affiliations or collections',
    },
    { spec: 'XEP-0084', status: 'complete', note: 'through PEP (data and metadata nodes)' },
    { spec: 'XEP-0172', status: 'complete', note: 'through PEP' },
    {
      spec: 'XEP-0223',
      status: 'complete',
      note: 'publish-options persist_items/access_model whitelist honoured as preconditions',
    },
    {
      spec: 'XEP-0384',
      section: 'device list node',
      status: 'complete',
      note: 'eu.siacs.conversations.axolotl.devicelist and bundles with open access',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const iq = iqRegistry(broker);

    /** The available XMPP sessions of `user` that want `node` notifications. */
    const interested = (user: Address, node: string): XmppConnection[] =>
      broker.sessions
        .sessionsOf(user)
        .filter(
          (s): s is XmppConnection =>
            s instanceof XmppConnection && s.available && !!capsOf(s)?.has(notifyFeature(node)),
        );

    const send = (conn: XmppConnection, owner: Address, event: string) =>
      conn.deliver({
        kind: 'message',
        type: 'headline',
        from: owner,
        to: conn.address,
        id: randomBytes(6).toString('hex'),
        extensions: [event],
      });

    // [XEP-0163 4.3] the owner's resources and contacts with a presence subscription, by +notify
    const notify = async (owner: Address, node: string, config: NodeConfig, event: string) => {
      const targets = interested(owner, node);
      if (config.access !== 'whitelist') {
        for (const c of (await broker.roster.presenceContacts(owner.toString())).from)
          targets.push(...interested(Address.parse(c), node));
      }
      for (const s of targets) send(s, owner, event);
    };

    const pep = new PepService(
      broker,
      {
        maxItems: ctx.options.maxItemsPerNode,
        maxItemBytes: ctx.options.maxItemBytes,
        maxNodes: ctx.options.maxNodesPerUser,
      },
      notify,
    );
    services.set(broker, pep);
    ctx.onUnload(() => {
      services.delete(broker);
    });

    /** The PEP service addressed: an account's bare JID; the domain is not a pubsub service. */
    const ownerOf = (req: IqRequest): Address | undefined =>
      req.to.isDomain ? undefined : req.to.bare();
    const mustOwn = (req: IqRequest, owner: Address) => {
      // [XEP-0060 7.1.3.1, 7.2.3.1, 8.2.3.2, 8.4.3.1] only the account itself writes to its PEP service
      if (!req.from.bare().equals(owner))
        throw perr('forbidden', undefined, "only the account's owner may change its PEP nodes");
    };
    const nodeAttr = (el: Element): string => {
      const node = el.attrs.node as string | undefined;
      if (!node) throw perr('bad-request', 'nodeid-required'); // [XEP-0060 7.1.3.3]
      return node;
    };
    const single = (pubsub: Element): Element => {
      const children = pubsub.getChildElements();
      const main =
        children.find((c) => c.name !== 'publish-options' && c.name !== 'configure') ?? children[0];
      if (!main) throw perr('bad-request', undefined, 'empty pubsub request');
      return main;
    };

    // ---- pubsub set: publish, retract, create ----
    ctx.onUnload(
      iq.register(ctx.name, { type: 'set', ns: NS_PUBSUB, name: 'pubsub' }, async (req) => {
        const owner = ownerOf(req);
        if (!owner) return undefined;
        const op = single(req.child);
        switch (op.name) {
          case 'publish': {
            mustOwn(req, owner); // [XEP-0060 7.1.3.1]
            const node = nodeAttr(op);
            const items = op.getChildren('item');
            if (items.length !== 1)
              throw perr('bad-request', 'invalid-payload', 'exactly one item per publish'); // [XEP-0060 7.1.3.6]
            const payloads = items[0].getChildElements();
            if (payloads.length === 0) throw perr('bad-request', 'item-required'); // [XEP-0060 7.1.3.6] persistent nodes need a payload
            if (payloads.length > 1)
              throw perr('bad-request', 'invalid-payload', 'one payload element per item'); // [XEP-0060 7.1.3.6]
            const po = req.child.getChild('publish-options');
            const options = po ? formFields(po.getChild('x', NS_DATA), PUBLISH_OPTIONS) : undefined;
            const id = await pep.publish(owner, node, items[0].attrs.id, payloads[0], options);
            return xml(
              'pubsub',
              { xmlns: NS_PUBSUB },
              xml('publish', { node }, xml('item', { id })),
            );
          }
          case 'retract': {
            mustOwn(req, owner); // [XEP-0060 7.2.3.1]
            const node = nodeAttr(op);
            const ids = op.getChildren('item').map((i) => i.attrs.id as string | undefined);
            if (ids.length === 0 || ids.some((i) => !i)) throw perr('bad-request', 'item-required'); // [XEP-0060 7.2.3]
            await pep.retract(owner, node, ids as string[], truthy(op.attrs.notify ?? ''));
            return 'empty';
          }
          case 'create': {
            mustOwn(req, owner); // [XEP-0060 8.1.3.2]
            const node = nodeAttr(op);
            const conf = req.child.getChild('configure');
            const fields = formFields(conf?.getChild('x', NS_DATA), NODE_CONFIG);
            await pep.create(owner, node, pep.applyConfig(pep.defaultConfig(), fields));
            return 'empty';
          }
          case 'subscribe':
          case 'unsubscribe':
            // PEP subscriptions are implied by presence and +notify [XEP-0163 4.2]
            throw new BrokerError(
              'feature-not-implemented',
              'subscriptions are implied by presence (XEP-0163)',
              undefined,
              { name: 'unsupported', ns: NS_PUBSUB_ERRORS },
            );
          default:
            throw new BrokerError('feature-not-implemented', `<${op.name}/> is not supported`);
        }
      }),
    );

    // ---- pubsub get: items ----
    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_PUBSUB, name: 'pubsub' }, async (req) => {
        const owner = ownerOf(req);
        if (!owner) return undefined;
        const op = single(req.child);
        if (op.name !== 'items')
          throw new BrokerError('feature-not-implemented', `<${op.name}/> is not supported`);
        const node = nodeAttr(op);
        const meta = await pep.meta(owner, node);
        if (!meta) throw perr('item-not-found'); // [XEP-0060 6.5.9.11]
        await pep.checkAccess(owner, req.from, meta.config);
        const wanted = op
          .getChildren('item')
          .map((i) => i.attrs.id as string)
          .filter(Boolean);
        let ids: string[];
        if (wanted.length)
          ids = wanted.filter((id) => meta.ids.includes(id)); // [XEP-0060 6.5.8]
        else {
          ids = [...meta.ids].reverse(); // newest first
          const max = op.attrs.max_items !== undefined ? Number(op.attrs.max_items) : undefined;
          if (max !== undefined) {
            if (!Number.isInteger(max) || max < 0)
              throw perr('bad-request', undefined, 'max_items must be a non-negative integer');
            ids = ids.slice(0, max); // [XEP-0060 6.5.7] the most recent N
          }
        }
        let items = '';
        for (const id of ids) {
          const rec = await pep.item(owner, node, id);
          if (rec) items += `<item id='${escapeXML(id)}'>${rec.payload}</item>`;
        }
        return new RawXml(
          `<pubsub xmlns='${NS_PUBSUB}'><items node='${escapeXML(node)}'>${items}</items></pubsub>`,
        );
      }),
    );

    // ---- owner: configure, delete, purge ----
    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_PUBSUB_OWNER, name: 'pubsub' }, async (req) => {
        const owner = ownerOf(req);
        if (!owner) return undefined;
        mustOwn(req, owner); // [XEP-0060 8.2.3.2]
        const op = single(req.child);
        if (op.name === 'default')
          return xml(
            'pubsub',
            { xmlns: NS_PUBSUB_OWNER },
            xml('default', {}, pep.configForm(pep.defaultConfig())),
          ); // [XEP-0060 8.3]
        if (op.name !== 'configure')
          throw new BrokerError('feature-not-implemented', `<${op.name}/> is not supported`);
        const node = nodeAttr(op);
        const meta = await pep.meta(owner, node);
        if (!meta) throw perr('item-not-found'); // [XEP-0060 8.2.3.4]
        return xml(
          'pubsub',
          { xmlns: NS_PUBSUB_OWNER },
          xml('configure', { node }, pep.configForm(meta.config)),
        );
      }),
    );
    ctx.onUnload(
      iq.register(ctx.name, { type: 'set', ns: NS_PUBSUB_OWNER, name: 'pubsub' }, async (req) => {
        const owner = ownerOf(req);
        if (!owner) return undefined;
        mustOwn(req, owner); // [XEP-0060 8.2.5.2, 8.4.3.1, 8.5.3.1]
        const op = single(req.child);
        const node = nodeAttr(op);
        switch (op.name) {
          case 'configure': {
            const x = op.getChild('x', NS_DATA);
            if (!x) throw perr('bad-request', undefined, 'no form');
            if (x.attrs.type === 'cancel') return 'empty'; // [XEP-0060 8.2.6]
            await pep.configure(owner, node, formFields(x, NODE_CONFIG));
            return 'empty';
          }
          case 'delete':
            await pep.remove(owner, node, false);
            return 'empty';
          case 'purge':
            await pep.remove(owner, node, true);
            return 'empty';
          default:
            throw new BrokerError('feature-not-implemented', `<${op.name}/> is not supported`);
        }
      }),
    );

    // [XEP-0163 6.1] the account advertises the PEP service
    const features = [
      NS_PUBSUB,
      ...[
        'access-open',
        'access-presence',
        'access-whitelist',
        'auto-create',
        'auto-subscribe',
        'config-node',
        'create-nodes',
        'delete-items',
        'delete-nodes',
        'filtered-notifications',
        'item-ids',
        'last-published',
        'persistent-items',
        'publish',
        'publish-options',
        'purge-nodes',
        'retract-items',
        'retrieve-items',
      ].map((f) => `${NS_PUBSUB}#${f}`),
    ];
    ctx.onUnload(
      xmppHooks(broker).on('disco:info', (info, target) =>
        target.isDomain
          ? undefined
          : {
              identities: [...info.identities, { category: 'pubsub', type: 'pep' }],
              features: [...info.features, ...features],
            },
      ),
    );

    // [XEP-0163 4.3, XEP-0060 6.1.7] a session whose caps newly ask for a node gets its last item
    ctx.onUnload(
      xmppHooks(broker).on('caps:changed', async (conn, now, previous) => {
        const wanted = new Set<string>();
        for (const f of now)
          if (f.endsWith('+notify') && !previous?.has(f)) wanted.add(f.slice(0, -'+notify'.length));
        if (!wanted.size) return;
        const user = conn.address.bare();
        const owners = [
          user,
          ...(await broker.roster.presenceContacts(user.toString())).to.map((c) =>
            Address.parse(c),
          ),
        ];
        for (const owner of owners) {
          for (const [node, meta] of await pep.nodes(owner)) {
            if (!wanted.has(node) || !meta.ids.length || meta.config.sendLast === 'never') continue;
            if (!owner.equals(user) && meta.config.access === 'whitelist') continue;
            const id = meta.ids[meta.ids.length - 1];
            const rec = await pep.item(owner, node, id);
            if (!rec || !conn.available) continue;
            send(
              conn,
              owner,
              `<event xmlns='${NS_PUBSUB_EVENT}'><items node='${escapeXML(node)}'><item id='${escapeXML(id)}'>${rec.payload}</item></items></event>`,
            );
          }
        }
      }),
    );
  },
});

/** An answer made of stored XML, written out as it is (stored payloads were well-formed XML when published). */
export class RawXml extends Element {
  private readonly text: string;

  constructor(text: string) {
    super('raw');
    this.text = text;
  }

  override toString(): string {
    return this.text;
  }
}
