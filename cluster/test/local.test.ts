import { LocalBus, LocalRegistry } from '../local.ts';
import { clusterContract } from './contract.ts';

clusterContract(
  'local (one node, in process)',
  async () => ({ bus: new LocalBus('n1'), registry: new LocalRegistry() }),
  async () => {},
);
