// Stored data: offline queues, uploads, archives, backup and restore.
import { Option } from 'commander';
import { adminRequest } from '../admin.ts';
import { adminSocketPath } from '../config.ts';
import { makeStorage } from '../node.ts';
import { prepareDataDir } from '../datadir.ts';
import { silentLogger } from '../../broker/logger.ts';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { restoreStore } from '../backup.ts';
import {
  action,
  admin,
  AdminCommandError,
  loadConfig,
  output,
  program,
  withAdmin,
  progressReporter,
} from './program.ts';

export function registerDataCommands(): void {
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
            r.manifest.mqttRecords !== undefined
              ? ` and ${r.manifest.mqttRecords} MQTT records`
              : '';
          console.log(
            `restored ${r.manifest.records} records${mqtt} (backup of ${r.manifest.createdAt})${r.replaced ? `; the previous store is in ${r.replaced}` : ''}${r.mqttReplaced ? `, the previous MQTT state in ${r.mqttReplaced}` : ''}`,
          );
        });
      }),
    );
}
