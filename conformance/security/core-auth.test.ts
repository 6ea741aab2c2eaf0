// Black-box: the login throttle (issue 20 item 8). Failed guesses are counted
// per source address and per target account; a password check takes a slot
// of both, and past the limit of checks in flight further guesses are
// refused unchecked [RFC6120 6.5.11]; a success for one account does not
// forget the failures against another.
import assert from 'node:assert/strict';
import { NS_SASL, RawConn, closeAllRaw, startNode, uniqueName, type TestNode } from '../helpers.ts';

const PW = 'auth-pw';

/** One PLAIN attempt on its own connection (STARTTLS first); the SASL outcome and how long it took. */
async function attempt(
  port: number,
  user: string,
  password: string,
): Promise<{ outcome: string; ms: number; conn: RawConn }> {
  const conn = await RawConn.connect(port);
  await conn.openStream();
  await conn.startTls();
  await conn.openStream();
  const t0 = Date.now();
  const { outcome } = await conn.auth('PLAIN', user, password);
  return { outcome, ms: Date.now() - t0, conn };
}

/** Connections through STARTTLS, ready for <auth/>. */
async function ready(port: number, n: number): Promise<RawConn[]> {
  const out: RawConn[] = [];
  for (let i = 0; i < n; i += 10) {
    out.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(10, n - i) }, async () => {
          const c = await RawConn.connect(port);
          await c.openStream();
          await c.startTls();
          await c.openStream();
          return c;
        }),
      )),
    );
  }
  return out;
}

const plain = (user: string, password: string) =>
  `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`;

/** Send one guess on every connection at once; count the answers by condition. */
async function burst(
  conns: RawConn[],
  userOf: (i: number) => string,
): Promise<Map<string, number>> {
  conns.forEach((c, i) => c.send(plain(userOf(i), `guess-${i}`)));
  const outcomes = await Promise.all(
    conns.map((c) =>
      c.waitFor(/<success[^>]*(\/>|>[^<]*<\/success>)|<failure[\s\S]*?<\/failure>/, 20_000),
    ),
  );
  const counts = new Map<string, number>();
  for (const o of outcomes) {
    const cond = /<failure[^>]*><([a-z-]+)/.exec(o)?.[1] ?? 'success';
    counts.set(cond, (counts.get(cond) ?? 0) + 1);
  }
  return counts;
}

describe('security: login throttle (issue 20 item 8)', function () {
  this.timeout(60_000);
  let node: TestNode;
  afterEach(() => closeAllRaw());
  afterEach(async () => node?.dispose());

  it('parallel guesses against one account are refused with temporary-auth-failure past the checks in flight [RFC6120 6.5.11]', async function () {
    node = await startNode({
      config:
        'limits:\n  authFreeFailures: 100\n  authFreeFailuresPerAccount: 1\n  authMaxDelayMs: 3000\n  authMaxInFlightPerAddress: 100\n  authMaxInFlightPerAccount: 2\n',
    });
    const victim = uniqueName('victim');
    const other = uniqueName('other');
    await node.addUser(victim, PW);
    await node.addUser(other, PW);
    // Two failures first: from now on each failed guess holds its slot for 250 ms, then 500 ms...
    for (let i = 0; i < 2; i++)
      (await attempt(node.ports.xmpp, victim, `warmup-${i}`)).conn.destroy();
    const conns = await ready(node.ports.xmpp, 40);
    const counts = await burst(conns, () => victim);
    const refused = counts.get('temporary-auth-failure') ?? 0;
    const checked = counts.get('not-authorized') ?? 0;
    assert.equal(counts.get('success') ?? 0, 0);
    assert.ok(
      refused >= 25 && checked <= 15,
      `40 parallel guesses: ${JSON.stringify([...counts])} (at most 2 checked at a time)`,
    );
    // Another account from the same address is not refused: the per-account slots are the victim's.
    const ok = await attempt(node.ports.xmpp, other, PW);
    assert.match(ok.outcome, /^<success/);
  });

  it('parallel guesses at many accounts from one address are refused past the checks in flight for that address', async function () {
    node = await startNode({
      config:
        'limits:\n  authFreeFailures: 1\n  authFreeFailuresPerAccount: 100\n  authMaxDelayMs: 3000\n  authMaxInFlightPerAddress: 3\n  authMaxInFlightPerAccount: 100\n',
    });
    for (let i = 0; i < 2; i++)
      (await attempt(node.ports.xmpp, uniqueName('nobody'), 'x')).conn.destroy();
    const conns = await ready(node.ports.xmpp, 40);
    const counts = await burst(conns, (i) => `nobody-${i}`);
    const refused = counts.get('temporary-auth-failure') ?? 0;
    assert.ok(
      refused >= 25,
      `40 parallel guesses at 40 accounts: ${JSON.stringify([...counts])} (at most 3 checked at a time)`,
    );
  });

  it("a success for one's own account does not reset the failures counted against another account from the same address", async function () {
    node = await startNode({
      config:
        'limits:\n  authFreeFailures: 2\n  authFreeFailuresPerAccount: 2\n  authMaxDelayMs: 4000\n',
    });
    const victim = uniqueName('victim');
    const mallory = uniqueName('mallory');
    await node.addUser(victim, PW);
    await node.addUser(mallory, PW);
    for (let i = 0; i < 3; i++) {
      const r = await attempt(node.ports.xmpp, victim, `guess-${i}`);
      assert.match(r.outcome, /<not-authorized\/>/);
      r.conn.destroy();
    }
    const own = await attempt(node.ports.xmpp, mallory, PW);
    assert.match(own.outcome, /^<success/);
    own.conn.destroy();
    // 4 failures against the victim from this address (2 free): the next one is held 500 ms.
    const next = await attempt(node.ports.xmpp, victim, 'guess-after-own-login');
    assert.match(next.outcome, /<not-authorized\/>/);
    assert.ok(
      next.ms >= 400,
      `the guess after logging into another account was answered after ${next.ms} ms: the success reset the count`,
    );
  });
});
