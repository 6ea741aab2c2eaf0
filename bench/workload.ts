// What the runner (bench/run.ts) knows of a workload: one generator script, its arguments against a started
// server, and the figure it compares.
import type { Server } from './servers.ts';

export interface Workload {
  id: string;
  title: string;
  proto: 'xmpp' | 'mqtt';
  script: string;
  /** the figure compared: a path into the result JSON */
  metric: string;
  unit: string;
  lowerIsBetter?: boolean;
  /** fresh server process for every run (memory) */
  restart?: boolean;
  /** only these servers */
  servers?: string[];
  args(s: Server): string[];
  target?: string;
  /** at least this many runs, whatever --reps says (the p99 at a fixed rate varies more from run to run than a throughput) */
  minReps?: number;
  /** more figures shown beside the metric (medians): a path into the result JSON and its unit */
  more?: { path: string; unit: string }[];
  /** the generator's time limit in seconds (default 600 for restart workloads) */
  limitSec?: number;
  /** the generator forces collections in the server (Server.memProbe): Parley starts with its inspector on */
  memProbe?: boolean;
}
