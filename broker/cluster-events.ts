import type { SessionEntry } from '../cluster/types.ts';
import { Address } from './address.ts';
import type { Broker } from './broker.ts';
import { replayLocalFromArchives } from './death-replay.ts';
import type { RosterItem } from './roster.ts';

/** The 'roster-push' bus message: a roster change for the user's interested sessions on the receiving node. */
interface RemoteRosterPush {
  user: string;
  item: RosterItem;
  ver: string;
}

/** The 'sessions-gone' bus message: a dead node's sessions, after the reaper purged them. */
interface SessionsGone {
  node: string;
  sessions: SessionEntry[];
}

/**
 * What a node does for the cluster besides routing (docs/cluster.md): when
 * the cluster backend declares a node dead (on one node only, the reaper),
 * purge its sessions from the registry, tell their contacts they are gone,
 * and tell every node ('sessions-gone' → the `node:down` hook, for state a
 * node keeps in memory such as room occupants). Roster changes reach the
 * user's sessions on other nodes. On a single node (cluster/local) none of
 * this ever fires.
 */
export function joinCluster(broker: Broker): void {
  const { bus, registry } = broker.cluster;
  bus.onNodeDown(async (node) => {
    const deadAt = Date.now(); // the replay's window ends here, however long the rest takes
    const sessions = await registry.byNode(node);
    // the addresses a device took to another node with the same resource before this reap
    const movedOn = ((await registry.residents?.(node).catch(() => [])) ?? []).filter(
      (r) => !sessions.some((s) => s.user === r.user && s.resource === r.resource),
    );
    const purged = await registry.purgeNode(node);
    broker.log.warn({ node, sessions: purged }, 'cluster: sessions of a dead node purged');
    // Every node at once (the rooms' occupants, the messages each had handed to the dead node),
    // before the contacts' presence, which takes a while for a node with many sessions.
    const gone: SessionsGone = { node, sessions };
    await bus.broadcast('sessions-gone', gone).catch(() => {});
    // What the dead node's sessions sent each other and its clients had not acknowledged: only
    // the recipients' archives have it (docs/cluster.md, "Node loss"). Not awaited: the reap ends
    // (and the membership drops the node) without waiting for the archives' reads.
    const { deathReplayMs = 0, deathReplayMax = 20_000 } = broker.cluster;
    void broker.hooks
      .track(
        replayLocalFromArchives(
          broker,
          node,
          sessions,
          movedOn,
          deathReplayMs,
          deathReplayMax,
          deadAt,
        ),
      )
      .then(
        (r) =>
          (r.queued > 0 || r.failed > 0) &&
          broker.log.info(
            { node, ...r },
            "cluster: a dead node's messages between its own sessions queued again",
          ),
        (err) =>
          broker.log.error({ err, node }, "cluster: queueing a dead node's own messages failed"),
      );
    for (const e of sessions) {
      await broker.presence
        .remoteSessionGone(e)
        .catch((err) =>
          broker.log.error(
            { err, user: e.user },
            "cluster: unavailable presence for a dead node's session failed",
          ),
        );
    }
  });
  // Declared dead while cut off (a partition, a long pause): the registry wrote this
  // node's sessions again; their contacts were told they were gone, so tell them again.
  bus.onReconnect?.(({ reaped }) => {
    if (!reaped) return;
    broker.hooks.emit('node:reaped-self'); // a reset cut loses the 'sessions-gone' frame: this says it too
    void (async () => {
      for (const s of broker.sessions.all()) {
        await broker.presence
          .announceAgain(s)
          .catch((err) => broker.log.warn({ err }, 'cluster: presence not announced again'));
      }
    })();
  });
  bus.onMessage((msg) => {
    if (msg.type === 'sessions-gone') {
      const p = msg.payload as SessionsGone;
      // About this node (declared dead while cut off, and it hears it once the link heals): the
      // sessions it still holds are alive, and those that ended left their rooms when they did.
      // Other nodes dropped them from what they hold, though (rooms homed there): 'node:reaped-self'.
      if (p.node === bus.nodeId) return void broker.hooks.emit('node:reaped-self');
      broker.hooks.emit('node:down', p.node, p.sessions);
    } else if (msg.type === 'roster-push') {
      const p = msg.payload as RemoteRosterPush;
      for (const s of broker.sessions.sessionsOf(Address.parse(p.user)))
        if (s.interested) s.rosterPush?.(p.item, p.ver);
    }
  });
}

/** A roster push [RFC6121 2.1.6] for the user's interested sessions on other nodes (one bus message per node). */
export async function pushRosterToOtherNodes(
  broker: Broker,
  user: string,
  item: RosterItem,
  ver: string,
): Promise<void> {
  const self = broker.cluster.bus.nodeId;
  const entries =
    broker.cluster.registry.lookupNow?.(user) ?? (await broker.cluster.registry.lookup(user));
  const nodes = new Set<string>();
  for (const e of entries) if (e.node !== self) nodes.add(e.node);
  const push: RemoteRosterPush = { user, item, ver };
  for (const node of nodes)
    await broker.cluster.bus.send(node, 'roster-push', push).catch(() => {});
}
