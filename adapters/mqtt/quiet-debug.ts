/**
 * Disabled `debug` loggers that cost nothing.
 *
 * mqtt-packet (under aedes) logs through the `debug` package on every step of
 * parsing and writing a packet: 62 calls per QoS 1 message (the PUBLISH and its
 * PUBACKs, each parsed and written once). A disabled
 * `debug` logger still takes its arguments as a rest array and reads an
 * `enabled` getter on every call; in a heap profile of MQTT QoS 1 pairs at
 * 2,000 msgs/s those arrays were a fifth of everything allocated, hence a
 * fifth of the young-generation collections (bench/PROFILE-NOTES.md, tenth
 * round).
 *
 * Importing this module, before mqtt-packet is first loaded, makes
 * `require('debug')(namespace)` hand back one shared empty function for every
 * namespace that is not enabled when the logger is created; enabled ones are
 * the real loggers. So `DEBUG=mqtt-packet:* parley start` still traces
 * packets; enabling a namespace later at run time (`debug.enable()`) no longer
 * reaches loggers created while it was off. Everything else about the `debug`
 * export (`enable`, `disable`, `enabled`, `formatters`, …) is the original's.
 */
import { createRequire } from 'node:module';

type Debugger = ((...args: unknown[]) => void) & {
  enabled: boolean;
  namespace: string;
  extend?: unknown;
};
type CreateDebug = ((namespace: string) => Debugger) & Record<string | symbol, unknown>;

const QUIET = Symbol.for('parley.quietDebug');

/** The logger handed out for disabled namespaces. */
export const quietLogger: Debugger = Object.assign(() => {}, { enabled: false, namespace: '' });

/** mqtt-packet modules that were loaded before the patch (their loggers are the real ones). */
export const loadedTooEarly: string[] = [];

function patch(): void {
  // Resolve `debug` as mqtt-packet resolves it (one copy in this tree, but be exact).
  const fromAedes = createRequire(createRequire(import.meta.url).resolve('aedes'));
  const packetReq = createRequire(fromAedes.resolve('mqtt-packet'));
  const path = packetReq.resolve('debug');
  const original = packetReq('debug') as CreateDebug;
  if (original[QUIET]) return;
  for (const f of ['parser.js', 'writeToStream.js']) {
    const file = fromAedes.resolve(`mqtt-packet/${f}`);
    if (packetReq.cache[file]) loadedTooEarly.push(file);
  }
  const quiet = function createQuietDebug(namespace: string): Debugger {
    const d = original(namespace);
    return d.enabled ? d : quietLogger;
  } as CreateDebug;
  for (const [k, desc] of Object.entries(Object.getOwnPropertyDescriptors(original))) {
    if (k !== 'length' && k !== 'name' && k !== 'prototype') Object.defineProperty(quiet, k, desc);
  }
  quiet[QUIET] = true;
  // `default` points at the function itself in `debug`'s export; keep that true of the wrapper.
  if (original.default === original) quiet.default = quiet;
  packetReq.cache[path]!.exports = quiet;
}

patch();
