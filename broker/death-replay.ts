import type { SessionEntry } from '../cluster/types.ts';
import { Address } from './address.ts';
import type { Broker } from './broker.ts';
import type { Envelope } from './envelope.ts';
import { deliveredElsewhere } from './router.ts';

/** What {@link replayLocalFromArchives} read and queued again. */
export interface LocalReplay {
  users: number;
  read: number;
  queued: number;
  failed: number;
}

/**
 * A node died holding messages that one of its own sessions had sent to
 * another of its own sessions and that the recipient's client had not yet
 * acknowledged (docs/cluster.md, "Node loss"). No live node ever held
 * them, so nothing of theirs is in another node's handed-over ring
 * (`broker/handed-over.ts`); but the sender's acknowledgement came after the
 * message was archived, so the recipients' archives have them. Run by the
 * node that reaps the dead one, with `deadAt` taken when the reap began: for
 * each user who had an available session there, the messages of the
 * `windowMs` before `deadAt` in that user's archive that came to the user
 * from a session of the dead node go through the offline path again,
 * delay-stamped [XEP-0203] with their archive id [XEP-0359]: queued, and
 * flushed at once to a session the user has on a live node, except the
 * sessions that were bound before the message (they had it live: the
 * `deliveredElsewhere` of the ring replay). Messages from a live node's
 * sessions are left out (that node queues them again from its ring). At
 * most `max` messages queued and `10 × max` read in all; one user's failure
 * does not stop the others.
 */
export async function replayLocalFromArchives(
  broker: Broker,
  node: string,
  sessions: readonly SessionEntry[],
  /** addresses the dead node had that another node took over before the reap (same resource) */
  movedOn: readonly { user: string; resource: string }[],
  windowMs: number,
  max: number,
  deadAt = Date.now(),
): Promise<LocalReplay> {
  const out: LocalReplay = { users: 0, read: 0, queued: 0, failed: 0 };
  if (windowMs <= 0 || max <= 0 || sessions.length + movedOn.length === 0) return out;
  // The dead node's sessions, by full address: a message from one of them was sent there.
  const senders = new Set([...sessions, ...movedOn].map((s) => `${s.user}/${s.resource}`));
  // Only users who had a session there that took messages (the others' were queued already), and
  // those whose device came back elsewhere under the same address before the reap.
  const users = [
    ...new Set([
      ...sessions.filter((s) => s.available && s.priority >= 0).map((s) => s.user),
      ...movedOn.map((s) => s.user),
    ]),
  ];
  const readMax = 10 * max;
  const start = deadAt - windowMs;
  const done = () => out.queued >= max || out.read >= readMax;
  for (const user of users) {
    if (done()) break;
    out.users++;
    try {
      const elsewhere = (await broker.cluster.registry.lookup(user)).filter(
        (e) => e.node !== node && e.available && e.priority >= 0,
      );
      const owner = Address.parse(user);
      let after: string | undefined;
      for (;;) {
        const page = await broker.archive.queryUser(owner, {
          start,
          end: deadAt,
          max: 100,
          after,
          noCount: true,
        });
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
          // A bare-JID message reached every available session: those bound before it had it live.
          const sent = env.timestamp ?? m.stamp;
          const had = env.to.resource
            ? []
            : elsewhere.filter((e) => e.since !== undefined && e.since <= sent);
          if (had.length) deliveredElsewhere.set(copy, new Set(had.map((e) => e.resource)));
          if ((await broker.hooks.run('message:offline', copy)) === 'queued') out.queued++;
          if (done()) break;
        }
        if (page.complete || page.messages.length === 0 || done()) break;
        after = page.messages[page.messages.length - 1].id;
      }
    } catch (err) {
      out.failed++;
      broker.log.warn(
        { err, user, node },
        "cluster: a dead node's messages not queued again for a user",
      );
    }
  }
  return out;
}
