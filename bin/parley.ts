import { Command, Option } from 'commander';
import { Broker } from '../broker/index.ts';
import { adminRequest, runAdmin, type AdminRequest } from './admin.ts';
import { adminSocketPath, ConfigError, envOverrides, LISTENERS, merge, readConfigFile, validateConfig, type Config } from './config.ts';
import { ListenError, makeBroker, makeLogger, startNode } from './node.ts';
import { installProcessGuard } from './guard.ts';
import { prepareDataDir } from './datadir.ts';
import { silentLogger } from '../broker/logger.ts';
import { availableParallelism } from 'node:os';
import { PACKAGE } from './version.ts';

interface GlobalFlags {
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

function port(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`--${name}: not a port number`);
  return n;
}

/** defaults < config file < environment < flags. */
function loadConfig(flags: GlobalFlags): Config {
  const file = flags.config ? readConfigFile(flags.config) : {};
  const fromFlags: Record<string, any> = {};
  if (flags.domain) fromFlags.domain = flags.domain;
  if (flags.dataDir) fromFlags.dataDir = flags.dataDir;
  if (flags.nodeId) fromFlags.nodeId = flags.nodeId;
  if (flags.logLevel || flags.logFormat) fromFlags.log = { ...(flags.logLevel && { level: flags.logLevel }), ...(flags.logFormat && { format: flags.logFormat }) };
  if (flags.adminSocket) fromFlags.admin = { socket: flags.adminSocket };
  // Listeners: a port flag sets that field only (the host stays as configured);
  // --host alone moves every listener the file (or the defaults) enables, never one set to null.
  const host = flags.host;
  const given = merge(file, envOverrides(process.env)) as Record<string, Record<string, unknown> | undefined>;
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
    const disabled = section !== undefined && typeof section === 'object' && section !== null && section[l.key] === null;
    if (p === undefined && (!host || disabled)) continue;
    fromFlags[l.section] ??= {};
    fromFlags[l.section][l.key] = { ...(host && { host }), ...(p !== undefined && { port: p }) };
  }
  return validateConfig(merge(file, envOverrides(process.env), fromFlags));
}

function fail(err: unknown): never {
  if (err instanceof ConfigError) console.error(`invalid configuration:\n${err.message}`);
  else console.error(`error: ${(err as Error).message}`);
  process.exit(err instanceof ConfigError ? 2 : 1);
}

/** Run an admin command on the running node, or on the store directly when no node runs. */
async function admin(flags: GlobalFlags, req: AdminRequest): Promise<unknown> {
  const cfg = loadConfig(flags);
  // Before a password goes through the socket or into the store: a directory others can write in could hold their socket.
  prepareDataDir(cfg.dataDir, adminSocketPath(cfg), silentLogger);
  const res = await adminRequest(adminSocketPath(cfg), req);
  if (res) {
    if (!res.ok) throw new Error(res.error);
    return res.result;
  }
  const broker: Broker = makeBroker({ ...cfg, modules: {} }, silentLogger);
  await broker.storage.open();
  try {
    return await runAdmin(broker, req);
  } finally {
    await broker.storage.close();
  }
}

async function readPassword(given: string | undefined): Promise<string> {
  if (given !== undefined) {
    // Still accepted (scripts rely on it), but every local user sees the command line.
    console.error('warning: a password given as an argument is visible to other local users (ps, /proc) and stays in shell history; prefer PARLEY_PASSWORD or stdin');
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

const program = new Command('parley')
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
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']))
  .addOption(new Option('--log-format <format>', 'log lines: JSON, or readable (default: readable on a terminal, else JSON)').choices(['auto', 'json', 'pretty']));

program
  .command('start')
  .description('run a node')
  .action(async () => {
    let cfg: Config;
    try {
      cfg = loadConfig(program.opts());
    } catch (err) {
      fail(err);
    }
    const log = makeLogger(cfg);
    // bin/parley (the launcher) picks V8's GC threads by CPU count; say what it picked
    const gc = process.execArgv.includes('--single-threaded-gc') ? 'single' : 'parallel';
    // and the young generation's size; V8 takes the last of repeated flags (PARLEY_NODE_ARGS comes after the launcher's)
    const semi = process.execArgv.filter((a) => a.startsWith('--max-semi-space-size=')).pop();
    log.info({ gc, cpus: availableParallelism(), semiSpaceMiB: semi ? Number(semi.split('=')[1]) : 'default' }, 'garbage collection threads');
    let node;
    try {
      node = await startNode(cfg, log);
    } catch (err) {
      if (err instanceof ListenError) {
        // An operator's mistake, not a bug: one line, no stack.
        console.error(`parley: ${err.message}`);
        process.exit(1);
      }
      log.error({ err }, 'start failed');
      fail(err);
    }
    const shutdown = (signal: string) => {
      log.info({ signal }, 'shutting down');
      node.stop().then(
        () => process.exit(0),
        (err) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
    // New certificate files without a restart (certbot deploy hooks send SIGHUP); connections stay.
    process.on('SIGHUP', () => {
      node.reloadTls().catch((err) => log.error({ err }, 'TLS reload failed: the previous certificate stays'));
    });
    installProcessGuard(log, node.broker.metrics);
  });

program
  .command('check-config')
  .description('validate the configuration and print it')
  .action(() => {
    try {
      console.log(JSON.stringify(loadConfig(program.opts()), null, 2));
    } catch (err) {
      fail(err);
    }
  });

const user = program.command('user').description('manage accounts (works with or without a running node)');
user
  .command('add <username> [password]')
  .description('create an account; the password may come from PARLEY_PASSWORD or stdin')
  .action(async (username: string, password?: string) => {
    try {
      await admin(program.opts(), { cmd: 'user.add', username, password: await readPassword(password) });
      console.log(`user ${username} added`);
    } catch (err) {
      fail(err);
    }
  });
user
  .command('remove <username>')
  .description('delete an account, its roster and offline messages')
  .action(async (username: string) => {
    try {
      await admin(program.opts(), { cmd: 'user.remove', username });
      console.log(`user ${username} removed`);
    } catch (err) {
      fail(err);
    }
  });
user
  .command('passwd <username> [password]')
  .description('set a new password')
  .action(async (username: string, password?: string) => {
    try {
      await admin(program.opts(), { cmd: 'user.passwd', username, password: await readPassword(password) });
      console.log(`password of ${username} changed`);
    } catch (err) {
      fail(err);
    }
  });
user
  .command('list')
  .description('list accounts')
  .action(async () => {
    try {
      const users = (await admin(program.opts(), { cmd: 'user.list' })) as string[];
      for (const u of users) console.log(u);
    } catch (err) {
      fail(err);
    }
  });

program
  .command('status')
  .description('show a running node')
  .action(async () => {
    try {
      const cfg = loadConfig(program.opts());
      const res = await adminRequest(adminSocketPath(cfg), { cmd: 'status' });
      if (!res) throw new Error('no node is running');
      if (!res.ok) throw new Error(res.error);
      console.log(JSON.stringify(res.result, null, 2));
    } catch (err) {
      fail(err);
    }
  });

program
  .command('reload-tls')
  .description('make a running node read its certificate files again (as SIGHUP does); connections stay open')
  .action(async () => {
    try {
      const cfg = loadConfig(program.opts());
      const res = await adminRequest(adminSocketPath(cfg), { cmd: 'tls.reload' });
      if (!res) throw new Error('no node is running');
      if (!res.ok) throw new Error(res.error);
      console.log(`certificate reloaded, SHA-256 fingerprint ${(res.result as { fingerprint256: string }).fingerprint256}`);
    } catch (err) {
      fail(err);
    }
  });

await program.parseAsync(process.argv);
