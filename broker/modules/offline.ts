import { Address } from '../address.ts';
import { defineModule } from '../module.ts';
import { deliveredElsewhere } from '../router.ts';
import type { Session } from '../session.ts';

/** Bus message: "a message for this user was queued offline; flush it to their session on your node". */
const OFFLINE_FLUSH = 'offline-flush';

/**
 * XEP-0160: messages to a user with no available session are queued
 * ('message:offline'); they are handed over, with a delay stamp [XEP-0203], when a session
 * sends initial presence with a non-negative priority. A message queued while the
 * user already has such a session (it logged in on another node a moment before:
 * a drain, a stale route, a stream that ended unacknowledged) is flushed to it at
 * once, on whichever node holds it, instead of waiting for the next login.
 */
export default defineModule({
  name: 'offline',
  description: 'Offline message storage and delivery',
  options: {},
  specs: [
    { spec: 'XEP-0160', status: 'complete' },
    { spec: 'XEP-0203', status: 'complete', note: 'on messages delivered from offline storage' },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const { bus, registry } = broker.cluster;
    let loaded = true;
    // One flush at a time per user on this node: two at once would both list, and hand over, the same messages.
    const chains = new Map<string, Promise<void>>();
    const flush = (session: Session): Promise<void> => {
      const user = session.address.bare().toString();
      const step = async () => {
        if (!session.available || session.priority < 0) return; // [XEP-0160 3] negative priority: keep them queued
        // Paced by the session: a large queue must not overrun its outbound buffer (and be cut as a slow consumer) [XEP-0160]
        const n = await broker.offline.flush(session.address, (env) =>
          session.deliverQueued ? session.deliverQueued(env) : session.deliver(env),
        );
        if (n > 0)
          ctx.log.debug({ jid: session.address.toString(), n }, 'offline messages delivered');
      };
      const next = (chains.get(user) ?? Promise.resolve()).then(step, step);
      chains.set(user, next);
      void next.finally(() => chains.get(user) === next && chains.delete(user)).catch(() => {});
      return next;
    };
    const flushHere = (user: string, skip: readonly string[] = []): Promise<void> | undefined => {
      const s = broker.sessions
        .sessionsOf(Address.parse(user))
        .find((x) => x.available && x.priority >= 0 && !skip.includes(x.address.resource));
      return s && flush(s);
    };
    /**
     * After a message was queued: the user's available session, here or on another node, takes it
     * now, unless it already had this one live (`had`: it waits for the next login then).
     */
    const poke = async (user: string, had?: ReadonlySet<string>): Promise<void> => {
      // Read from Redis, not the cache: a session that became available on another node a moment ago
      // flushed before this message was queued, and its registry delta may still be on its way here.
      const entries = await (registry.lookupFresh?.(user) ?? registry.lookup(user));
      const open = entries.filter((e) => e.available && e.priority >= 0 && !had?.has(e.resource));
      if (open.length === 0) return;
      const skip = had ? [...had] : [];
      if (open.some((e) => e.node === bus.nodeId)) return flushHere(user, skip);
      await bus.send(open[0].node, OFFLINE_FLUSH, { user, skip }).catch(() => {}); // gone: its next login flushes
    };
    // The only place messages go into offline storage: the router (and any
    // adapter or module holding a stranded message) asks 'message:offline';
    // without this module nothing is stored and the sender gets an error.
    ctx.onUnload(
      broker.hooks.on('message:offline', async (env) => {
        if (!(await broker.offline.enqueue(env))) return 'full';
        broker.metrics.offlineQueued();
        const user = env.to.bare().toString();
        broker.hooks
          .track(poke(user, deliveredElsewhere.get(env)))
          .catch((err) =>
            ctx.log.warn({ err, user }, 'offline: flush to an online session failed'),
          );
        return 'queued';
      }),
    );
    ctx.onUnload(broker.hooks.on('session:available', (session) => flush(session)));
    bus.onMessage((m) => {
      if (!loaded || m.type !== OFFLINE_FLUSH) return;
      const { user, skip } = (m.payload ?? {}) as { user?: unknown; skip?: unknown };
      if (typeof user !== 'string') return;
      const p = flushHere(
        user,
        Array.isArray(skip) ? skip.filter((r): r is string => typeof r === 'string') : [],
      );
      if (p) void broker.hooks.track(p).catch(() => {});
    });
    ctx.onUnload(() => void (loaded = false));
  },
});
