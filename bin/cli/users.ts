// `parley user …`: accounts, on the running node or the store.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  action,
  admin,
  AdminCommandError,
  output,
  program,
  readPassword,
  withAdmin,
  progressReporter,
} from './program.ts';

export function registerUserCommands(): void {
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
}
