import { closeReason, defineModule } from '../../../broker/index.ts';
import { XmppConnection } from '../connection.ts';
import { requestFromClient } from '../iq-registry.ts';
import { NS_CLIENT, NS_PING } from '../ns.ts';

/**
 * XEP-0199 pings from the server: a bound stream quiet for
 * `intervalSeconds` is pinged; no answer within `timeoutSeconds` (an error
 * answer counts as an answer [XEP-0199 4.1]) closes it with the stream error
 * connection-timeout (close reason `ping-timeout`). With stream management
 * the session then waits to be resumed.
 */
export default defineModule({
  name: 'server-ping',
  description: 'Server-to-client pings that find dead connections',
  options: {
    intervalSeconds: {
      type: 'number',
      default: 300,
      min: 1,
      doc: 'ping a stream that has been quiet this long',
    },
    timeoutSeconds: {
      type: 'number',
      default: 60,
      min: 1,
      doc: 'close a pinged stream that has not answered within this (stream error connection-timeout)',
    },
  },
  specs: [{ spec: 'XEP-0199', section: '4.1 (server-to-client pings)', status: 'complete' }],
  setup(ctx) {
    const { broker, options } = ctx;
    const intervalMs = options.intervalSeconds * 1000;
    /** streams with a ping outstanding */
    const pinging = new WeakSet<XmppConnection>();
    const ping = async (conn: XmppConnection) => {
      pinging.add(conn);
      const answer = await requestFromClient(
        conn,
        (id) =>
          `<iq xmlns='${NS_CLIENT}' type='get' id='${id}' from='${broker.domain}' to='${conn.address.toString()}'><ping xmlns='${NS_PING}'/></iq>`,
        options.timeoutSeconds * 1000,
      );
      pinging.delete(conn);
      if (!answer && conn.live)
        conn.close(
          closeReason('ping-timeout', `no answer to a ping in ${options.timeoutSeconds} s`),
        );
    };
    // One sweep for every stream, a tenth of the interval apart (at most every 10 s).
    ctx.every(Math.min(10_000, Math.max(250, intervalMs / 10)), () => {
      const now = Date.now();
      for (const s of broker.sessions.all()) {
        if (!(s instanceof XmppConnection) || !s.live || pinging.has(s)) continue;
        if (now - s.lastActive >= intervalMs)
          ping(s).catch((err) => ctx.log.error({ err }, 'server ping failed'));
      }
    });
  },
});
