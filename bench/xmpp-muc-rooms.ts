// Many rooms chatting (XEP-0045): --rooms R rooms of --per-room P occupants (default 100 × 50: 5,000
// sessions, each its own login), --senders S occupants of every room sending. A message counts once
// per occupant it reached other than its sender (P − 1 copies); the latency is send → each delivery.
// `--mode rate --rate 100`: 100 msgs/s in total, round robin over the R × S senders (1 msg/s per room:
// 4,900 deliveries/s); `--mode window --window 1`: every sender keeps one message in flight and sends
// the next once all its copies arrived (closed loop, deliveries/s). With --pid, memory per occupant
// as bench/xmpp-muc.ts (joined minus logged in, --mem-probe for the heap). One JSON line out.
//   --port P [--domain localhost] [--muc conference.localhost] [--rooms 100] [--per-room 50] [--senders 5]
//   [--users 1000] [--mode rate|window] [--rate 100] [--window 1] [--warmup 2] [--duration 8]
//   [--pid SERVER_PID] [--mem-probe SPEC] [--concurrency 50] [--settle 5]
// Occupant i logs in as u((i % users) + 1) with resource r(i / users) (5 resources per account at
// 5,000) and joins room rooms<i / P> as n<i> without history; slot 0 of each room creates it and
// submits the config form (an instant room, as bench/xmpp-muc.ts); slots 0…S−1 send.
import { num, parseFlags, pool, run, str } from './lib/common.ts';
import { FlowDriver } from './lib/flows.ts';
import {
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
  const rooms = num(f, 'rooms', 100);
  const per = num(f, 'per-room', 50);
  const senders = Math.min(per, num(f, 'senders', 5));
  const users = num(f, 'users', 1000);
  const n = rooms * per;
  const domain = str(f, 'domain', 'localhost');
  const muc = str(f, 'muc', `conference.${domain}`);
  const roomOf = (i: number) => `rooms${Math.floor(i / per)}@${muc}`;
  const pid = num(f, 'pid', 0);
  const probe = str(f, 'mem-probe', '');
  const settle = num(f, 'settle', 5) * 1000;
  const timeoutMs = 120_000;
  const login = mucLogin(f, timeoutMs);
  const concurrency = num(f, 'concurrency', 50);

  const clients = await pool(n, 100, (i) =>
    login(`u${(i % users) + 1}`, `r${Math.floor(i / users)}`, i),
  );
  const before = pid ? await memPoint(pid, probe, settle) : undefined;
  const presences = countPresences(clients);
  // flow of a sender: room × S + slot; its own reflection is not a delivery
  const flowOf = (i: number) => {
    const slot = i % per;
    return slot < senders ? Math.floor(i / per) * senders + slot : -1;
  };
  const sink: { driver?: FlowDriver; probes: number } = { probes: 0 };
  const onBody = (i: number, b: string) => {
    if (b === 'probe') sink.probes++;
    else if (Number(b.slice(0, b.indexOf(' '))) !== flowOf(i)) sink.driver?.receive(b);
  };
  const t0 = Date.now();
  const owners = Array.from({ length: rooms }, (_, r) => r * per);
  await pool(rooms, concurrency, async (r) => {
    const i = owners[r];
    await createRoom(clients[i], roomOf(i), `n${i}`, {}, timeoutMs);
    clients[i].chatMode((b) => onBody(i, b));
  });
  const others = clients.map((_, i) => i).filter((i) => i % per !== 0);
  await joinAll(
    others.map((i) => clients[i]),
    (k) => roomOf(others[k]),
    (k) => `n${others[k]}`,
    concurrency,
    (k, b) => onBody(others[k], b),
    timeoutMs,
  );
  const joinSec = (Date.now() - t0) / 1000;
  // a probe in every room reaching every occupant: the joins' presence fan-out is done
  const t1 = Date.now();
  for (const i of owners) clients[i].sendChat(groupchat(roomOf(i), 'probe'));
  await waitProbes(() => sink.probes, n);
  const drainSec = (Date.now() - t1) / 1000;
  const presencesPerOccupant = Math.round((presences.total() / n) * 10) / 10;
  const after = pid ? await memPoint(pid, probe, settle) : undefined;
  const senderIdx = (flow: number) => Math.floor(flow / senders) * per + (flow % senders);
  const driver = new FlowDriver({
    flows: rooms * senders,
    copies: per - 1,
    mode: str(f, 'mode', 'rate') === 'window' ? 'window' : 'rate',
    window: num(f, 'window', 1),
    rate: num(f, 'rate', 100),
    warmupMs: num(f, 'warmup', 2) * 1000,
    durationMs: num(f, 'duration', 8) * 1000,
    send: (flow, body) => {
      const i = senderIdx(flow);
      clients[i].sendChat(groupchat(roomOf(i), body));
    },
    serverPid: pid || undefined,
  });
  sink.driver = driver;
  const r = await driver.run();
  const alive = clients.filter((c) => !c.closed).length;
  for (const c of clients) c.destroy();
  return {
    workload: 'xmpp-muc-rooms',
    rooms,
    perRoom: per,
    senders,
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
