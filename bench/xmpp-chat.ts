// XMPP (a): 1:1 chat between N logged-in pairs, both directions, closed loop
// with a window per direction or a fixed offered rate. One JSON line out.
//   --port P [--host 127.0.0.1] [--domain localhost] [--pairs 100] [--mode window|rate]
//   [--window 4] [--rate 2000] [--warmup 2] [--duration 8] [--user-prefix u] [--password pw]
//   [--pid PID]: report the server's CPU time per message (serverCpuUsPerMsg, /proc; all its threads)
//   [--sm N]: enable stream management [XEP-0198] and send <r/> after every N messages (and answer the server's)
//   [--ports P1,P2,...]: several nodes of a cluster, client i on Pi mod k (with 2 nodes every pair crosses nodes; bench/cluster.ts)
import { num, parseFlags, pool, run, str } from './lib/common.ts';
import { FlowDriver } from './lib/flows.ts';
import { chatStanza, XmppClient } from './lib/xmpp.ts';

const f = parseFlags();

run(async () => {
  const pairs = num(f, 'pairs', 100);
  const domain = str(f, 'domain', 'localhost');
  const prefix = str(f, 'user-prefix', 'u');
  const n = pairs * 2;
  // client i talks to its partner i^1; flow i is the direction i → i^1
  const ports = f.ports ? f.ports.split(',').map(Number) : [num(f, 'port', 5222)];
  const clients = await pool(n, 50, (i) =>
    XmppClient.login({
      host: str(f, 'host', '127.0.0.1'),
      port: ports[i % ports.length],
      domain,
      user: `${prefix}${i + 1}`,
      password: str(f, 'password', 'pw'),
      resource: 'chat',
      tls: f.tls === 'true',
      mech: 'SCRAM-SHA-1',
      presence: true,
    }),
  );
  const smEvery = num(f, 'sm', 0);
  if (smEvery > 0) await Promise.all(clients.map((c) => c.enableSm(smEvery)));
  const to = clients.map((_, i) => `${prefix}${(i ^ 1) + 1}@${domain}`);
  const driver = new FlowDriver({
    flows: n,
    mode: str(f, 'mode', 'window') === 'rate' ? 'rate' : 'window',
    window: num(f, 'window', 4),
    rate: num(f, 'rate', 2000),
    warmupMs: num(f, 'warmup', 2) * 1000,
    durationMs: num(f, 'duration', 8) * 1000,
    send: (flow, body) => clients[flow].sendChat(chatStanza(to[flow], body)),
    serverPid: f.pid ? num(f, 'pid', 0) : undefined,
  });
  for (const c of clients) c.chatMode((b) => driver.receive(b));
  const r = await driver.run();
  for (const c of clients) c.destroy();
  return { workload: smEvery > 0 ? 'xmpp-chat-sm' : 'xmpp-chat', pairs, sm: smEvery, ...r };
});
