// XMPP (b): broker memory per idle authenticated session. Opens --sessions
// bound sessions with initial presence (users × resources), waits, reads the
// server's VmRSS and reports (RSS after − RSS before) / sessions.
//   --port P --pid SERVER_PID [--sessions 10000] [--users 1000] [--tls] [--concurrency 100] [--settle 3]
import { num, parseFlags, pool, rssKiB, run, sleep, sourceAddress, str } from './lib/common.ts';
import { XmppClient } from './lib/xmpp.ts';

const f = parseFlags();

run(async () => {
  const pid = num(f, 'pid', 0);
  if (!pid) throw new Error('--pid required');
  const sessions = num(f, 'sessions', 10_000);
  const users = num(f, 'users', 1000);
  const settle = num(f, 'settle', 3) * 1000;
  const useTls = f.tls === 'true';
  await sleep(settle);
  const before = rssKiB(pid);
  const t0 = Date.now();
  const clients = await pool(sessions, num(f, 'concurrency', 100), (i) =>
    XmppClient.login({
      host: str(f, 'host', '127.0.0.1'),
      port: num(f, 'port', 5222),
      domain: str(f, 'domain', 'localhost'),
      user: `${str(f, 'user-prefix', 'u')}${(i % users) + 1}`,
      password: str(f, 'password', 'pw'),
      resource: `r${Math.floor(i / users)}`,
      tls: useTls,
      mech: 'SCRAM-SHA-1',
      localAddress: sourceAddress(i, 20),
      presence: true,
      timeoutMs: 60_000,
    }),
  );
  const loginSec = (Date.now() - t0) / 1000;
  // presence fan-out among a user's own resources still drains; then idle
  for (const c of clients) c.chatMode(() => {});
  await sleep(settle);
  const after = rssKiB(pid);
  const alive = clients.filter((c) => !c.closed).length;
  for (const c of clients) c.destroy();
  return {
    workload: 'xmpp-idle',
    tls: useTls,
    sessions: alive,
    rssBeforeKiB: before,
    rssAfterKiB: after,
    bytesPerSession: Math.round(((after - before) * 1024) / alive),
    loginSec,
  };
}, 600_000);
