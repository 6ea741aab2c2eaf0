// The CLI's program, its global flags and the helpers every command group uses (one line or JSON
// errors, the running node or the store). The command groups are the other files of bin/cli/.
import { Command, Option } from 'commander';
import { Broker, BrokerError } from '../../broker/index.ts';
import { adminRequest, runAdmin, type AdminRequest } from '../admin.ts';
import {
  adminSocketPath,
  ConfigError,
  envOverrides,
  LISTENERS,
  merge,
  readConfigFile,
  validateConfig,
  type Config,
} from '../config.ts';
import { makeBroker } from '../node.ts';
import { prepareDataDir } from '../datadir.ts';
import { silentLogger } from '../../broker/logger.ts';
import { offlineMqttBackup, setMqttBackup } from '../backup.ts';
import { PACKAGE } from '../version.ts';

export interface GlobalFlags {
  config?: string;
  domain?: string;
  dataDir?: string;
  host?: string;
  xmppPort?: string;
  xmppsPort?: string;
  mqttPort?: string;
  httpPort?: string;
  httpsPort?: string;
  mqttsPort?: string;
  adminSocket?: string;
  logLevel?: string;
  logFormat?: string;
  nodeId?: string;
}

export function port(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new ConfigError(`--${name}: not a port number`);
  return n;
}

/** defaults < config file < environment < flags. */
export function loadConfig(flags: GlobalFlags): Config {
  const file = flags.config ? readConfigFile(flags.config) : {};
  const fromFlags: Record<string, any> = {};
  if (flags.domain) fromFlags.domain = flags.domain;
  if (flags.dataDir) fromFlags.dataDir = flags.dataDir;
  if (flags.nodeId) fromFlags.nodeId = flags.nodeId;
  if (flags.logLevel || flags.logFormat)
    fromFlags.log = {
      ...(flags.logLevel && { level: flags.logLevel }),
      ...(flags.logFormat && { format: flags.logFormat }),
    };
  if (flags.adminSocket) fromFlags.admin = { socket: flags.adminSocket };
  // Listeners: a port flag sets that field only (the host stays as configured);
  // --host alone moves every listener the file (or the defaults) enables, never one set to null.
  const host = flags.host;
  const given = merge(file, envOverrides(process.env)) as Record<
    string,
    Record<string, unknown> | undefined
  >;
  const ports: Record<string, number | undefined> = {
    '--xmpp-port': port(flags.xmppPort, 'xmpp-port'),
    '--xmpps-port': port(flags.xmppsPort, 'xmpps-port'),
    '--mqtt-port': port(flags.mqttPort, 'mqtt-port'),
    '--mqtts-port': port(flags.mqttsPort, 'mqtts-port'),
    '--http-port': port(flags.httpPort, 'http-port'),
    '--https-port': port(flags.httpsPort, 'https-port'),
  };
  for (const l of LISTENERS) {
    if (!l.flag) continue;
    const p = ports[l.flag];
    const section = given[l.section];
    const disabled =
      section !== undefined &&
      typeof section === 'object' &&
      section !== null &&
      section[l.key] === null;
    if (p === undefined && (!host || disabled)) continue;
    fromFlags[l.section] ??= {};
    fromFlags[l.section][l.key] = { ...(host && { host }), ...(p !== undefined && { port: p }) };
  }
  return validateConfig(merge(file, envOverrides(process.env), fromFlags));
}

/** An error the node (or the store) answered, with its typed code (bin/admin.ts AdminErrorCode). */
export class AdminCommandError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

export function fail(err: unknown): never {
  const code = err instanceof ConfigError ? 2 : 1;
  if (program.opts().json) {
    // Scripts read one JSON object on stdout, success or not.
    const c =
      err instanceof ConfigError
        ? 'invalid-config'
        : err instanceof AdminCommandError
          ? err.code
          : undefined;
    console.log(
      JSON.stringify({ ok: false, error: (err as Error).message, ...(c && { code: c }) }),
    );
  } else if (err instanceof ConfigError) console.error(`invalid configuration:\n${err.message}`);
  else console.error(`error: ${(err as Error).message}`);
  process.exit(code);
}

export type RunAdmin = (req: AdminRequest) => Promise<unknown>;

/**
 * Run admin commands on the running node (through its socket), or on the
 * store directly when no node runs (opened once for all of them).
 */
export async function withAdmin<T>(
  flags: GlobalFlags,
  fn: (run: RunAdmin, live: boolean) => Promise<T>,
): Promise<T> {
  const cfg = loadConfig(flags);
  // Before a password goes through the socket or into the store: a directory others can write in could hold their socket.
  prepareDataDir(cfg.dataDir, adminSocketPath(cfg), silentLogger);
  const probe = await adminRequest(adminSocketPath(cfg), { cmd: 'ping' }).catch(() => undefined);
  if (probe) {
    return fn(async (req) => {
      const res = await adminRequest(adminSocketPath(cfg), req);
      if (!res) throw new Error('the node stopped');
      if (!res.ok) throw new AdminCommandError(res.error, res.code);
      return res.result;
    }, true);
  }
  // The store only: this process is no cluster node (no bus, no heartbeat).
  const broker: Broker = makeBroker({ ...cfg, modules: {}, cluster: null }, silentLogger);
  const mqttBackup = offlineMqttBackup(cfg.dataDir);
  if (mqttBackup) setMqttBackup(broker, mqttBackup); // `backup` with no node running copies the MQTT database too
  await broker.storage.open();
  try {
    return await fn(async (req) => {
      try {
        return await runAdmin(broker, req);
      } catch (err) {
        if (err instanceof BrokerError) throw new AdminCommandError(err.message, err.condition);
        throw err;
      }
    }, false);
  } finally {
    await broker.storage.close();
  }
}

/** Run one admin command on the running node, or on the store directly when no node runs. */
export function admin(flags: GlobalFlags, req: AdminRequest): Promise<unknown> {
  return withAdmin(flags, (run) => run(req));
}

export async function readPassword(given: string | undefined): Promise<string> {
  if (given !== undefined) {
    // Still accepted (scripts rely on it), but every local user sees the command line.
    console.error(
      'warning: a password given as an argument is visible to other local users (ps, /proc) and stays in shell history; prefer PARLEY_PASSWORD or stdin',
    );
    return given;
  }
  if (process.env.PARLEY_PASSWORD) return process.env.PARLEY_PASSWORD;
  // Read one line from stdin (so passwords stay out of shell history and ps).
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    if (Buffer.concat(chunks).includes(10)) break;
  }
  const pw = Buffer.concat(chunks).toString('utf8').split('\n')[0].replace(/\r$/, '');
  if (!pw) throw new Error('no password given (argument, PARLEY_PASSWORD or stdin)');
  return pw;
}

// Everything the node and the CLI write (store, MQTT state, certificate and
// key, admin socket) is for this user only, whatever umask it was started
// with; files written explicitly get their mode too (docs/configuration.md).
process.umask(0o077);

export const program = new Command('parley')
  .description('Parley: one broker for XMPP and MQTT')
  .version(PACKAGE.version)
  .option('-c, --config <file>', 'config file (YAML or JSON)')
  .option('--domain <domain>', 'the XMPP domain served (default localhost)')
  .option('--data-dir <dir>', 'data directory (default ./data)')
  .option('--node-id <id>', 'node id in a cluster')
  .option('--host <addr>', 'address every listener binds (default 127.0.0.1)')
  .option('--xmpp-port <port>', 'XMPP c2s port with STARTTLS (default 5222; 0 = any free port)')
  .option('--xmpps-port <port>', 'XMPP direct TLS port (default 5223)')
  .option('--http-port <port>', 'HTTP port: WebSocket, BOSH, metrics, pages (default 5280)')
  .option('--https-port <port>', 'HTTPS port (default 5443)')
  .option('--mqtt-port <port>', 'MQTT port (default 1883; 0 = any free port)')
  .option('--mqtts-port <port>', 'MQTT over TLS port (default 8883; 0 = any free port)')
  .option('--admin-socket <path>', 'admin socket path (default <data-dir>/admin.sock)')
  .addOption(
    new Option('--log-level <level>', 'log level').choices([
      'trace',
      'debug',
      'info',
      'warn',
      'error',
      'fatal',
      'silent',
    ]),
  )
  .addOption(
    new Option(
      '--log-format <format>',
      'log lines: JSON, or readable (default: readable on a terminal, else JSON)',
    ).choices(['auto', 'json', 'pretty']),
  );

export function output(result: unknown, human: () => void): void {
  if (program.opts().json) console.log(JSON.stringify(result));
  else human();
}

/** A command's action with its errors reported by fail() (one line, or JSON with --json). */
export function action<A extends unknown[]>(
  fn: (...args: A) => Promise<void> | void,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      fail(err);
    }
  };
}

/** A running node's answer; an error when none runs. */
export async function live(req: AdminRequest): Promise<unknown> {
  const cfg = loadConfig(program.opts());
  const res = await adminRequest(adminSocketPath(cfg), req);
  if (!res) throw new AdminCommandError('no node is running', 'no-node');
  if (!res.ok) throw new AdminCommandError(res.error, res.code);
  return res.result;
}

export function progressReporter(what: string, total: number): (done: number) => void {
  let lastTenth = -1;
  return (done) => {
    if (total === 0) return;
    if (process.stderr.isTTY) {
      const width = 30;
      const filled = Math.round((done / total) * width);
      process.stderr.write(
        `\r${what} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${done === total ? '\n' : ''}`,
      );
      return;
    }
    const tenth = Math.floor((done / total) * 10);
    if (tenth !== lastTenth || done === total) {
      lastTenth = tenth;
      process.stderr.write(`${what} ${done}/${total}\n`);
    }
  };
}
