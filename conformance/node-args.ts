// Where the node's CLI is and the arguments that put every listener on a
// port of the kernel's choosing: shared by startNode (helpers.ts), the tests
// that spawn a node themselves (ops/logs.test.ts) and bench/startup.ts.
// Kept free of other imports so that a benchmark can load it cheaply.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The node's CLI entry point, run with `node`. */
export const BIN = path.join(ROOT, 'bin', 'parley.js');

/** Port 0 (the kernel picks a free one) for every listener. */
export const ZERO_PORTS: readonly string[] = [
  '--xmpp-port',
  '0',
  '--xmpps-port',
  '0',
  '--mqtt-port',
  '0',
  '--mqtts-port',
  '0',
  '--http-port',
  '0',
  '--https-port',
  '0',
];
