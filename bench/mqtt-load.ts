// MQTT 3.1.1 workloads against any broker (Parley, plain aedes, Mosquitto).
//   --workload fanin   --publishers 10|100      QoS 0, N publishers → 1 subscriber (window per publisher)
//   --workload qos1    --pairs 100 [--mode window|rate] [--rate 2000]   QoS 1 publisher → subscriber pairs
//   --workload fanout  --subscribers 1000       QoS 0, 1 publisher → N subscribers (deliveries/s)
//   --workload idle    --connections 10000 --pid SERVER_PID   broker RSS delta / connections
//   --workload chat    --pairs 100 --xmpp-port P   MQTT device ↔ XMPP user through chat/{user} (Parley only)
//   --workload room    --occupants 10000 [--room fanout] [--pid SERVER_PID] [--mode rate --rate 10]
//                      Parley only: 1 device → N devices in one groupchat room (rooms/{room}), a message done
//                      at its last copy; send → last delivery, deliveries/s, RSS per occupant device
// Common: --port P [--host 127.0.0.1] [--auth] (username u<n>, password pw) [--users 1000]
//   [--window 4] [--warmup 2] [--duration 8]. One JSON line out.
import { num, parseFlags, pool, rssKiB, run, sleep, sourceAddress, str } from './lib/common.ts';
import { FlowDriver } from './lib/flows.ts';
import { MqttClient } from './lib/mqtt.ts';
import { chatStanza, XmppClient } from './lib/xmpp.ts';

const f = parseFlags();
const host = str(f, 'host', '127.0.0.1');
const port = num(f, 'port', 1883);
const auth = f.auth === 'true';
const users = num(f, 'users', 1000);
const password = str(f, 'password', 'pw');
const prefix = str(f, 'user-prefix', 'u');
const workload = str(f, 'workload', 'fanin');

/** Client i: account u((i % users) + 1) when --auth, client id c<i>. */
function connect(i: number, spread = 4, user?: string): Promise<MqttClient> {
  const u = user ?? `${prefix}${(i % users) + 1}`;
  return MqttClient.connect({
    host,
    port,
    clientId: `c${i}`,
    ...(auth && { username: u, password }),
    localAddress: sourceAddress(i, spread),
    timeoutMs: 60_000,
  });
}

function driverOpts() {
  return {
    mode: (str(f, 'mode', 'window') === 'rate' ? 'rate' : 'window') as 'rate' | 'window',
    window: num(f, 'window', 4),
    rate: num(f, 'rate', 2000),
    warmupMs: num(f, 'warmup', 2) * 1000,
    durationMs: num(f, 'duration', 8) * 1000,
  };
}

async function fanin(): Promise<Record<string, unknown>> {
  const n = num(f, 'publishers', 10);
  const sub = await connect(0);
  await sub.subscribe('bench/in/+', 0);
  const pubs = await pool(n, 50, (i) => connect(i + 1));
  const d = new FlowDriver({
    flows: n,
    ...driverOpts(),
    send: (flow, body) => pubs[flow].publish(`bench/in/${flow}`, body, 0),
  });
  sub.onPublish = (_t, p) => d.receive(p.toString());
  const r = await d.run();
  for (const c of [sub, ...pubs]) c.destroy();
  return { workload: 'mqtt-fanin', publishers: n, qos: 0, ...r };
}

async function qos1(): Promise<Record<string, unknown>> {
  const n = num(f, 'pairs', 100);
  const subs = await pool(n, 50, (i) => connect(2 * i));
  await Promise.all(subs.map((s, i) => s.subscribe(`bench/p/${i}`, 1)));
  const pubs = await pool(n, 50, (i) => connect(2 * i + 1));
  const d = new FlowDriver({
    flows: n,
    ...driverOpts(),
    send: (flow, body) => pubs[flow].publish(`bench/p/${flow}`, body, 1),
  });
  for (const s of subs) s.onPublish = (_t, p) => d.receive(p.toString());
  const r = await d.run();
  for (const c of [...subs, ...pubs]) c.destroy();
  return { workload: 'mqtt-qos1', pairs: n, qos: 1, ...r };
}

async function fanout(): Promise<Record<string, unknown>> {
  const n = num(f, 'subscribers', 1000);
  const subs = await pool(n, 100, (i) => connect(i + 1, 4));
  await Promise.all(subs.map((s) => s.subscribe('bench/out', 0)));
  const pub = await connect(0);
  // one flow (the publisher); a message counts as done once all N copies arrived
  const d = new FlowDriver({
    flows: 1,
    ...driverOpts(),
    window: num(f, 'window', 4),
    copies: n,
    send: (_flow, body) => pub.publish('bench/out', body, 0),
  });
  for (const s of subs) s.onPublish = (_t, p) => d.receive(p.toString());
  const r = await d.run();
  for (const c of [...subs, pub]) c.destroy();
  return { workload: 'mqtt-fanout', subscribers: n, qos: 0, deliveriesPerSec: r.msgsPerSec, ...r };
}

async function room(): Promise<Record<string, unknown>> {
  const n = num(f, 'occupants', 10_000);
  const pid = num(f, 'pid', 0);
  const settle = num(f, 'settle', 3) * 1000;
  const topic = `rooms/${str(f, 'room', 'fanout')}`;
  // Device i is u((i % users) + 1)/c<i> (at most 10 per account, Parley's default session limit): ten
  // devices of one user share its nick (multi-session), and each gets every message but its own device's.
  // Device 0 sends (its SUBSCRIBE creates the room); devices 1…n-1 receive.
  const pub = await connect(0, 20);
  await pub.subscribe(topic, 0);
  // --concurrency: logins in flight, spread over 20 source addresses (Parley's login throttle counts per address)
  const subs = await pool(n - 1, num(f, 'concurrency', 40), (i) => connect(i + 1, 20));
  await sleep(settle);
  const before = pid ? rssKiB(pid) : 0;
  const t0 = Date.now();
  const sink: { d?: FlowDriver; probes: number } = { probes: 0 };
  for (const s of subs)
    s.onPublish = (_t, p) => {
      const m = JSON.parse(p.toString()) as { body?: string; delayed?: boolean };
      if (m.body === 'probe') sink.probes++;
      else if (m.body !== undefined && !m.delayed) sink.d?.receive(m.body);
    };
  await pool(n - 1, 100, (i) => subs[i].subscribe(topic, 0, 120_000));
  const joinSec = (Date.now() - t0) / 1000;
  // A SUBACK comes before the room has told everyone of the join: a probe reaching every device
  // says the room's queue is empty, so the measurement does not start behind the joins' fan-out.
  pub.publish(topic, 'probe', 0);
  const until = Date.now() + 600_000;
  while (sink.probes < n - 1 && Date.now() < until) await sleep(50);
  if (sink.probes < n - 1) throw new Error(`the probe reached ${sink.probes} of ${n - 1} devices`);
  const drainSec = (Date.now() - t0) / 1000 - joinSec;
  await sleep(settle);
  const after = pid ? rssKiB(pid) : 0;
  const d = new FlowDriver({
    flows: 1,
    ...driverOpts(),
    copies: n - 1,
    lastCopy: true,
    send: (_flow, body) => pub.publish(topic, body, 0),
  });
  sink.d = d;
  const r = await d.run();
  for (const c of [...subs, pub]) c.destroy();
  return {
    workload: 'mqtt-room-fanout',
    occupants: n,
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
}

async function idle(): Promise<Record<string, unknown>> {
  const pid = num(f, 'pid', 0);
  if (!pid) throw new Error('--pid required');
  const n = num(f, 'connections', 10_000);
  const settle = num(f, 'settle', 3) * 1000;
  await sleep(settle);
  const before = rssKiB(pid);
  const t0 = Date.now();
  const cs = await pool(n, 100, (i) => connect(i, 20));
  const connectSec = (Date.now() - t0) / 1000;
  await sleep(settle);
  const after = rssKiB(pid);
  const alive = cs.filter((c) => !c.closed).length;
  for (const c of cs) c.destroy();
  return {
    workload: 'mqtt-idle',
    connections: alive,
    rssBeforeKiB: before,
    rssAfterKiB: after,
    bytesPerConnection: Math.round(((after - before) * 1024) / alive),
    connectSec,
  };
}

async function chat(): Promise<Record<string, unknown>> {
  const n = num(f, 'pairs', 100);
  const domain = str(f, 'domain', 'localhost');
  // pair k: XMPP user u(2k+1), MQTT device user u(2k+2); flow 2k = device → XMPP, flow 2k+1 = XMPP → device
  const xs = await pool(n, 50, (k) =>
    XmppClient.login({
      host,
      port: num(f, 'xmpp-port', 5222),
      domain,
      user: `${prefix}${2 * k + 1}`,
      password,
      resource: 'chat',
      tls: false,
      mech: 'SCRAM-SHA-1',
      presence: true,
    }),
  );
  const devs = await pool(n, 50, (k) => connect(k, 4, `${prefix}${2 * k + 2}`));
  await Promise.all(devs.map((d, k) => d.subscribe(`chat/${prefix}${2 * k + 2}`, 1)));
  const d = new FlowDriver({
    flows: 2 * n,
    ...driverOpts(),
    send: (flow, body) => {
      const k = flow >> 1;
      if (flow % 2 === 0) devs[k].publish(`chat/${prefix}${2 * k + 1}`, body, 1);
      else xs[k].write(chatStanza(`${prefix}${2 * k + 2}@${domain}`, body));
    },
  });
  for (const x of xs) x.chatMode((b) => d.receive(b));
  for (const dev of devs)
    dev.onPublish = (_t, p) => d.receive((JSON.parse(p.toString()) as { body: string }).body);
  const r = await d.run();
  for (const c of [...xs, ...devs]) c.destroy();
  return { workload: 'mqtt-xmpp-chat', pairs: n, qos: 1, ...r };
}

const workloads: Record<string, () => Promise<Record<string, unknown>>> = {
  fanin,
  qos1,
  fanout,
  idle,
  chat,
  room,
};
const fn = workloads[workload];
if (!fn) throw new Error(`unknown --workload ${workload}`);
run(fn, 900_000);
