import { createHash, randomBytes } from 'node:crypto';
import { escapeXML, escapeXMLText } from '@xmpp/xml';
import {
  Address,
  BrokerError,
  claimOnce,
  defineModule,
  isStorableMessage,
  type Envelope,
  type Logger,
  type Session,
} from '../../../broker/index.ts';
import { XmppConnection } from '../connection.ts';
import { xmppHooks } from '../hooks.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_DATA, NS_PUBSUB, NS_PUBSUB_PUBLISH_OPTIONS, NS_PUSH, NS_PUSH_SUMMARY } from '../ns.ts';

/**
 * XEP-0357 Push Notifications (docs/push.md): a client registers an app
 * server JID and node; when a message arrives while none of the user's
 * sessions can take it (all offline, or every XMPP one detached in stream
 * management hibernation), the node publishes a summary to each registered
 * app server through an XEP-0060 publish IQ, at most once per burst.
 */

/** One registration (kv `push`, key `<bare JID>/<hash of jid and node>`). */
interface Registration {
  jid: string;
  node: string;
  /** publish-options fields (FORM_TYPE excluded), passed back on every publish [XEP-0357 5] */
  options: [string, string][];
}

/** What a registration has waiting and when it last sent. */
interface BurstState {
  count: number;
  lastSender?: string;
  lastBody?: string;
  lastSentAt: number;
  timer?: NodeJS.Timeout;
  sending: boolean;
}

/**
 * A message worth waking a phone for: stored, with a body or subject.
 * Receipts and chat markers are stored too, but push nothing, as Prosody's
 * mod_cloud_notify decides.
 */
function important(env: Envelope): boolean {
  return isStorableMessage(env) && (env.body !== undefined || env.subject !== undefined);
}

/** The error type of an IQ error: set by our router, or in the `<error/>` child a client sent. */
function errorType(env: Envelope): string | undefined {
  if (env.error) return env.error.type;
  for (const x of env.extensions) {
    const m = /^<error\s[^>]*?type=(["'])(\w+)\1/.exec(x);
    if (m) return m[2];
  }
  return undefined;
}

/** Bus messages between nodes: an app server's answer to another node's publish, a user back online. */
const ANSWER = 'push-answer';
const ONLINE = 'push-online';
interface Answer {
  id: string;
  from: string;
  type: string;
  errType?: string;
}

function regKey(user: string, jid: string, node: string): string {
  return `${user}/${createHash('sha256').update(`${jid}\n${node}`).digest('base64url').slice(0, 22)}`;
}

export default defineModule({
  name: 'push',
  description:
    'Push Notifications (XEP-0357): wake sleeping mobile clients through their app server',
  options: {
    burstSeconds: {
      type: 'number',
      default: 30,
      min: 0,
      doc: 'at most one notification per registration in this window; messages inside it are summed into one sent at its end',
    },
    includeSender: {
      type: 'boolean',
      default: false,
      doc: 'put `last-message-sender` in the summary (off: the app server learns only that something came)',
    },
    includeBody: {
      type: 'boolean',
      default: false,
      doc: 'put `last-message-body` in the summary (off by default: bodies would pass through the app server and the platform push service)',
    },
    maxRegistrationsPerUser: {
      type: 'number',
      default: 20,
      min: 1,
      doc: 'push registrations one account may have; more: resource-constraint',
    },
    maxRetries: {
      type: 'number',
      default: 3,
      min: 0,
      doc: 'retries of a notification that timed out or got a `wait` error, with doubling backoff',
    },
    retryBaseSeconds: {
      type: 'number',
      default: 5,
      min: 0,
      doc: 'first retry delay (then doubled)',
    },
    timeoutSeconds: {
      type: 'number',
      default: 30,
      min: 1,
      doc: 'how long to wait for the app server to answer a publish',
    },
  },
  specs: [
    {
      spec: 'XEP-0357',
      status: 'partial',
      note: 'enable/disable with publish-options, summary form (message-count, sender and body only when configured), one notification per burst, retries with backoff, cancel/auth/modify errors disable the registration; app servers are local accounts or, with federation on, remote domains over s2s; docs/push.md',
    },
  ],
  setup(ctx) {
    const { broker, options: o } = ctx;
    const kv = broker.storage.kv<Registration>('push');
    const bursts = new Map<string, BurstState>();
    /** publishes waiting for the app server: iq id → resolver */
    const pending = new Map<string, { from: string; resolve: (a: Answer | undefined) => void }>();
    const log: Logger = ctx.log;

    // ---- enable / disable [XEP-0357 5, 6] ----
    const target = (req: { from: Address; to: Address }) => {
      if (!req.to.equals(req.from.bare()))
        throw new BrokerError('forbidden', 'push is enabled on your own account');
      return req.from.bare().toString();
    };
    ctx.onUnload(
      iqRegistry(broker).register(
        ctx.name,
        { type: 'set', ns: NS_PUSH, name: 'enable' },
        async (req) => {
          const user = target(req);
          const jid = Address.tryParse(req.child.attrs.jid ?? '');
          const node = req.child.attrs.node;
          if (!jid) throw new BrokerError('bad-request', 'enable needs a jid'); // [XEP-0357 5]
          if (typeof node !== 'string' || node === '' || node.length > 1024)
            throw new BrokerError('bad-request', 'enable needs a node');
          const options: [string, string][] = [];
          const form = req.child.getChild('x', NS_DATA);
          for (const f of form?.getChildren('field') ?? []) {
            const v = f.attrs.var;
            if (typeof v !== 'string' || v === 'FORM_TYPE') continue;
            options.push([v, f.getChildText('value') ?? '']);
          }
          if (JSON.stringify(options).length > 4096)
            throw new BrokerError('not-acceptable', 'publish-options too large');
          const key = regKey(user, jid.toString(), node);
          if (
            !(await kv.get(key)) &&
            (await kv.keys(`${user}/`)).length >= o.maxRegistrationsPerUser
          )
            throw new BrokerError(
              'resource-constraint',
              `at most ${o.maxRegistrationsPerUser} push registrations`,
            );
          await kv.put(key, { jid: jid.toString(), node, options });
          return 'empty' as const;
        },
      ),
    );
    ctx.onUnload(
      iqRegistry(broker).register(
        ctx.name,
        { type: 'set', ns: NS_PUSH, name: 'disable' },
        async (req) => {
          const user = target(req);
          const jid = Address.tryParse(req.child.attrs.jid ?? '');
          if (!jid) throw new BrokerError('bad-request', 'disable needs a jid'); // [XEP-0357 6]
          const node = req.child.attrs.node as string | undefined;
          for (const [key, r] of await kv.entries(`${user}/`)) {
            // [XEP-0357 6] without a node: every registration with this app server
            if (r.jid === jid.toString() && (node === undefined || r.node === node)) {
              await kv.delete(key);
              clearBurst(key);
            }
          }
          return 'empty' as const;
        },
      ),
    );
    // [XEP-0357 4] the feature on the account's bare JID
    ctx.onUnload(
      xmppHooks(broker).on('disco:info', (info, t) =>
        t.local && t.isBare ? { ...info, features: [...info.features, NS_PUSH] } : undefined,
      ),
    );

    // ---- answers from app servers ----
    const bus = broker.cluster.bus;
    const self = bus.nodeId;
    /** `push-<16 hex>-<node id>`: the node that sent the publish, which waits for the answer */
    const ID = /^push-[0-9a-f]{16}-(.+)$/;
    const answered = (a: Answer) => {
      const p = pending.get(a.id);
      // only from the app server we asked (its address is stamped by its server, or set by our router answering for it)
      if (!p || a.from !== p.from) return;
      pending.delete(a.id);
      p.resolve(a);
    };
    ctx.onUnload(
      broker.hooks.on(
        'route:filter',
        (env) => {
          if (
            !env ||
            env.kind !== 'iq' ||
            (env.type !== 'result' && env.type !== 'error') ||
            env.id === undefined
          )
            return undefined;
          const node = ID.exec(env.id)?.[1];
          // publishes leave from a user's bare JID [XEP-0357 7]: the answer comes back to it
          if (node === undefined || !env.to.isBare) return undefined;
          const a: Answer = { id: env.id, from: env.from.toString(), type: env.type };
          if (env.type === 'error') a.errType = errorType(env);
          if (node === self) {
            if (!pending.has(env.id)) return undefined;
            answered(a);
            return null; // consumed
          }
          // The app server is served here, the publish left another node: the answer goes back there.
          bus.send(node, ANSWER, a).catch(() => {}); // a lost answer is a timeout there: retried
          return null;
        },
        100,
      ),
    );
    let unloaded = false;
    ctx.onUnload(() => {
      unloaded = true;
    });
    bus.onMessage((m) => {
      if (unloaded) return;
      if (m.type === ANSWER) answered(m.payload as Answer);
      else if (m.type === ONLINE && m.from !== self) clearUser(String(m.payload));
    });

    // ---- when to notify ----
    const clearBurst = (key: string) => {
      const b = bursts.get(key);
      if (b?.timer) clearTimeout(b.timer);
      bursts.delete(key);
    };
    /** the bursts of one user (keys `<bare JID>/<hash>`) */
    const clearUser = (user: string) => {
      for (const key of [...bursts.keys()]) if (key.startsWith(`${user}/`)) clearBurst(key);
    };
    ctx.onUnload(() => {
      for (const key of [...bursts.keys()]) clearBurst(key);
      for (const p of pending.values()) p.resolve(undefined);
      pending.clear();
    });
    /** No session of the user can take a message now: none, or only detached XMPP ones. */
    const asleep = (user: Address): boolean =>
      broker.sessions
        .sessionsOf(user)
        .every((s: Session) => s instanceof XmppConnection && !s.live);
    const notifyAll = async (env: Envelope) => {
      const user = env.to.bare();
      const regs = await kv.entries(`${user.toString()}/`);
      for (const [key, reg] of regs) {
        let b = bursts.get(key);
        if (!b) bursts.set(key, (b = { count: 0, lastSentAt: 0, sending: false }));
        b.count++;
        b.lastSender = env.from.bare().toString();
        b.lastBody = env.body;
        schedule(user.toString(), key, reg, b);
      }
    };
    ctx.onUnload(
      broker.hooks.on(
        'message:offline',
        (env) => {
          if (important(env))
            notifyAll(env).catch((err) => log.warn({ err }, 'push: notify failed'));
          return undefined; // the offline module stores it
        },
        10,
      ),
    );
    ctx.onUnload(
      broker.hooks.on('message:delivered', (env, session) => {
        // a detached stream-management session takes the message into its queue: the phone may be asleep
        if (!(session instanceof XmppConnection) || session.live || !important(env)) return;
        if (!asleep(session.address)) return;
        notifyAll(env).catch((err) => log.warn({ err }, 'push: notify failed'));
      }),
    );
    // back online: the count starts again, on every node (a burst may have begun on another)
    ctx.onUnload(
      broker.hooks.on('session:available', async (s) => {
        const user = s.address.bare().toString();
        if ((await kv.keys(`${user}/`)).length === 0) return; // no push registration: nothing to clear
        clearUser(user);
        if ((await bus.members()).length > 1) bus.broadcast(ONLINE, user).catch(() => {});
      }),
    );

    const schedule = (user: string, key: string, reg: Registration, b: BurstState) => {
      if (b.timer || b.sending) return; // the burst's notification is already coming
      const wait = b.lastSentAt + o.burstSeconds * 1000 - Date.now();
      if (wait <= 0) void send(user, key, reg, b);
      else {
        b.timer = setTimeout(() => {
          b.timer = undefined;
          void send(user, key, reg, b);
        }, wait);
        b.timer.unref();
      }
    };

    const send = async (user: string, key: string, reg: Registration, b: BurstState) => {
      b.sending = true;
      const count = b.count;
      /** another node notified within the window: ours waits for the next */
      let lost = false;
      try {
        // One notification per burst window across the cluster: the node that claims the window sends it.
        lost = !(await claimOnce(broker, `push:${key}`, o.burstSeconds * 1000));
        b.lastSentAt = Date.now(); // after the claim: when this window's claim has expired, the timer fires
        if (lost || bursts.get(key) !== b) return;
        for (let attempt = 0; ; attempt++) {
          const answer = await publish(user, reg, count, b);
          if (answer?.type === 'result') return;
          const errType = answer?.errType;
          if (answer && errType !== 'wait') {
            // [XEP-0357 7] the app server refused: the registration is dead
            log.info(
              { user, appServer: reg.jid, type: errType },
              'push: app server error, registration disabled',
            );
            await kv.delete(key);
            bursts.delete(key);
            return;
          }
          if (attempt >= o.maxRetries) {
            log.warn(
              { user, appServer: reg.jid },
              'push: no answer from the app server; notification dropped',
            );
            return;
          }
          await new Promise((r) => setTimeout(r, o.retryBaseSeconds * 1000 * 2 ** attempt).unref());
          if (bursts.get(key) !== b) return; // disabled or user back online meanwhile
        }
      } finally {
        b.sending = false;
        // more came while sending, or the window was another node's
        if (bursts.get(key) === b && (lost || b.count > count)) schedule(user, key, reg, b);
      }
    };

    const field = (v: string, value: string) =>
      `<field var='${escapeXML(v)}'><value>${escapeXMLText(value)}</value></field>`;
    const publish = (
      user: string,
      reg: Registration,
      count: number,
      b: BurstState,
    ): Promise<Answer | undefined> => {
      const id = `push-${randomBytes(8).toString('hex')}-${self}`;
      // [XEP-0357 7] summary form, only the fields the configuration allows
      let summary = field('FORM_TYPE', NS_PUSH_SUMMARY) + field('message-count', String(count));
      if (o.includeSender && b.lastSender) summary += field('last-message-sender', b.lastSender);
      if (o.includeBody && b.lastBody !== undefined)
        summary += field('last-message-body', b.lastBody);
      const opts = reg.options.length
        ? `<publish-options><x xmlns='${NS_DATA}' type='submit'>${field('FORM_TYPE', NS_PUBSUB_PUBLISH_OPTIONS)}${reg.options.map(([k, v]) => field(k, v)).join('')}</x></publish-options>`
        : '';
      const payload = `<pubsub xmlns='${NS_PUBSUB}'><publish node='${escapeXML(reg.node)}'><item><notification xmlns='${NS_PUSH}'><x xmlns='${NS_DATA}' type='submit'>${summary}</x></notification></item></publish>${opts}</pubsub>`;
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          resolve(undefined);
        }, o.timeoutSeconds * 1000);
        timer.unref();
        pending.set(id, {
          from: reg.jid,
          resolve: (a) => {
            clearTimeout(timer);
            resolve(a);
          },
        });
        // [XEP-0357 7] from the user's bare JID, an XEP-0060 publish to the app server
        broker.router
          .route({
            kind: 'iq',
            type: 'set',
            id,
            from: Address.parse(user),
            to: Address.parse(reg.jid),
            extensions: [payload],
          })
          .catch((err) => log.warn({ err }, 'push: publish not routed'));
      });
    };
  },
});
