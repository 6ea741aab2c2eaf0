import type { Envelope } from '../envelope.ts';
import type { ErrorCondition } from '../errors.ts';
import { defineModule } from '../module.ts';
import type { Session } from '../session.ts';

/**
 * Recall and correction of one-to-one messages, whatever the protocol
 * (docs/conversations.md). A retraction [XEP-0424] is checked against the
 * conversation it is sent in, before it is routed: only the sender of the
 * message it names may retract it; the message then becomes a tombstone in
 * both parties' archives (same place, same archive id), and the retraction
 * itself is stored and delivered like any message, so every device of both
 * parties gets it (carbons copy it to the sender's other XMPP resources). A
 * correction [XEP-0308] of a message the other party sent is refused; one of
 * the sender's own message is relayed and archived as a message of its own,
 * the original kept (clients apply it). Only the conversation of the two
 * parties is read, its newest `lookback` records.
 */
export default defineModule({
  name: 'recall',
  description:
    'Message retraction (tombstones in the archive) and last message correction for every protocol',
  options: {
    lookback: {
      type: 'number',
      default: 1000,
      min: 1,
      max: 100_000,
      doc: 'records of a conversation searched, newest first, for the message a retraction or correction names; an older one cannot be retracted (item-not-found)',
    },
  },
  specs: [
    {
      spec: 'XEP-0424',
      status: 'complete',
      note: 'one-to-one: only the sender; tombstone in both archives; MUC through XEP-0425 (module muc-moderation-retract)',
    },
    {
      spec: 'XEP-0308',
      status: 'complete',
      note: "relayed and archived as its own message; a correction of the other party's message is refused with forbidden",
    },
  ],
  setup(ctx) {
    const { broker, options } = ctx;

    const refuse = (
      env: Envelope,
      origin: Session | undefined,
      condition: ErrorCondition,
      text: string,
    ): null => {
      origin?.deliver({
        kind: 'message',
        type: 'error',
        from: env.to,
        to: env.from,
        id: env.id,
        extensions: [],
        error: { condition, type: condition === 'item-not-found' ? 'cancel' : 'auth', text },
      });
      return null;
    };

    const check = async (env: Envelope, origin: Session | undefined): Promise<Envelope | null> => {
      const c = env.chat!;
      const id = (c.retract ?? c.replace)!;
      const found = await broker.archive.findById(env.from, env.to, id, options.lookback);
      const sender = env.from.bare();
      const own = found.find((m) => m.from.bare().equals(sender));
      if (c.retract !== undefined) {
        if (!own) {
          // [XEP-0424 7] only the original sender retracts; another's message, an unknown or forged id: refused, nothing relayed
          if (found.length > 0)
            return refuse(env, origin, 'forbidden', 'only the sender of a message may retract it');
          return refuse(
            env,
            origin,
            'item-not-found',
            'no message with this id in this conversation',
          );
        }
        // Store, then sync: the tombstone is written before anyone sees the retraction.
        if (own.chat?.retracted === undefined)
          await broker.archive.tombstone(own, { stamp: env.timestamp ?? Date.now() });
        return env;
      }
      // [XEP-0308 5] a correction must come from the sender of the message it corrects
      if (!own && found.length > 0)
        return refuse(env, origin, 'forbidden', 'only the sender of a message may correct it');
      return env;
    };

    ctx.onUnload(
      broker.hooks.on(
        'route:filter',
        (env, origin) => {
          const c = env?.chat;
          if (!env || c === undefined || (c.retract === undefined && c.replace === undefined))
            return undefined;
          if (env.kind !== 'message' || env.type === 'groupchat' || env.type === 'error')
            return undefined;
          // One-to-one between accounts of this domain; rooms have their own rules (XEP-0425).
          if (
            env.from.domain !== broker.domain ||
            env.to.domain !== broker.domain ||
            !env.from.local ||
            !env.to.local
          )
            return undefined;
          return check(env, origin);
        },
        50,
      ),
    );
  },
});
