// XMPP (c): login rate — connect + (STARTTLS) + SASL + bind + initial presence
// (confirmed by a ping answer), then close; `--concurrency` logins in flight.
//   --port P [--mech SCRAM-SHA-1|PLAIN] [--tls] [--users 200] [--concurrency 20] [--warmup 1] [--duration 6]
import { now, num, parseFlags, run, sleep, sourceAddress, str } from './lib/common.ts';
import { XmppClient, type XmppLogin } from './lib/xmpp.ts';

const f = parseFlags();

run(async () => {
  const users = num(f, 'users', 200);
  const conc = num(f, 'concurrency', 20);
  const mech = str(f, 'mech', 'SCRAM-SHA-1') as XmppLogin['mech'];
  const useTls = f.tls === 'true' || mech === 'PLAIN';
  const opts = (i: number): XmppLogin => ({
    host: str(f, 'host', '127.0.0.1'),
    port: num(f, 'port', 5222),
    domain: str(f, 'domain', 'localhost'),
    user: `${str(f, 'user-prefix', 'u')}${(i % users) + 1}`,
    password: str(f, 'password', 'pw'),
    resource: `l${i}`,
    tls: useTls,
    mech,
    localAddress: sourceAddress(i, 8),
    presence: true,
  });
  let counter = 0;
  let done = 0;
  let errors = 0;
  let measuring = false;
  let running = true;
  const worker = async (slot: number) => {
    while (running) {
      // slot-disjoint users so one account never has two logins at once
      const i = slot + conc * counter++;
      try {
        const c = await XmppClient.login(opts(i));
        c.write('</stream:stream>');
        c.destroy();
        if (measuring) done++;
      } catch {
        if (measuring) errors++;
        await sleep(50);
      }
    }
  };
  // warm-up also fills the client's salted-password cache
  const workers = Array.from({ length: conc }, (_, s) => worker(s));
  await sleep(num(f, 'warmup', 1) * 1000);
  measuring = true;
  const t0 = now();
  await sleep(num(f, 'duration', 6) * 1000);
  const t1 = now();
  measuring = false;
  running = false;
  await Promise.race([Promise.all(workers), sleep(5000)]);
  return {
    workload: 'xmpp-login',
    mech,
    tls: useTls,
    concurrency: conc,
    loginsPerSec: Math.round((done / (t1 - t0)) * 1000),
    logins: done,
    errors,
  };
});
