import { defineModule, type Envelope, type Session } from '../../../broker/index.ts';
import { XmppConnection } from '../connection.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_CARBONS, NS_CHATSTATES, NS_FORWARD, NS_HINTS } from '../ns.ts';
import { Slot } from '../session-state.ts';
import { addHandoverPart } from './sm-cluster.ts';
import { envelopeXml } from '../stanza.ts';
import { discoFeature } from './basics.ts';

/** Carbons on for this session [XEP-0280 4]. */
const enabled = new Slot<boolean>('carbons');

/** Matches a serialised child with this name and namespace. */
function child(name: string, ns: string): RegExp {
  return new RegExp(`^<${name}\\s[^>]*xmlns=(["'])${ns.replace(/[.:/]/g, '\\$&')}\\1`);
}
const PRIVATE = child('private', NS_CARBONS);
const NO_COPY = child('no-copy', NS_HINTS);
const RECEIVED = child('received', NS_CARBONS);
const SENT = child('sent', NS_CARBONS);

/** Does an extension matching `re` ride on the message? */
function hasChild(env: Envelope, re: RegExp): boolean {
  return env.extensions.length > 0 && env.extensions.some((x) => re.test(x));
}

const IM_PAYLOADS = [NS_CHATSTATES, 'urn:xmpp:receipts', 'urn:xmpp:chat-markers:0'];

/** [XEP-0280 6] which messages are copied; [XEP-0280 7, XEP-0334 4.3] private and no-copy are not. */
export function eligible(env: Envelope): boolean {
  if (env.kind !== 'message') return false;
  const type = env.type ?? 'normal';
  if (type !== 'chat' && !(type === 'normal' && env.body !== undefined)) {
    const c = env.chat;
    const im =
      c !== undefined &&
      (c.receipt !== undefined ||
        c.marker !== undefined ||
        c.request === true ||
        c.markable === true ||
        c.retract !== undefined);
    if (
      type !== 'normal' ||
      !(im || env.extensions.some((x) => IM_PAYLOADS.some((ns) => x.includes(ns))))
    )
      return false;
  }
  if (hasChild(env, PRIVATE) || hasChild(env, NO_COPY)) return false; // [XEP-0334 4.3] no-copy
  // Never a copy of a copy.
  return !hasChild(env, RECEIVED) && !hasChild(env, SENT);
}

/** The copy for `to`: the original, forwarded [XEP-0297], inside `<sent/>` or `<received/>` from the user's bare JID. */
function copy(kind: 'sent' | 'received', env: Envelope, to: Session): Envelope {
  const inner = envelopeXml(env, env.to);
  return {
    kind: 'message',
    type: env.type,
    from: to.address.bare(),
    to: to.address,
    extensions: [
      `<${kind} xmlns='${NS_CARBONS}'><forwarded xmlns='${NS_FORWARD}'>${inner}</forwarded></${kind}>`,
    ],
  };
}

/** Every other session of the user that turned carbons on. */
function carbonSessions(
  broker: { sessions: { sessionsOf(a: Session['address']): Session[] } },
  of: Session,
): XmppConnection[] {
  const out: XmppConnection[] = [];
  for (const s of broker.sessions.sessionsOf(of.address)) {
    if (s !== of && s instanceof XmppConnection && s.peek(enabled)) out.push(s);
  }
  return out;
}

/**
 * XEP-0280 Message Carbons v2: a resource that enables carbons gets a copy
 * of every chat message its user's other resources send (`<sent/>`, from
 * XMPP clients and MQTT devices alike) and of every one addressed to another
 * of its user's full JIDs (`<received/>`). Messages to the bare JID already
 * reach every available resource with a non-negative priority (Parley's
 * multi-device rule, docs/architecture.md), so they are not copied again.
 */
export default defineModule({
  name: 'carbons',
  description: 'Message Carbons: copies of sent and received chat messages to the other resources',
  options: {},
  specs: [
    {
      spec: 'XEP-0280',
      status: 'complete',
      note: 'bare-JID messages reach every available resource as originals, not as carbons',
    },
    {
      spec: 'XEP-0334',
      status: 'complete',
      note: 'no-copy honoured by carbons; store, no-store and no-permanent-store by the core (docs/conversations.md)',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const iq = iqRegistry(broker);
    // Sessions with carbons on, per account (local part: one domain): the
    // message hooks return at once for the users who have none, which is
    // every message of a user whose clients never asked for carbons.
    const users = new Map<string, number>();
    const count = (local: string, by: 1 | -1) => {
      const n = (users.get(local) ?? 0) + by;
      if (n > 0) users.set(local, n);
      else users.delete(local);
    };
    ctx.onUnload(
      broker.hooks.on('session:unbound', (s) => {
        if (s instanceof XmppConnection && s.peek(enabled)) count(s.address.local, -1);
      }),
    );
    // Carbons stay on for a session resumed on another node [XEP-0198 5] (sm-cluster.ts)
    ctx.onUnload(
      addHandoverPart(broker, 'carbons', {
        save: (conn) => (conn.peek(enabled) ? true : undefined),
        restore: (conn, on) => {
          if (on !== true || conn.peek(enabled)) return;
          conn.state.set(enabled, true);
          count(conn.address.local, 1);
        },
      }),
    );
    // [XEP-0280 4] enable / disable, per session
    for (const [name, on] of [
      ['enable', true],
      ['disable', false],
    ] as const) {
      ctx.onUnload(
        iq.register(ctx.name, { type: 'set', ns: NS_CARBONS, name }, (req) => {
          if (!req.to.equals(req.from.bare()) && !req.to.isDomain) return undefined;
          if (!!req.conn.peek(enabled) !== on) count(req.conn.address.local, on ? 1 : -1);
          req.conn.state.set(enabled, on);
          return 'empty';
        }),
      );
    }
    discoFeature(ctx, NS_CARBONS);

    // [XEP-0280 5] sent: the sender's other resources see what it sent
    ctx.onUnload(
      broker.hooks.on('message:route', (env, origin) => {
        if (!origin || !users.has(origin.address.local) || !eligible(env)) return;
        for (const s of carbonSessions(broker, origin)) s.deliver(copy('sent', env, s));
      }),
    );
    // [XEP-0280 5] received: a message to one full JID, copied to the user's other resources
    ctx.onUnload(
      broker.hooks.on('message:delivered', (env, session) => {
        if (
          env.to.isBare ||
          !users.has(session.address.local) ||
          !env.to.equals(session.address) ||
          !eligible(env)
        )
          return;
        for (const s of carbonSessions(broker, session)) s.deliver(copy('received', env, s));
      }),
    );
  },
});
