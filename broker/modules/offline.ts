import { defineModule } from '../module.ts';

/**
 * XEP-0160: messages to a user with no available session are queued
 * ('message:offline'); they are handed over, with a delay stamp [XEP-0203], when a session
 * sends initial presence with a non-negative priority.
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
    // The only place messages go into offline storage: the router (and any
    // adapter or module holding a stranded message) asks 'message:offline';
    // without this module nothing is stored and the sender gets an error.
    ctx.onUnload(
      broker.hooks.on('message:offline', async (env) => {
        if (!(await broker.offline.enqueue(env))) return 'full';
        broker.metrics.offlineQueued();
        return 'queued';
      }),
    );
    ctx.onUnload(
      broker.hooks.on('session:available', async (session) => {
        if (session.priority < 0) return; // [XEP-0160 3] negative priority: keep them queued
        // Paced by the session: a large queue must not overrun its outbound buffer (and be cut as a slow consumer) [XEP-0160]
        const n = await broker.offline.flush(session.address, (env) =>
          session.deliverQueued ? session.deliverQueued(env) : session.deliver(env),
        );
        if (n > 0)
          ctx.log.debug({ jid: session.address.toString(), n }, 'offline messages delivered');
      }),
    );
  },
});
