// The groupchat (XEP-0045) workloads of the runner: a fresh server per run (the joins are part of every run,
// and memory per occupant is measured over them); rooms with history (20) and archive on everywhere
// (bench/servers.ts). Memory: RSS, and the heap after a forced collection (Server.memProbe), with the
// sessions joined minus the same sessions logged in but not joined (bench/lib/muc.ts).
import type { Server } from './servers.ts';
import type { Workload } from './workload.ts';

export interface MucSettings {
  /** occupants of the 1-room fan-out (--occupants, default 1,000) */
  occupants: number;
  /** occupants of the large fan-out (--occupants-large, default 10,000) */
  large: number;
  /** rooms × occupants per room of the many-rooms workload (--rooms, --per-room; default 100 × 50) */
  rooms: number;
  perRoom: number;
  /** accounts u1…uN the occupants log in as; u(N+1) is the large room's sender */
  users: number;
  /** --warmup S --duration S */
  timing: string[];
}

const more = [
  { path: 'joinSec', unit: 's joins' },
  { path: 'presencesPerOccupant', unit: 'presence stanzas per occupant' },
  { path: 'heapBytesPerOccupant', unit: 'B heap/occupant after a forced GC' },
];

export function mucWorkloads(m: MucSettings): Workload[] {
  const common = (s: Server) => [
    '--port',
    String(s.ports.xmpp),
    '--pid',
    String(s.pid),
    '--users',
    String(m.users),
    ...(s.memProbe ? ['--mem-probe', s.memProbe] : []),
    ...m.timing,
  ];
  const fanout = (s: Server, occupants: number) => [...common(s), '--occupants', String(occupants)];
  // 10,000 joins broadcast to every occupant would be 50 million presence stanzas: the room broadcasts only
  // the moderators' presence (the sender's), on every server through the config form (XEP-0045
  // muc#roomconfig_presencebroadcast; ejabberd's room option presence_broadcast, Prosody's
  // presence_broadcast.lib.lua, Parley's rooms option presenceBroadcast); a server whose form lacks the
  // field fails the run at once. The sender is an account of its own: the occupants take all 10 sessions
  // of u1…u1000.
  const large = (s: Server) => [
    ...fanout(s, m.large),
    '--presence-broadcast',
    'moderator',
    '--sender-user',
    `u${m.users + 1}`,
  ];
  const rooms = (s: Server) => [
    ...common(s),
    '--rooms',
    String(m.rooms),
    '--per-room',
    String(m.perRoom),
    '--senders',
    '5',
  ];
  // 1,000 joins with full broadcast took Prosody over 600 s (the default limit) on a loaded machine
  const base = { proto: 'xmpp' as const, restart: true, memProbe: true, more, limitSec: 1200 };
  // Prosody is left out at 10,000: even with presence broadcast to moderators only, its joins grow faster than
  // N² (300 joins 13 s, 1,000 joins 341 s on a loaded machine, 2026-12-07); 10,000 would take hours. Its
  // 1,000-occupant figure in the same configuration: --occupants-large 1000 --servers '^prosody$'.
  const largeServers = m.large > 1000 ? ['parley', 'ejabberd'] : undefined;
  return [
    {
      ...base,
      id: 'muc-fanout-sat',
      title: `Groupchat fan-out, 1 sender → ${m.occupants} occupants of one room, closed loop (4 messages in flight, a message done at its last copy)`,
      script: 'xmpp-muc.ts',
      metric: 'deliveriesPerSec',
      unit: 'deliveries/s',
      args: (s) => [...fanout(s, m.occupants), '--mode', 'window', '--window', '4'],
      target: '≥ 2× ejabberd',
    },
    {
      ...base,
      id: 'muc-fanout-10',
      title: `Groupchat fan-out, 1 sender → ${m.occupants} occupants of one room, 10 msgs/s offered: send → last delivery`,
      script: 'xmpp-muc.ts',
      metric: 'latencyMs.p99',
      unit: 'ms p99 to the last occupant',
      lowerIsBetter: true,
      args: (s) => [...fanout(s, m.occupants), '--mode', 'rate', '--rate', '10'],
      target: 'p99 < 50 ms; memory per occupant reported',
    },
    {
      ...base,
      id: 'muc-rooms-sat',
      title: `Groupchat, ${m.rooms} rooms × ${m.perRoom} occupants (each a login of its own), 5 senders per room each keeping 1 message in flight (closed loop); deliveries to the other occupants`,
      script: 'xmpp-muc-rooms.ts',
      metric: 'deliveriesPerSec',
      unit: 'deliveries/s',
      args: (s) => [...rooms(s), '--mode', 'window', '--window', '1'],
      target: 'state the figure, beside ejabberd and Prosody',
    },
    {
      ...base,
      id: 'muc-rooms-100',
      title: `Groupchat, ${m.rooms} rooms × ${m.perRoom} occupants, 100 msgs/s in total over 5 senders per room: send → each delivery`,
      script: 'xmpp-muc-rooms.ts',
      metric: 'latencyMs.p99',
      unit: 'ms p99 send → delivery',
      lowerIsBetter: true,
      args: (s) => [...rooms(s), '--mode', 'rate', '--rate', '100'],
      target: 'state the figure, beside ejabberd and Prosody',
    },
    {
      ...base,
      id: 'muc-fanout-10k-sat',
      title: `Groupchat fan-out, 1 sender → ${m.large} occupants of one room (presence broadcast: moderators), closed loop (4 in flight)`,
      script: 'xmpp-muc.ts',
      metric: 'deliveriesPerSec',
      unit: 'deliveries/s',
      limitSec: 1800,
      servers: largeServers,
      args: (s) => [...large(s), '--mode', 'window', '--window', '4'],
      target: 'state the figure; memory per occupant',
    },
    {
      ...base,
      id: 'muc-fanout-10k-2',
      title: `Groupchat fan-out, 1 sender → ${m.large} occupants of one room (presence broadcast: moderators), 2 msgs/s offered: send → last delivery`,
      script: 'xmpp-muc.ts',
      metric: 'latencyMs.p99',
      unit: 'ms p99 to the last occupant',
      lowerIsBetter: true,
      limitSec: 1800,
      servers: largeServers,
      args: (s) => [...large(s), '--mode', 'rate', '--rate', '2'],
      target: 'state the figure',
    },
  ];
}
