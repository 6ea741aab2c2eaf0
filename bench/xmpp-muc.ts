// Groupchat fan-out (XEP-0045): 1 sender → --occupants N in one room. A
// message is done when its last copy arrived; the latency is send → last
// delivery. `--mode rate --rate 10`: 10 msgs/s offered (the issue's p99
// target); `--mode window --window 4`: closed loop, deliveries/s. With --pid,
// the server's memory per occupant: RSS (and, with --mem-probe, the heap after
// a forced collection) with the N sessions joined minus the same with them
// logged in but not joined, each after --settle seconds. One JSON line out.
//   --port P [--domain localhost] [--muc conference.localhost] [--room fanout] [--occupants 1000]
//   [--users 1000] [--sender-user uN] [--mode rate|window] [--rate 10] [--window 4] [--warmup 2] [--duration 8]
//   [--pid SERVER_PID] [--mem-probe SPEC] [--concurrency 50] [--settle 5]
//   [--presence-broadcast moderator]   the room's muc#roomconfig_presencebroadcast (roles whose presence
//                                      is broadcast); the run fails if the server's form lacks the field
// Occupant i logs in as u((i % users) + 1) with resource r(i / users), nick n<i>, and joins
// without history; the sender (nick "sender"; account --sender-user, default u((N % users) + 1))
// creates the room and submits the config form (an instant room [XEP-0045 10.1.2], which every
// server unlocks).
import { num, parseFlags, pool, run, str } from './lib/common.ts';
import { FlowDriver } from './lib/flows.ts';
import {
  broadcastFields,
  countPresences,
  createRoom,
  groupchat,
  joinAll,
  memPoint,
  mucLogin,
  perOccupant,
  waitProbes,
} from './lib/muc.ts';

const f = parseFlags();

run(async () => {
  const n = num(f, 'occupants', 1000);
  const users = num(f, 'users', 1000);
  const domain = str(f, 'domain', 'localhost');
  const room = `${str(f, 'room', 'fanout')}@${str(f, 'muc', `conference.${domain}`)}`;
  const pid = num(f, 'pid', 0);
  const probe = str(f, 'mem-probe', '');
  const settle = num(f, 'settle', 5) * 1000;
  const timeoutMs = 120_000;
  const login = mucLogin(f, timeoutMs);

  const sender = await login(str(f, 'sender-user', `u${(n % users) + 1}`), 'sender', n);
  await createRoom(sender, room, 'sender', broadcastFields(f), timeoutMs);
  sender.chatMode(() => {}); // its own reflections are not counted

  // Logged in, not yet in the room (the accounts have no rosters: nothing arrives until the join)
  const clients = await pool(n, 100, (i) =>
    login(`u${(i % users) + 1}`, `r${Math.floor(i / users)}`, i),
  );
  const before = pid ? await memPoint(pid, probe, settle) : undefined;
  const presences = countPresences(clients);
  const sink: { driver?: FlowDriver; probes: number } = { probes: 0 };
  // the self presence by regex, then bodies only (the others' presence is dropped unread)
  const joinSec = await joinAll(
    clients,
    () => room,
    (i) => `n${i}`,
    num(f, 'concurrency', 50),
    (_i, b) => (b === 'probe' ? sink.probes++ : sink.driver?.receive(b)),
    timeoutMs,
  );
  // Every self presence is in, but the room may still be telling the others: a probe reaching every
  // occupant says its queue is empty, so the measurement does not start behind the joins' fan-out.
  const t1 = Date.now();
  sender.sendChat(groupchat(room, 'probe'));
  await waitProbes(() => sink.probes, n);
  const drainSec = (Date.now() - t1) / 1000;
  const presencesPerOccupant = Math.round((presences.total() / n) * 10) / 10;
  const after = pid ? await memPoint(pid, probe, settle) : undefined;
  const driver = new FlowDriver({
    flows: 1,
    copies: n,
    lastCopy: true,
    mode: str(f, 'mode', 'rate') === 'window' ? 'window' : 'rate',
    window: num(f, 'window', 4),
    rate: num(f, 'rate', 10),
    warmupMs: num(f, 'warmup', 2) * 1000,
    durationMs: num(f, 'duration', 8) * 1000,
    send: (_flow, body) => sender.sendChat(groupchat(room, body)),
    serverPid: pid || undefined,
  });
  sink.driver = driver;
  const r = await driver.run();
  const alive = clients.filter((c) => !c.closed).length;
  for (const c of [sender, ...clients]) c.destroy();
  return {
    workload: 'xmpp-muc-fanout',
    occupants: n,
    alive,
    joinSec,
    drainSec,
    presencesPerOccupant,
    deliveriesPerSec: r.msgsPerSec,
    ...(before && after ? perOccupant(before, after, n) : {}),
    ...r,
  };
}, 1_800_000);
