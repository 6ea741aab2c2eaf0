// Groupchat fan-out (XEP-0045): 1 sender → --occupants N in one room. A
// message is done when its last copy arrived; the latency is send → last
// delivery. `--mode rate --rate 10`: 10 msgs/s offered (the issue's p99
// target); `--mode window --window 4`: closed loop, deliveries/s. With --pid,
// the server's RSS growth over the joins, per occupant. One JSON line out.
//   --port P [--domain localhost] [--muc conference.localhost] [--room fanout] [--occupants 1000]
//   [--users 1000] [--mode rate|window] [--rate 10] [--window 4] [--warmup 2] [--duration 8]
//   [--pid SERVER_PID] [--concurrency 50] [--settle 3]
// Occupant i logs in as u((i % users) + 1) with resource r(i / users), nick n<i>, and joins
// without history; the sender (nick "sender") creates the room and accepts the default
// config (an instant room [XEP-0045 10.1.2], which every server unlocks).
import { num, parseFlags, pool, rssKiB, run, sleep, sourceAddress, str } from './lib/common.ts';
import { FlowDriver } from './lib/flows.ts';
import { XmppClient } from './lib/xmpp.ts';

const f = parseFlags();
const NS_MUC = 'http://jabber.org/protocol/muc';
const SELF = /<status code=['"]110['"]/;

run(async () => {
  const n = num(f, 'occupants', 1000);
  const users = num(f, 'users', 1000);
  const domain = str(f, 'domain', 'localhost');
  const room = `${str(f, 'room', 'fanout')}@${str(f, 'muc', `conference.${domain}`)}`;
  const pid = num(f, 'pid', 0);
  const settle = num(f, 'settle', 3) * 1000;
  const timeoutMs = 120_000;
  const login = (user: string, resource: string, i: number) =>
    XmppClient.login({
      host: str(f, 'host', '127.0.0.1'),
      port: num(f, 'port', 5222),
      domain,
      user,
      password: str(f, 'password', 'pw'),
      resource,
      tls: false,
      mech: 'SCRAM-SHA-1',
      localAddress: sourceAddress(i, 20),
      presence: true,
      timeoutMs,
    });
  const joinStanza = (nick: string) =>
    `<presence to='${room}/${nick}'><x xmlns='${NS_MUC}'><history maxstanzas='0'/></x></presence>`;

  const sender = await login(`u${(n % users) + 1}`, 'sender', n);
  sender.write(joinStanza('sender'));
  await sender.waitFor(SELF, timeoutMs);
  // [XEP-0045 10.1.2] accept the default configuration: the room is unlocked on every server
  sender.write(
    `<iq type='set' id='cfg' to='${room}'><query xmlns='${NS_MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`,
  );
  const cfg = await sender.waitFor(/<iq[^>]*id=['"]cfg['"][^>]*>/, timeoutMs);
  if (!/type=['"]result['"]/.test(cfg[0])) throw new Error(`room config refused: ${cfg[0]}`);
  sender.chatMode(() => {}); // its own reflections are not counted

  // Logged in, not yet in the room (the accounts have no rosters: nothing arrives until the join)
  const clients = await pool(n, 100, (i) =>
    login(`u${(i % users) + 1}`, `r${Math.floor(i / users)}`, i),
  );
  await sleep(settle);
  const before = pid ? rssKiB(pid) : 0;
  const t0 = Date.now();
  const sink: { driver?: FlowDriver; probes: number } = { probes: 0 };
  await pool(n, num(f, 'concurrency', 50), async (i) => {
    const c = clients[i];
    // the self presence by regex, then bodies only (the others' presence is dropped unread)
    c.write(joinStanza(`n${i}`));
    await c.waitFor(SELF, timeoutMs);
    c.chatMode((b) => (b === 'probe' ? sink.probes++ : sink.driver?.receive(b)));
  });
  const joinSec = (Date.now() - t0) / 1000;
  // Every self presence is in, but the room may still be telling the others: a probe reaching every
  // occupant says its queue is empty, so the measurement does not start behind the joins' fan-out.
  sender.sendChat(`<message to='${room}' type='groupchat'><body>probe</body></message>`);
  const until = Date.now() + 600_000;
  while (sink.probes < n && Date.now() < until) await sleep(50);
  if (sink.probes < n) throw new Error(`the probe reached ${sink.probes} of ${n} occupants`);
  const drainSec = (Date.now() - t0) / 1000 - joinSec;
  await sleep(settle);
  const after = pid ? rssKiB(pid) : 0;
  const driver = new FlowDriver({
    flows: 1,
    copies: n,
    lastCopy: true,
    mode: str(f, 'mode', 'rate') === 'window' ? 'window' : 'rate',
    window: num(f, 'window', 4),
    rate: num(f, 'rate', 10),
    warmupMs: num(f, 'warmup', 2) * 1000,
    durationMs: num(f, 'duration', 8) * 1000,
    send: (_flow, body) =>
      sender.sendChat(`<message to='${room}' type='groupchat'><body>${body}</body></message>`),
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
    deliveriesPerSec: r.msgsPerSec,
    ...(pid
      ? {
          rssBeforeKiB: before,
          rssAfterKiB: after,
          bytesPerOccupant: Math.round(((after - before) * 1024) / n),
        }
      : {}),
    ...r,
  };
}, 900_000);
