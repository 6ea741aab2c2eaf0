import type { SessionEntry } from '../cluster/types.ts';
import { Address } from './address.ts';
import type { Broker } from './broker.ts';
import type { Envelope } from './envelope.ts';

/** What {@link replayLocalFromArchives} read and queued again. */
export interface LocalReplay {
  users: number;
  read: number;
  queued: number;
}

/**
 * A node died holding messages that one of its own sessions had sent to
 * another of its own sessions and that the recipient's client had not yet
 * acknowledged (docs/cluster.md, "Node loss"). No live node ever held
 * them, so nothing of theirs is in another node's handed-over ring
 * (`broker/handed-over.ts`); but the sender's acknowledgement came after the
 * message was archived, so the recipients' archives have them. Run by the
 * node that reaps the dead one: for each user who had a session there, the
 * messages of the last `windowMs` in that user's archive that came to the
 * user from a session of the dead node go through the offline path again,
 * delay-stamped [XEP-0203] with their archive id [XEP-0359]: queued, and
 * flushed at once to a session the user has on a live node. Messages from a
 * live node's sessions are left out (that node queues them again from its
 * ring). At most `max` messages in all; a message the client had
 * acknowledged comes again with the same ids, for the client to drop.
 */
export async function replayLocalFromArchives(
  broker: Broker,
  sessions: readonly SessionEntry[],
  windowMs: number,
  max: number,
  now = Date.now(),
): Promise<LocalReplay> {
  const out: LocalReplay = { users: 0, read: 0, queued: 0 };
  if (windowMs <= 0 || max <= 0 || sessions.length === 0) return out;
  // The dead node's sessions, by full address: a message from one of them was sent there.
  const senders = new Set(sessions.map((s) => `${s.user}/${s.resource}`));
  const users = [...new Set(sessions.map((s) => s.user))];
  const start = now - windowMs;
  for (const user of users) {
    if (out.queued >= max) break;
    out.users++;
    const owner = Address.parse(user);
    let after: string | undefined;
    for (;;) {
      const page = await broker.archive.queryUser(owner, { start, max: 100, after });
      for (const m of page.messages) {
        out.read++;
        const env = m.env;
        if (env.kind !== 'message' || env.type === 'groupchat' || env.chat?.retracted) continue;
        if (env.to.bare().toString() !== user) continue; // the user's own, sent
        if (!senders.has(env.from.toString())) continue; // a live node handed it over
        const copy: Envelope = {
          ...env,
          to: owner,
          archive: { id: m.id, owners: [user] },
          delay: env.delay ?? { stamp: env.timestamp ?? m.stamp, from: broker.domain },
        };
        if ((await broker.hooks.run('message:offline', copy)) === 'queued') out.queued++;
        if (out.queued >= max) break;
      }
      if (page.complete || page.messages.length === 0 || out.queued >= max) break;
      after = page.messages[page.messages.length - 1].id;
    }
  }
  return out;
}
