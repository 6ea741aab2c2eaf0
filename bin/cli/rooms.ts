// `parley room …`: groupchat rooms on a running node (docs/groupchat.md).
import { adminRequest, type AdminRequest } from '../admin.ts';
import { adminSocketPath } from '../config.ts';
import { fail, loadConfig, program } from './program.ts';

export function registerRoomCommands(): void {
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
    .description('rooms with their occupant counts (in a cluster: of every node, with its home)')
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
}
