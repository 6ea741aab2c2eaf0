// Over 600 lines: the CLI's command definitions (commander) in one place, so `parley completion` can walk them
// and every command's flags and --json output sit side by side. Next split: one file per command group.
import { Command, Option } from 'commander';
import { Broker, BrokerError } from '../broker/index.ts';
import { adminRequest, runAdmin, type AdminRequest } from './admin.ts';
import {
  adminSocketPath,
  ConfigError,
  envOverrides,
  LISTENERS,
  merge,
  readConfigFile,
  validateConfig,
  type Config,
} from './config.ts';
import { ListenError, makeBroker, makeLogger, makeStorage, startNode } from './node.ts';
import { installProcessGuard } from './guard.ts';
import { prepareDataDir } from './datadir.ts';
import { silentLogger } from '../broker/logger.ts';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { offlineMqttBackup, restoreStore, setMqttBackup } from './backup.ts';
import { completionScript } from './completion.ts';
import { PACKAGE } from './version.ts';
import type { ClusterStatus } from '../cluster/types.ts';

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
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new ConfigError(`--${name}: not a port number`);
  return n;
}

/** defaults < config file < environment < flags. */
function loadConfig(flags: GlobalFlags): Config {
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
class AdminCommandError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

function fail(err: unknown): never {
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

type RunAdmin = (req: AdminRequest) => Promise<unknown>;

/**
 * Run admin commands on the running node (through its socket), or on the
 * store directly when no node runs (opened once for all of them).
 */
async function withAdmin<T>(
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
function admin(flags: GlobalFlags, req: AdminRequest): Promise<unknown> {
  return withAdmin(flags, (run) => run(req));
}

async function readPassword(given: string | undefined): Promise<string> {
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
    log.info(
      {
        gc,
        cpus: availableParallelism(),
        semiSpaceMiB: semi ? Number(semi.split('=')[1]) : 'default',
      },
      'garbage collection threads',
    );
    let node;
    try {
      node = await startNode(cfg, log, { loadConfig: () => loadConfig(program.opts()) });
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
    node.onDrained = () => shutdown('drain');
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
    // `parley reload` as a signal (systemctl reload, certbot deploy hooks): the configuration and the certificate files; connections stay.
    process.on('SIGHUP', () => {
      node
        .reload()
        .catch((err) =>
          log.error(
            { err: err instanceof ConfigError ? err.message : err },
            'reload failed: nothing was changed',
          ),
        );
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

/** --json: the result as one JSON value on stdout; otherwise the human form. */
function output(result: unknown, human: () => void): void {
  if (program.opts().json) console.log(JSON.stringify(result));
  else human();
}

/** A command's action with its errors reported by fail() (one line, or JSON with --json). */
function action<A extends unknown[]>(
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
async function live(req: AdminRequest): Promise<unknown> {
  const cfg = loadConfig(program.opts());
  const res = await adminRequest(adminSocketPath(cfg), req);
  if (!res) throw new AdminCommandError('no node is running', 'no-node');
  if (!res.ok) throw new AdminCommandError(res.error, res.code);
  return res.result;
}

const user = program
  .command('user')
  .description('manage accounts (works with or without a running node)');
user
  .command('add <username> [password]')
  .description('create an account; the password may come from PARLEY_PASSWORD or stdin')
  .action(
    action(async (username: string, password?: string) => {
      await admin(program.opts(), {
        cmd: 'user.add',
        username,
        password: await readPassword(password),
      });
      output({ user: username, added: true }, () => console.log(`user ${username} added`));
    }),
  );
user
  .command('remove <username>')
  .description('delete an account, its roster and offline messages')
  .action(
    action(async (username: string) => {
      await admin(program.opts(), { cmd: 'user.remove', username });
      output({ user: username, removed: true }, () => console.log(`user ${username} removed`));
    }),
  );
user
  .command('passwd <username> [password]')
  .description('set a new password')
  .action(
    action(async (username: string, password?: string) => {
      await admin(program.opts(), {
        cmd: 'user.passwd',
        username,
        password: await readPassword(password),
      });
      output({ user: username, passwordChanged: true }, () =>
        console.log(`password of ${username} changed`),
      );
    }),
  );
user
  .command('list')
  .description('list accounts')
  .action(
    action(async () => {
      const users = (await admin(program.opts(), { cmd: 'user.list' })) as string[];
      output(users, () => users.forEach((u) => console.log(u)));
    }),
  );
user
  .command('info <username>')
  .description('an account: roster size, sessions, offline messages, last login')
  .action(
    action(async (username: string) => {
      const info = (await admin(program.opts(), { cmd: 'user.info', username })) as {
        user: string;
        created?: number;
        rosterSize: number;
        sessions: { jid: string; protocol: string; transport: string }[];
        offline: number;
        lastLogin: { at: number; protocol: string; transport: string; address?: string } | null;
      };
      output(info, () => {
        console.log(`user        ${info.user}`);
        if (info.created) console.log(`created     ${new Date(info.created).toISOString()}`);
        console.log(`roster      ${info.rosterSize} contacts`);
        console.log(`offline     ${info.offline} messages queued`);
        const l = info.lastLogin;
        console.log(
          `last login  ${l ? `${new Date(l.at).toISOString()} (${l.protocol}/${l.transport}${l.address ? ` from ${l.address}` : ''})` : 'never'}`,
        );
        console.log(`sessions    ${info.sessions.length}`);
        for (const s of info.sessions) console.log(`  ${s.jid} ${s.protocol}/${s.transport}`);
      });
    }),
  );
user
  .command('roster <username>')
  .description(
    "an account's roster: contacts, subscription states, groups (XEP-0133 get user roster)",
  )
  .action(
    action(async (username: string) => {
      const r = (await admin(program.opts(), { cmd: 'user.roster', username })) as {
        user: string;
        items: {
          jid: string;
          name?: string;
          subscription: string;
          groups: string[];
          ask?: boolean;
        }[];
      };
      output(r, () => {
        for (const i of r.items)
          console.log(
            [
              i.jid,
              i.subscription + (i.ask ? ' (asked)' : ''),
              i.name ?? '',
              i.groups.join(','),
            ].join('\t'),
          );
      });
    }),
  );
user
  .command('import <file>')
  .description(
    'create accounts from a CSV (username,password per line) or JSON file ([{username, password}]); existing ones are left alone',
  )
  .action(
    action(async (file: string) => {
      const entries = readImportFile(file);
      const summary = {
        total: entries.length,
        added: 0,
        existing: 0,
        failed: [] as { username: string; error: string }[],
      };
      const progress = progressReporter('imported', entries.length);
      await withAdmin(program.opts(), async (run) => {
        for (const [i, e] of entries.entries()) {
          try {
            await run({ cmd: 'user.add', username: e.username, password: e.password });
            summary.added++;
          } catch (err) {
            if (err instanceof AdminCommandError && err.code === 'conflict') summary.existing++;
            else summary.failed.push({ username: e.username, error: (err as Error).message });
          }
          progress(i + 1);
        }
      });
      output(summary, () => {
        console.log(
          `${summary.added} added, ${summary.existing} existed already, ${summary.failed.length} failed (of ${summary.total})`,
        );
        for (const f of summary.failed) console.log(`  ${f.username}: ${f.error}`);
      });
      if (summary.failed.length) process.exitCode = 1;
    }),
  );

/** Lines of `username,password` (the password is everything after the first comma; a `username,password` header is skipped) or a JSON array. */
function readImportFile(file: string): { username: string; password: string }[] {
  const text = readFileSync(file, 'utf8');
  if (file.endsWith('.json') || text.trimStart().startsWith('[')) {
    const list = z
      .array(z.object({ username: z.string().min(1), password: z.string().min(1) }))
      .safeParse(JSON.parse(text));
    if (!list.success)
      throw new Error(
        `${file}: ${list.error.issues[0].path.join('.')}: ${list.error.issues[0].message}`,
      );
    return list.data;
  }
  const out: { username: string; password: string }[] = [];
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.replace(/\r$/, '');
    if (
      !line.trim() ||
      line.startsWith('#') ||
      (n === 0 && /^username,password$/i.test(line.trim()))
    )
      continue;
    const comma = line.indexOf(',');
    if (comma <= 0 || comma === line.length - 1)
      throw new Error(`${file}:${n + 1}: expected username,password`);
    out.push({ username: line.slice(0, comma).trim(), password: line.slice(comma + 1) });
  }
  return out;
}

/** Progress on stderr: a bar redrawn in place on a terminal, a line per 10 % otherwise. */
function progressReporter(what: string, total: number): (done: number) => void {
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

program
  .command('status')
  .description('show a running node: sessions, users, memory and its counters')
  .action(
    action(async () => {
      const st = await live({ cmd: 'status' });
      output(st, () => console.log(JSON.stringify(st, null, 2)));
    }),
  );

program
  .command('reload')
  .description(
    'make a running node read its configuration and certificate files again (as SIGHUP does); says which changed keys were applied and which need a restart',
  )
  .action(
    action(async () => {
      const r = (await live({ cmd: 'reload' })) as {
        applied: string[];
        restartNeeded: string[];
        tls: { fingerprint256: string };
      };
      output(r, () => {
        console.log(
          r.applied.length ? `applied: ${r.applied.join(', ')}` : 'no live setting changed',
        );
        if (r.restartNeeded.length)
          console.log(`need a restart (old values stay until then): ${r.restartNeeded.join(', ')}`);
        console.log(`certificate SHA-256 fingerprint ${r.tls.fingerprint256}`);
      });
    }),
  );

program
  .command('reload-tls')
  .description(
    'make a running node read its certificate files again (as SIGHUP does); connections stay open',
  )
  .action(
    action(async () => {
      const r = (await live({ cmd: 'tls.reload' })) as { fingerprint256: string };
      output(r, () => console.log(`certificate reloaded, SHA-256 fingerprint ${r.fingerprint256}`));
    }),
  );

const cluster = program
  .command('cluster')
  .description('the cluster of a running node (docs/cluster.md)');
cluster
  .command('status')
  .description('nodes, sessions per node, heartbeats and Redis health')
  .action(
    action(async () => {
      const st = (await live({ cmd: 'cluster.status' })) as ClusterStatus & { clustered: boolean };
      output(st, () => {
        if (!st.clustered) console.log(`single node ${st.node} (no cluster configured)`);
        else
          console.log(
            `cluster via ${st.backend}: ${st.connected ? 'connected' : 'NOT CONNECTED'}${Object.entries(
              st.health,
            )
              .map(([k, v]) => ` ${k}=${v}`)
              .join('')}`,
          );
        console.log(['node', 'state', 'sessions', 'last beat', 'wire', 'version'].join('\t'));
        for (const n of st.nodes)
          console.log(
            [
              n.id + (n.id === st.node ? ' *' : ''),
              n.state,
              n.sessions,
              `${n.lastBeatAgoMs} ms ago`,
              n.wire,
              n.version,
            ].join('\t'),
          );
      });
    }),
  );
cluster
  .command('drain [node]')
  .description(
    'drain a node (this one by default): not ready at once, then its clients are disconnected to reconnect elsewhere, unacknowledged messages go to offline storage, and it exits',
  )
  .action(
    action(async (node?: string) => {
      const r = (await live({ cmd: 'cluster.drain', ...(node && { node }) })) as { node: string };
      output(r, () => console.log(`node ${r.node} is draining`));
    }),
  );

const session = program.command('session').description('sessions of a running node');
session
  .command('list')
  .description('sessions: JID, protocol, transport, client address, since')
  .option('--user <username>', 'only this account (username or bare JID)')
  .action(
    action(async (opts: { user?: string }) => {
      const list = (await admin(program.opts(), {
        cmd: 'session.list',
        ...(opts.user && { user: opts.user }),
      })) as {
        jid: string;
        protocol: string;
        transport: string;
        address: string | null;
        since: number | null;
      }[];
      output(list, () => {
        for (const s of list)
          console.log(
            [
              s.jid,
              s.protocol,
              s.transport,
              s.address ?? '-',
              s.since ? new Date(s.since).toISOString() : '-',
            ].join('\t'),
          );
      });
    }),
  );
session
  .command('kick <jid>')
  .description('end a session (full JID) or every session of an account (bare JID or username)')
  .option(
    '--reason <text>',
    'said to the client (XMPP: the text of the policy-violation stream error)',
  )
  .action(
    action(async (jid: string, opts: { reason?: string }) => {
      const r = (await live({
        cmd: 'session.kick',
        jid,
        ...(opts.reason && { reason: opts.reason }),
      })) as { kicked: string[] };
      output(r, () => r.kicked.forEach((j) => console.log(`kicked ${j}`)));
    }),
  );

program
  .command('announce <text>')
  .description(
    'a message from the server to every online session (XEP-0133); --all-users queues it for the others too',
  )
  .option('--all-users', 'users not online get it through their offline queue')
  .option('--subject <subject>', 'a subject line')
  .action(
    action(async (text: string, opts: { allUsers?: boolean; subject?: string }) => {
      const r = (await admin(program.opts(), {
        cmd: 'announce',
        text,
        ...(opts.subject && { subject: opts.subject }),
        ...(opts.allUsers && { allUsers: true }),
      })) as {
        sessions: number;
        queued: number;
        queueFull: number;
      };
      output(r, () =>
        console.log(
          `sent to ${r.sessions} sessions${opts.allUsers ? `, queued for ${r.queued} offline users${r.queueFull ? ` (${r.queueFull} queues full)` : ''}` : ''}`,
        ),
      );
    }),
  );

const offline = program.command('offline').description('offline message queues');
offline
  .command('show <username>')
  .description(
    "the messages waiting in an account's offline queue, oldest first (left in the queue)",
  )
  .option('--limit <n>', 'at most this many', '100')
  .action(
    action(async (username: string, opts: { limit: string }) => {
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new Error('--limit: a positive integer');
      const r = (await admin(program.opts(), { cmd: 'offline.show', username, limit })) as {
        count: number;
        messages: { from: string; type: string; body?: string; timestamp?: number }[];
      };
      output(r, () => {
        console.log(`${r.count} queued`);
        for (const m of r.messages)
          console.log(
            `${m.timestamp ? new Date(m.timestamp).toISOString() : '-'}\t${m.from}\t${m.type}\t${m.body ?? ''}`,
          );
      });
    }),
  );

/** `2026-01-31`, an ISO time, or an age: `30d`, `12h`, `90m`. */
function parseBefore(v: string): number {
  const age = /^(\d+)([dhm])$/.exec(v);
  if (age)
    return (
      Date.now() -
      Number(age[1]) * { d: 86_400_000, h: 3_600_000, m: 60_000 }[age[2] as 'd' | 'h' | 'm']
    );
  const t = Date.parse(v);
  if (Number.isNaN(t))
    throw new Error(
      `--before: not a date or an age (2026-01-31, 2026-01-31T12:00:00Z, 30d, 12h): ${v}`,
    );
  return t;
}

const upload = program.command('upload').description('uploaded files (XEP-0363, docs/upload.md)');
upload
  .command('purge')
  .description(
    'delete uploaded files: with no option, those past modules.upload.maxAgeDays and unused slots (needs a running node); with --before and/or --user, every file matching both',
  )
  .option(
    '--before <date>',
    'files uploaded before a date (2026-01-31), ISO time, or an age (30d, 12h)',
  )
  .option('--user <username>', "only this account's files")
  .action(
    action(async (opts: { before?: string; user?: string }) => {
      const before = opts.before === undefined ? undefined : parseBefore(opts.before);
      const r = (await admin(program.opts(), {
        cmd: 'upload.purge',
        ...(before !== undefined && { before }),
        ...(opts.user !== undefined && { user: opts.user }),
      })) as { removed: number; bytes: number };
      const what =
        [
          before !== undefined && `before ${new Date(before).toISOString()}`,
          opts.user && `of ${opts.user}`,
        ]
          .filter(Boolean)
          .join(' ') || 'expired';
      output(
        {
          ...r,
          ...(before !== undefined && { before: new Date(before).toISOString() }),
          ...(opts.user && { user: opts.user }),
        },
        () => console.log(`${r.removed} files (${r.bytes} bytes) ${what} deleted`),
      );
    }),
  );
const archive = program.command('archive').description('message archives (XEP-0313)');
archive
  .command('purge')
  .description(
    "retention on demand: delete every archived message older than a date, from every archive or from one account's",
  )
  .requiredOption('--before <date>', 'a date (2026-01-31), ISO time, or an age (30d, 12h)')
  .option('--user <username>', "only this account's archive (the other party keeps its copy)")
  .action(
    action(async (opts: { before: string; user?: string }) => {
      const before = parseBefore(opts.before);
      const r = (await admin(program.opts(), {
        cmd: 'archive.purge',
        before,
        ...(opts.user !== undefined && { user: opts.user }),
      })) as { removed: number; user?: string };
      output({ ...r, before: new Date(before).toISOString() }, () =>
        console.log(
          `${r.removed} archived messages before ${new Date(before).toISOString()} deleted${r.user ? ` from the archive of ${r.user}` : ''}`,
        ),
      );
    }),
  );
archive
  .command('retain')
  .description(
    'apply the retention policy now (modules.archive.maxAgeDays and maxPerUser of the configuration, or the flags), not at the next timer',
  )
  .option('--max-age-days <days>', 'instead of modules.archive.maxAgeDays (0: no age bound)')
  .option('--max-per-user <n>', 'instead of modules.archive.maxPerUser (0: no count bound)')
  .action(
    action(async (opts: { maxAgeDays?: string; maxPerUser?: string }) => {
      const configured = loadConfig(program.opts()).modules.archive ?? {};
      const pick = (flag: string | undefined, key: string, name: string) => {
        const v = flag !== undefined ? Number(flag) : (configured[key] ?? 0);
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
          throw new Error(`${name}: a number, 0 or more`);
        return v;
      };
      const policy = {
        maxAgeDays: pick(opts.maxAgeDays, 'maxAgeDays', '--max-age-days'),
        maxPerUser: Math.floor(pick(opts.maxPerUser, 'maxPerUser', '--max-per-user')),
      };
      const r = (await admin(program.opts(), { cmd: 'archive.retain', ...policy })) as {
        aged: number;
        trimmed: number;
        maxAgeDays: number;
        maxPerUser: number;
      };
      output(r, () => {
        if (!r.maxAgeDays && !r.maxPerUser)
          console.log(
            'no retention policy (modules.archive.maxAgeDays and maxPerUser are 0): nothing to do',
          );
        else
          console.log(
            `${r.aged} archived messages older than ${r.maxAgeDays || '-'} days and ${r.trimmed} beyond ${r.maxPerUser || '-'} per user deleted`,
          );
      });
    }),
  );
archive
  .command('export <username>')
  .description(
    "an account's archive, oldest first, as JSON or as XML (XEP-0313 results), to stdout or a file",
  )
  .addOption(
    new Option('--format <format>', 'json or xml').choices(['json', 'xml']).default('json'),
  )
  .option('-o, --output <file>', 'write here instead of stdout')
  .action(
    action(async (username: string, opts: { format: 'json' | 'xml'; output?: string }) => {
      type Page = {
        user: string;
        count: number;
        complete: boolean;
        messages: { id: string; stamp: number; xml: string }[];
      };
      const messages: Page['messages'] = [];
      let owner = username;
      await withAdmin(program.opts(), async (run) => {
        let after: string | undefined;
        let progress: ((n: number) => void) | undefined;
        for (;;) {
          const page = (await run({
            cmd: 'archive.export',
            username,
            max: 500,
            ...(after !== undefined && { after }),
          })) as Page;
          owner = page.user;
          progress ??= progressReporter('exported', page.count);
          messages.push(...page.messages);
          progress(messages.length);
          if (page.complete || page.messages.length === 0) break;
          after = page.messages[page.messages.length - 1].id;
        }
      });
      const text =
        opts.format === 'json'
          ? JSON.stringify({ user: owner, count: messages.length, messages }, null, 2) + '\n'
          : `<?xml version='1.0' encoding='UTF-8'?>\n<archive xmlns='urn:parley:archive-export:0' owner='${xmlEscape(owner)}'>\n` +
            messages
              .map(
                (m) =>
                  `<result xmlns='urn:xmpp:mam:2' id='${xmlEscape(m.id)}'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='${new Date(m.stamp).toISOString()}'/>${m.xml}</forwarded></result>\n`,
              )
              .join('') +
            '</archive>\n';
      if (opts.output) {
        writeFileSync(opts.output, text, { mode: 0o600 });
        if (program.opts().json)
          console.log(
            JSON.stringify({
              user: owner,
              count: messages.length,
              file: opts.output,
              format: opts.format,
            }),
          );
        else console.error(`${messages.length} messages written to ${opts.output}`);
      } else process.stdout.write(text);
    }),
  );

function xmlEscape(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/'/g, '&apos;')
    .replace(/"/g, '&quot;');
}

program
  .command('backup <dir>')
  .description(
    'copy the embedded store into a new directory, consistent at one instant, while the node runs (or not)',
  )
  .action(
    action(async (dir: string) => {
      const r = (await admin(program.opts(), { cmd: 'backup', dir: path.resolve(dir) })) as {
        dir: string;
        records: number;
        createdAt: string;
      };
      output(r, () =>
        console.log(`backup of ${r.records} records written to ${r.dir} (${r.createdAt})`),
      );
    }),
  );

program
  .command('restore <dir>')
  .description(
    'put a backup in place of the store (the node must be stopped); the store it replaces is kept beside it',
  )
  .action(
    action(async (dir: string) => {
      const cfg = loadConfig(program.opts());
      prepareDataDir(cfg.dataDir, adminSocketPath(cfg), silentLogger);
      if (await adminRequest(adminSocketPath(cfg), { cmd: 'ping' }).catch(() => undefined)) {
        throw new AdminCommandError(
          'a node is running on this data directory: stop it first (systemctl stop parley)',
          'node-running',
        );
      }
      if (cfg.storage.backend !== 'embedded')
        throw new AdminCommandError(
          `restore is for the embedded store; the ${cfg.storage.backend} one has its own tools`,
          'feature-not-implemented',
        );
      // LevelDB's lock: no other process (a node started without its admin socket, a CLI command) has the store open.
      const store = makeStorage(cfg);
      await store.open();
      await store.close();
      const r = restoreStore(path.resolve(dir), cfg.dataDir);
      output(r, () => {
        const mqtt =
          r.manifest.mqttRecords !== undefined ? ` and ${r.manifest.mqttRecords} MQTT records` : '';
        console.log(
          `restored ${r.manifest.records} records${mqtt} (backup of ${r.manifest.createdAt})${r.replaced ? `; the previous store is in ${r.replaced}` : ''}${r.mqttReplaced ? `, the previous MQTT state in ${r.mqttReplaced}` : ''}`,
        );
      });
    }),
  );

program
  .command('completion <shell>')
  .description(
    'print a completion script: bash (source it, or put it in /etc/bash_completion.d/parley) or zsh (put it as _parley in $fpath)',
  )
  .action(
    action((shell: string) => {
      if (shell !== 'bash' && shell !== 'zsh') throw new Error('completion: bash or zsh');
      process.stdout.write(completionScript(program, shell));
    }),
  );

program.option(
  '--json',
  'machine-readable output: the result as JSON on stdout; errors as {"ok":false,"error","code"}',
);

/** A room command on the running node (rooms live in the node). */
async function roomCmd(req: AdminRequest): Promise<unknown> {
  const cfg = loadConfig(program.opts());
  const res = await adminRequest(adminSocketPath(cfg), req);
  if (!res) throw new Error('no node is running (room commands need one)');
  if (!res.ok) throw new Error(res.error);
  return res.result;
}

const room = program
  .command('room')
  .description('manage groupchat rooms on a running node (docs/groupchat.md)');
const show = (v: unknown) => {
  if (v !== undefined) console.log(JSON.stringify(v, null, 2));
};
room
  .command('list')
  .description('rooms with their occupant counts')
  .action(async () => {
    try {
      show(await roomCmd({ cmd: 'room.list' }));
    } catch (err) {
      fail(err);
    }
  });
room
  .command('info <room>')
  .description('config, affiliations, occupants and their devices')
  .action(async (r: string) => {
    try {
      show(await roomCmd({ cmd: 'room.info', room: r }));
    } catch (err) {
      fail(err);
    }
  });
room
  .command('create <room>')
  .description('create a room (persistent unless --temporary)')
  .option('--owner <user>', 'its owner')
  .option('--temporary', 'removed when its last occupant leaves')
  .option('--members-only', 'only members may enter')
  .option('--hidden', 'not listed in the service items')
  .option('--name <name>', 'natural-language name')
  .option('--description <text>', 'description (remark)')
  .action(
    async (
      r: string,
      o: {
        owner?: string;
        temporary?: boolean;
        membersOnly?: boolean;
        hidden?: boolean;
        name?: string;
        description?: string;
      },
    ) => {
      try {
        show(
          await roomCmd({
            cmd: 'room.create',
            room: r,
            owner: o.owner,
            persistent: !o.temporary,
            membersOnly: o.membersOnly,
            public: !o.hidden,
            name: o.name,
            description: o.description,
          }),
        );
      } catch (err) {
        fail(err);
      }
    },
  );
room
  .command('destroy <room>')
  .description('destroy a room; occupants are told the reason and the alternate venue')
  .option('--reason <text>')
  .option('--alternate <jid>', 'a room to go to instead')
  .action(async (r: string, o: { reason?: string; alternate?: string }) => {
    try {
      show(
        await roomCmd({ cmd: 'room.destroy', room: r, reason: o.reason, alternate: o.alternate }),
      );
    } catch (err) {
      fail(err);
    }
  });
room
  .command('set-affiliation <room> <user> <affiliation>')
  .description('owner, admin, member, outcast (ban) or none')
  .option('--reason <text>')
  .action(async (r: string, u: string, a: string, o: { reason?: string }) => {
    try {
      show(
        await roomCmd({
          cmd: 'room.set-affiliation',
          room: r,
          jid: u,
          affiliation: a as 'none',
          reason: o.reason,
        }),
      );
    } catch (err) {
      fail(err);
    }
  });
room
  .command('kick <room> <nick>')
  .description('take an occupant out of a room (status 307)')
  .option('--reason <text>')
  .action(async (r: string, n: string, o: { reason?: string }) => {
    try {
      show(await roomCmd({ cmd: 'room.kick', room: r, nick: n, reason: o.reason }));
    } catch (err) {
      fail(err);
    }
  });

await program.parseAsync(process.argv);
