import { BrokerError, type Broker } from '../broker/index.ts';
import type { ClusterStatus } from '../cluster/types.ts';

/** The bus message that asks a node to drain itself (`parley cluster drain NODE` run on another node). */
export const DRAIN_MESSAGE = 'cluster-drain';

/**
 * `parley cluster status`: the nodes, their sessions and the backend's
 * health; on a single node (no `cluster` config), this node alone.
 */
export async function clusterStatus(
  broker: Broker,
): Promise<ClusterStatus & { clustered: boolean; localSessions: number }> {
  const bus = broker.cluster.bus;
  const localSessions = broker.sessions.count();
  if (!bus.status) {
    return {
      clustered: false,
      node: bus.nodeId,
      backend: 'local',
      connected: true,
      health: {},
      localSessions,
      nodes: [
        {
          id: bus.nodeId,
          lastBeatAgoMs: 0,
          sessions: localSessions,
          wire: 0,
          version: broker.version,
          startedAt: broker.startedAt,
          state: 'up',
        },
      ],
    };
  }
  return { clustered: true, localSessions, ...(await bus.status()) };
}

/**
 * `parley cluster drain [NODE]`: this node (no NODE, or its own id) drains
 * through `drainSelf`; another live node is asked over the bus.
 */
export async function clusterDrain(
  broker: Broker,
  node: string | undefined,
  drainSelf: (() => void) | undefined,
): Promise<{ node: string; draining: true }> {
  const bus = broker.cluster.bus;
  const target = node ?? bus.nodeId;
  if (target === bus.nodeId) {
    if (!drainSelf) throw new BrokerError('service-unavailable', 'no node is running here');
    drainSelf();
    return { node: target, draining: true };
  }
  if (!(await bus.members()).includes(target))
    throw new BrokerError('item-not-found', `no live node ${target} in this cluster`);
  await bus.send(target, DRAIN_MESSAGE, {});
  return { node: target, draining: true };
}
