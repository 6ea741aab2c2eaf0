// Development aid, not part of the runner: start one Parley pinned to core 0 with
// accounts u1…u1000 / pw, print its ports as JSON, keep it running until SIGINT/SIGTERM.
//   node --import tsx bench/dev-server.ts [--cpu-prof-dir DIR] [--node-args trace-gc,max-semi-space-size=16] [--stdout FILE (appended to)]
import { openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseFlags } from './lib/common.ts';
import { ParleyServer, wipe } from './servers.ts';

const f = parseFlags();
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = f.dir ?? '/tmp/parley-bench-dev';
wipe(dir);
const s = new ParleyServer(dir, repo, true, f['cpu-prof-dir'], {
  nodeArgs: f['node-args']
    ?.split(',')
    .filter(Boolean)
    .map((a) => `--${a}`),
  stdoutFd: f.stdout ? openSync(f.stdout, 'a') : undefined,
});
await s.start();
await s.seed(1000);
console.log(JSON.stringify({ pid: s.pid, ...s.ports }));
const stop = () => void s.stop().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
