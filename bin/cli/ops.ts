// Commands on a running node: status, reload, cluster, sessions, announcements.
import type { ClusterStatus } from '../../cluster/types.ts';
import { action, admin, live, output, program } from './program.ts';

export function registerOpsCommands(): void {
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
            console.log(
              `need a restart (old values stay until then): ${r.restartNeeded.join(', ')}`,
            );
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
        output(r, () =>
          console.log(`certificate reloaded, SHA-256 fingerprint ${r.fingerprint256}`),
        );
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
        const st = (await live({ cmd: 'cluster.status' })) as ClusterStatus & {
          clustered: boolean;
        };
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
}
