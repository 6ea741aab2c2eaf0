// XMPP PEP (XEP-0163) load, two workloads:
//   --workload fanout: one publisher (u1) and --contacts (100) mutual contacts (subscription both), each
//     advertising `urn:bench:pep+notify` in its caps [XEP-0115]; the publisher keeps --window (4) publishes
//     in flight; figure: notifications received per second (all contacts), and publishes/s.
//   --workload login: logins/s as xmpp-login.ts (SCRAM-SHA-1, plaintext, 20 in flight), where each user has
//     --nodes (5) PEP nodes with an item and logs in with caps asking for all of them: the login is done when the
//     server sent the last item of each [XEP-0163 4.3.2]. --nodes 0: plain presence + ping (the reference).
// Setup goes through the protocol (subscriptions, publishes), so it works on any server; it is not measured.
//   --port P [--workload fanout|login] [--contacts 100] [--window 4] [--users 200] [--nodes 5] [--concurrency 20]
//   [--warmup 1] [--duration 6]
import { num, now, parseFlags, pool, run, sleep, sourceAddress, str } from './lib/common.ts';
import { caps, MARKER, NS_BENCH, PepListener, publishIq } from './lib/pep.ts';
import { XmppClient, type XmppLogin } from './lib/xmpp.ts';

const f = parseFlags();
const domain = str(f, 'domain', 'localhost');

const loginOpts = (user: string, resource: string, i: number): XmppLogin => ({
  host: str(f, 'host', '127.0.0.1'),
  port: num(f, 'port', 5222),
  domain,
  user,
  password: str(f, 'password', 'pw'),
  resource,
  tls: false,
  mech: 'SCRAM-SHA-1',
  localAddress: sourceAddress(i, 8),
  presence: false,
});

/** The contact's roster says it and `to` are subscribed to each other's presence. */
async function mutual(l: PepListener, to: string, i: number): Promise<boolean> {
  const r = await l.request(
    `r${i}`,
    `<iq type='get' id='r${i}'><query xmlns='jabber:iq:roster'/></iq>`,
  );
  const item = new RegExp(`<item\\b[^>]*jid=['"]${to}['"][^>]*>`).exec(r)?.[0] ?? '';
  return /subscription=['"]both['"]/.test(item);
}

/** Approve every subscription request that arrives on this client [RFC6121 3.1.4]. */
function approveAll(c: XmppClient): void {
  c.sock.on('data', (d: string) => {
    for (const m of d.matchAll(/<presence\b[^>]*>/g)) {
      if (!/type=['"]subscribe['"]/.test(m[0])) continue;
      const from = /from=['"]([^'"/]+)/.exec(m[0])?.[1];
      if (from) c.write(`<presence to='${from}' type='subscribed'/>`);
    }
  });
}

async function fanout(): Promise<Record<string, unknown>> {
  const n = num(f, 'contacts', 100);
  const window = num(f, 'window', 4);
  const publisherJid = `u1@${domain}`;
  const pub = new PepListener(await XmppClient.login(loginOpts('u1', 'pub', 0)), []);
  pub.c.write('<presence/>');
  // [RFC6121 3.1] mutual subscriptions, as between real contacts: Prosody's PEP learns a contact's caps from
  // the presence the contact sends the publisher, which needs the publisher subscribed to the contact too
  approveAll(pub.c);
  const { presence, features } = caps([NS_BENCH]);
  let counting = false;
  let received = 0;
  const contacts = await pool(n, 20, async (i) => {
    const l = new PepListener(
      await XmppClient.login(loginOpts(`u${i + 2}`, 'sub', i + 1)),
      features,
      () => {
        if (counting) received++;
      },
    );
    approveAll(l.c);
    l.c.write(presence); // available first: subscription requests go to available resources [RFC6121 3.1.3]
    if (!(await mutual(l, publisherJid, i))) {
      l.c.write(`<presence to='${publisherJid}' type='subscribe'/>`);
      await l.waitFor(new RegExp(`<presence\\b[^>]*type=['"]subscribed['"]`));
      pub.c.write(`<presence to='u${i + 2}@${domain}' type='subscribe'/>`);
      await l.waitFor(new RegExp(`<presence\\b[^>]*type=['"]subscribe['"]`)); // approved by approveAll
      l.c.write(presence); // again, now that the publisher receives it (caps)
    }
    return l;
  });
  for (const l of contacts) l.quiet();
  // Warm-up: publish until every contact gets the notification (caps queried and cached by then).
  let seq = 0;
  const publishOnce = () => pub.request(`p${++seq}`, publishIq(`p${seq}`, NS_BENCH, seq));
  const total = () => contacts.reduce((a, l) => a + l.markers, 0);
  const until = Date.now() + 30_000;
  for (;;) {
    const before = total();
    const r = await publishOnce();
    if (!/type=['"]result['"]/.test(r)) throw new Error(`publish refused: ${r.slice(0, 300)}`);
    const t0 = Date.now();
    while (total() - before < n && Date.now() - t0 < 2000) await sleep(20);
    if (total() - before >= n) break;
    if (Date.now() > until)
      throw new Error(`only ${total() - before}/${n} contacts got a notification`);
  }
  let published = 0;
  let running = true;
  let measuring = false;
  const worker = async () => {
    while (running) {
      const id = `p${++seq}`;
      pub.c.write(publishIq(id, NS_BENCH, seq));
      await pub
        .waitFor(new RegExp(`<iq\\b[^>]*\\bid=['"]${id}['"]`), 30_000)
        .catch(() => undefined);
      if (measuring) published++;
    }
  };
  const workers = Array.from({ length: window }, worker);
  await sleep(num(f, 'warmup', 1) * 1000);
  counting = measuring = true;
  const t0 = now();
  await sleep(num(f, 'duration', 6) * 1000);
  const t1 = now();
  counting = measuring = false;
  running = false;
  await Promise.race([Promise.all(workers), sleep(5000)]);
  for (const l of [pub, ...contacts]) l.c.destroy();
  const secs = (t1 - t0) / 1000;
  return {
    workload: 'xmpp-pep-fanout',
    contacts: n,
    window,
    notificationsPerSec: Math.round(received / secs),
    publishesPerSec: Math.round(published / secs),
    notifications: received,
  };
}

async function login(): Promise<Record<string, unknown>> {
  const users = num(f, 'users', 200);
  const conc = num(f, 'concurrency', 20);
  const nodes = Array.from({ length: num(f, 'nodes', 5) }, (_, k) => `${NS_BENCH}:${k + 1}`);
  const { presence, features } = caps(nodes);
  // Setup: every user has an item on each node.
  if (nodes.length) {
    await pool(users, 20, async (i) => {
      const l = new PepListener(await XmppClient.login(loginOpts(`u${i + 1}`, 'setup', i)), []);
      for (const [k, node] of nodes.entries()) {
        const r = await l.request(`s${k}`, publishIq(`s${k}`, node, k));
        if (!/type=['"]result['"]/.test(r)) throw new Error(`publish refused: ${r.slice(0, 300)}`);
      }
      l.c.write('</stream:stream>');
      l.c.destroy();
    });
  }
  let counter = 0;
  let done = 0;
  let errors = 0;
  let measuring = false;
  let running = true;
  const once = async (i: number): Promise<void> => {
    const c = await XmppClient.login(loginOpts(`u${(i % users) + 1}`, `l${i}`, i));
    try {
      if (!nodes.length) {
        const l = new PepListener(c, []);
        c.write(`<presence/><iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>`);
        await l.waitFor(/<iq[^>]*id=['"]p1['"]/, 30_000);
        return;
      }
      // done when the last item of every node arrived [XEP-0163 4.3.2]
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('last items not all sent')), 30_000);
        let got = 0;
        const l = new PepListener(c, features, () => {
          if (++got === nodes.length) {
            clearTimeout(t);
            resolve();
          }
        });
        l.quiet();
        c.write(presence);
      });
    } finally {
      c.write('</stream:stream>');
      c.destroy();
    }
  };
  const worker = async (slot: number) => {
    while (running) {
      // slot-disjoint users so one account never has two logins at once
      const i = slot + conc * counter++;
      try {
        await once(i);
        if (measuring) done++;
      } catch {
        if (measuring) errors++;
        await sleep(50);
      }
    }
  };
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
    workload: 'xmpp-pep-login',
    nodes: nodes.length,
    concurrency: conc,
    loginsPerSec: Math.round((done / (t1 - t0)) * 1000),
    logins: done,
    errors,
    marker: MARKER,
  };
}

run(() => (str(f, 'workload', 'fanout') === 'login' ? login() : fanout()));
