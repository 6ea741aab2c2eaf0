import { escapeXML, xml } from '@xmpp/xml';
import {
  Address,
  BrokerError,
  defineModule,
  type Envelope,
  type Session,
} from '../../../broker/index.ts';
import { XmppConnection } from '../connection.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_BLOCKING, NS_BLOCKING_ERRORS, NS_CLIENT } from '../ns.ts';
import { discoFeature } from './basics.ts';

interface BlockRecord {
  jids: string[];
}

/** Does a block list hold `addr`: its full JID, bare JID or domain [XEP-0191 3.2, XEP-0016 2.1 matching]? */
function matches(list: ReadonlySet<string>, addr: Address): boolean {
  if (list.size === 0) return false;
  return list.has(addr.toString()) || list.has(addr.bare().toString()) || list.has(addr.domain);
}

/**
 * XEP-0191 Blocking Command. The lists live in `kv:blocking`, one record per
 * user, cached in memory. Enforcement is in the core, so it holds for every
 * protocol: 'route:filter' stops messages, IQs and directed presence in both
 * directions (a message or IQ from a blocked entity is answered
 * service-unavailable, one to it not-acceptable with `<blocked/>`; presence
 * is dropped silently), and a delivery guard drops anything else a blocked
 * entity would reach a session by (presence broadcasts, probes answered
 * locally). An MQTT device of a user never gets a blocked sender's `chat/`
 * messages, and a blocked device's publishes do not arrive.
 */
export default defineModule({
  name: 'blocking',
  description: 'Blocking Command: blocked entities reach the user on no protocol',
  options: {
    maxItems: {
      type: 'number',
      default: 1000,
      min: 1,
      doc: 'JIDs on one block list; more are refused with resource-constraint',
    },
    cacheSize: {
      type: 'number',
      default: 100_000,
      min: 100,
      doc: 'block lists kept in memory (least recently used go first; users with a session are read once per login)',
    },
  },
  specs: [
    {
      spec: 'XEP-0191',
      status: 'complete',
      note: 'enforced in the core for XMPP and MQTT alike; IQs a blocked entity sends to the bare JID of a service the server answers itself (PEP) are not blocked',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const store = broker.storage.kv<BlockRecord>('blocking');
    const cache = new Map<string, Set<string>>();
    const remember = (user: string, set: Set<string>) => {
      cache.delete(user);
      cache.set(user, set);
      while (cache.size > ctx.options.cacheSize) cache.delete(cache.keys().next().value!);
    };
    const load = async (user: string): Promise<Set<string>> => {
      const hit = cache.get(user);
      if (hit) return hit;
      const set = new Set((await store.get(user))?.jids ?? []);
      if (!cache.has(user)) remember(user, set);
      return cache.get(user)!;
    };

    ctx.onUnload(
      broker.hooks.on('account:removed', (username) => {
        cache.delete(broker.accounts.address(username).toString());
      }),
    );
    // Read at login, so that the synchronous delivery guard has the list at hand.
    ctx.onUnload(
      broker.hooks.on('session:bound', async (s) => {
        await load(s.address.bare().toString());
      }),
    );

    /** Is `from` blocked by `to`'s user, or `to` by `from`'s (cached lists only; sync)? */
    const blockedNow = (from: Address, to: Address): boolean => {
      if (!from.local && !to.local) return false;
      const toList = to.local ? cache.get(to.bare().toString()) : undefined;
      if (toList && matches(toList, from)) return true;
      const fromList = from.local ? cache.get(from.bare().toString()) : undefined;
      return !!fromList && matches(fromList, to);
    };

    // [XEP-0191 3.4] nothing from a blocked entity reaches any session of the user, on any path
    ctx.onUnload(
      broker.router.addDeliveryGuard(
        (env: Envelope, to: Session) =>
          !(env.from.domain === broker.domain && blockedNow(env.from, to.address)),
      ),
    );

    const reply = (env: Envelope, error: NonNullable<Envelope['error']>): Envelope => ({
      kind: env.kind,
      type: 'error',
      from: env.to,
      to: env.from,
      id: env.id,
      extensions: env.kind === 'iq' ? env.extensions : [],
      error,
    });

    /** The filter's answer for `env`, given the block lists of its addressee's and its sender's users. */
    const verdict = (
      env: Envelope,
      origin: Session | undefined,
      toList: Set<string> | undefined,
      fromList: Set<string> | undefined,
    ): null | undefined => {
      if (fromList && matches(fromList, env.to)) {
        // [XEP-0191 3.5] the user tries to reach an entity it blocked: not-acceptable with <blocked/>
        if (env.kind !== 'presence' && origin) {
          origin.deliver(
            reply(env, {
              condition: 'not-acceptable',
              type: 'cancel',
              app: { name: 'blocked', ns: NS_BLOCKING_ERRORS },
            }),
          );
        }
        return null;
      }
      if (toList && matches(toList, env.from)) {
        // [XEP-0191 3.4] presence: dropped silently; messages and IQ get/set: service-unavailable
        if (env.kind !== 'presence' && origin)
          origin.deliver(reply(env, { condition: 'service-unavailable', type: 'cancel' }));
        return null;
      }
      return undefined;
    };

    ctx.onUnload(
      broker.hooks.on(
        'route:filter',
        (env, origin) => {
          if (!env || env.type === 'error' || (env.kind === 'iq' && env.type === 'result'))
            return undefined;
          const from = env.from;
          const to = env.to;
          if (!to.local && !from.local) return undefined;
          const toUser = to.local && to.domain === broker.domain ? to.bare().toString() : undefined;
          const fromUser =
            from.local && from.domain === broker.domain ? from.bare().toString() : undefined;
          // Both lists cached (a logged-in user's is): decided at once, no promise per stanza.
          const toList = toUser === undefined ? undefined : cache.get(toUser);
          const fromList = fromUser === undefined ? undefined : cache.get(fromUser);
          if ((toUser === undefined || toList) && (fromUser === undefined || fromList))
            return verdict(env, origin, toList, fromList);
          return (async () =>
            verdict(
              env,
              origin,
              toUser === undefined ? undefined : await load(toUser),
              fromUser === undefined ? undefined : await load(fromUser),
            ))();
        },
        100,
      ),
    );

    // ---- the protocol [XEP-0191 3] ----
    const iq = iqRegistry(broker);
    const own = (from: Address, to: Address) => {
      if (!to.equals(from.bare()) && !to.isDomain) throw new BrokerError('forbidden');
    };
    const items = (el: {
      getChildren(n: string): { attrs: Record<string, string | undefined> }[];
    }): string[] =>
      el.getChildren('item').map((i) => {
        const jid = Address.tryParse(i.attrs.jid ?? '');
        if (!jid) throw new BrokerError('jid-malformed', 'item without a valid jid'); // [XEP-0191 3.2]
        return jid.toString();
      });

    /** [XEP-0191 3.2, 3.6] the change to every resource of the user */
    const push = (user: Address, what: 'block' | 'unblock', jids: string[]) => {
      const inner = jids.map((j) => `<item jid='${escapeXML(j)}'/>`).join('');
      for (const s of broker.sessions.sessionsOf(user)) {
        if (!(s instanceof XmppConnection)) continue;
        s.sendStanza(
          `<iq xmlns='${NS_CLIENT}' type='set' id='push-${Date.now().toString(36)}' to='${escapeXML(s.address.toString())}'><${what} xmlns='${NS_BLOCKING}'>${inner}</${what}></iq>`,
        );
      }
    };

    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_BLOCKING, name: 'blocklist' }, async (req) => {
        own(req.from, req.to);
        const list = await load(req.from.bare().toString());
        return xml(
          'blocklist',
          { xmlns: NS_BLOCKING },
          ...[...list].map((jid) => xml('item', { jid })),
        );
      }),
    );
    ctx.onUnload(
      iq.register(
        ctx.name,
        { type: 'set', ns: NS_BLOCKING, name: 'block' },
        async (req): Promise<'empty'> => {
          own(req.from, req.to);
          const jids = items(req.child);
          if (!jids.length) throw new BrokerError('bad-request', 'block needs at least one item'); // [XEP-0191 3.2]
          const user = req.from.bare();
          const key = user.toString();
          const list = await load(key);
          const added = jids.filter((j) => !list.has(j));
          if (list.size + added.length > ctx.options.maxItems)
            throw new BrokerError(
              'resource-constraint',
              `at most ${ctx.options.maxItems} blocked JIDs`,
            );
          // [XEP-0191 3.3] the blocked contact sees the user go unavailable (before the block stops everything)
          for (const j of added) {
            const contact = Address.parse(j);
            for (const s of broker.sessions.sessionsOf(user)) {
              if (!s.available || !contact.local || contact.domain !== broker.domain) continue;
              const item = await broker.roster.item(key, contact.bare().toString());
              if (item?.subscription !== 'from' && item?.subscription !== 'both') continue;
              for (const t of await broker.router.targets(contact)) {
                if (contact.isBare || t.resource === contact.resource)
                  await broker.router.deliverTo(t, {
                    kind: 'presence',
                    type: 'unavailable',
                    from: s.address,
                    to: contact.bare(),
                    extensions: [],
                  });
              }
            }
          }
          const next = new Set([...list, ...added]);
          await store.put(key, { jids: [...next] });
          remember(key, next);
          push(user, 'block', jids);
          return 'empty';
        },
      ),
    );
    ctx.onUnload(
      iq.register(
        ctx.name,
        { type: 'set', ns: NS_BLOCKING, name: 'unblock' },
        async (req): Promise<'empty'> => {
          own(req.from, req.to);
          const jids = items(req.child);
          const user = req.from.bare();
          const key = user.toString();
          const list = await load(key);
          const next = jids.length
            ? new Set([...list].filter((j) => !jids.includes(j)))
            : new Set<string>(); // [XEP-0191 3.7] none listed: all
          if (next.size) await store.put(key, { jids: [...next] });
          else await store.delete(key);
          remember(key, next);
          push(user, 'unblock', jids);
          return 'empty';
        },
      ),
    );
    discoFeature(ctx, NS_BLOCKING);
  },
});
