/**
 * SASL on the wire [RFC6120 6]: SCRAM-SHA-1 / SCRAM-SHA-256 [RFC5802, RFC7677]
 * with the client side computed here with node:crypto (the RFC 5802 §5 example
 * cannot be replayed: the server nonce is random), and PLAIN [RFC4616].
 */
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { Client, Harness, NS_SASL } from './harness.ts';

type Hash = 'sha1' | 'sha256';
const MECH: Record<Hash, string> = { sha1: 'SCRAM-SHA-1', sha256: 'SCRAM-SHA-256' };
const LEN: Record<Hash, number> = { sha1: 20, sha256: 32 };

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
const unb64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');
const hmac = (h: Hash, key: Buffer, data: string): Buffer =>
  createHmac(h, key).update(data).digest();
const H = (h: Hash, data: Buffer): Buffer => createHash(h).update(data).digest();

const failure = (cond: string): RegExp =>
  new RegExp(
    `^<failure xmlns='${NS_SASL}'><${cond}/>(?:<text xml:lang='en'>[^<]*</text>)?</failure>$`,
  );
const nextSasl = (c: Client): Promise<string> =>
  c.expect(/<(challenge|success|failure)[^>]*?(?:\/>|>[\s\S]*?<\/\1>)/);

/** Parse `k=v,k=v` (values may contain '='). */
function attrs(s: string): Map<string, string> {
  return new Map(s.split(',').map((p) => [p[0], p.slice(2)] as [string, string]));
}

interface ScramRun {
  /** what the server answered last (success, failure or challenge), raw */
  last: string;
  serverFirst?: string;
  /** the ServerSignature the client expects in v= */
  expectedV?: string;
}

/**
 * One client-side SCRAM exchange on an opened stream. Options let a test
 * break exactly one thing.
 */
async function scram(
  c: Client,
  hash: Hash,
  user: string,
  password: string,
  opt: {
    gs2?: string;
    bareUser?: string;
    tamperProof?: boolean;
    nonceSuffix?: string;
    cbind?: string;
  } = {},
): Promise<ScramRun> {
  const gs2 = opt.gs2 ?? 'n,,';
  const cnonce = randomBytes(18).toString('base64');
  const clientFirstBare = `n=${opt.bareUser ?? user},r=${cnonce}`;
  c.send(`<auth xmlns='${NS_SASL}' mechanism='${MECH[hash]}'>${b64(gs2 + clientFirstBare)}</auth>`);
  const challenge = await nextSasl(c);
  if (!challenge.startsWith('<challenge')) return { last: challenge };
  const serverFirst = unb64(/>([^<]*)</.exec(challenge)![1]);
  const sf = attrs(serverFirst);
  const nonce = sf.get('r')!;
  assert.ok(
    nonce.startsWith(cnonce) && nonce.length > cnonce.length,
    'server nonce extends the client nonce [RFC5802 5.1]',
  );
  const salt = Buffer.from(sf.get('s')!, 'base64');
  const iterations = Number(sf.get('i'));
  assert.ok(Number.isInteger(iterations) && iterations > 0, `i=${sf.get('i')}`);
  const salted = pbkdf2Sync(password, salt, iterations, LEN[hash], hash);
  const clientKey = hmac(hash, salted, 'Client Key');
  const storedKey = H(hash, clientKey);
  const withoutProof = `c=${opt.cbind ?? b64(gs2)},r=${nonce}${opt.nonceSuffix ?? ''}`;
  const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
  const signature = hmac(hash, storedKey, authMessage);
  const proof = Buffer.alloc(clientKey.length);
  for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i] ^ signature[i];
  if (opt.tamperProof) proof[0] ^= 0xff;
  c.send(
    `<response xmlns='${NS_SASL}'>${b64(`${withoutProof},p=${proof.toString('base64')}`)}</response>`,
  );
  const last = await nextSasl(c);
  const serverKey = hmac(hash, salted, 'Server Key');
  return {
    last,
    serverFirst,
    expectedV: `v=${hmac(hash, serverKey, authMessage).toString('base64')}`,
  };
}

describe('xmpp SASL (wire harness)', function () {
  let h: Harness;

  beforeEach(async () => {
    h = await Harness.start({ users: { alice: 'pencil ✏ secret', 'x,y=z': 'commas' } });
  });

  afterEach(async () => {
    await h.stop();
  });

  async function opened(secure = true): Promise<Client> {
    const c = h.connect({ secure });
    await c.open();
    c.drain();
    return c;
  }

  for (const hash of ['sha1', 'sha256'] as const) {
    describe(MECH[hash], function () {
      it(`full exchange: challenge, proof, success with the right ServerSignature, then bind [RFC5802 3, 5; RFC6120 6.4.6]`, async () => {
        const c = await opened();
        const run = await scram(c, hash, 'alice', 'pencil ✏ secret');
        const m = new RegExp(`^<success xmlns='${NS_SASL}'>([^<]+)</success>$`).exec(run.last);
        assert.ok(m, `expected success, got ${run.last}`);
        assert.equal(unb64(m[1]), run.expectedV, 'v= proves the server knows the key [RFC5802 3]');
        assert.match(run.serverFirst!, /^r=[^,]+,s=[A-Za-z0-9+/]+={0,2},i=\d+$/);
        await c.open();
        assert.equal(await c.bind('scram'), 'alice@localhost/scram');
      });

      it("gs2 flag 'y' (client could bind channels, server offers no -PLUS) is accepted [RFC5802 6]", async () => {
        const c = await opened();
        const run = await scram(c, hash, 'alice', 'pencil ✏ secret', { gs2: 'y,,' });
        assert.match(run.last, /^<success /);
      });

      it('an authzid equal to the user is accepted [RFC5802 5.1, RFC6120 6.3.8]', async () => {
        const c = await opened();
        const run = await scram(c, hash, 'alice', 'pencil ✏ secret', {
          gs2: 'n,a=alice@localhost,',
        });
        assert.match(run.last, /^<success /);
      });

      it('a saslname with =2C and =3D is decoded [RFC5802 5.1]', async () => {
        const c = await opened();
        const run = await scram(c, hash, 'x,y=z', 'commas', { bareUser: 'x=2Cy=3Dz' });
        assert.match(run.last, /^<success /);
      });

      it('wrong proof → <not-authorized/> [RFC6120 6.5.10]', async () => {
        const c = await opened();
        const run = await scram(c, hash, 'alice', 'pencil ✏ secret', { tamperProof: true });
        assert.match(run.last, failure('not-authorized'));
        assert.equal(c.isClosed, false, 'a failed attempt may be retried [RFC6120 6.4.5]');
      });

      it('wrong password → <not-authorized/> [RFC6120 6.5.10]', async () => {
        const c = await opened();
        assert.match((await scram(c, hash, 'alice', 'pencil')).last, failure('not-authorized'));
      });

      it('unknown user gets a challenge like any user, with a stable salt, then <not-authorized/> (no enumeration)', async () => {
        const c1 = await opened();
        const r1 = await scram(c1, hash, 'nobody', 'x');
        const c2 = await opened();
        const r2 = await scram(c2, hash, 'nobody', 'x');
        assert.match(r1.last, failure('not-authorized'));
        assert.equal(
          attrs(r1.serverFirst!).get('s'),
          attrs(r2.serverFirst!).get('s'),
          'same fake salt for the same name',
        );
        assert.equal(attrs(r1.serverFirst!).get('i'), String(h.broker.limits.scramIterations));
      });

      it("bad saslname ('=' not followed by 2C or 3D) → <malformed-request/> [RFC5802 5.1]", async () => {
        const c = await opened();
        assert.match((await scram(c, hash, 'al=ice', 'x')).last, failure('malformed-request'));
      });

      it('an authzid of another user → <invalid-authzid/> [RFC6120 6.5.6]', async () => {
        const c = await opened();
        const run = await scram(c, hash, 'alice', 'pencil ✏ secret', { gs2: 'n,a=bob@localhost,' });
        assert.match(run.last, failure('invalid-authzid'));
      });

      it('client-final with a different nonce → <malformed-request/> [RFC5802 5.1]', async () => {
        const c = await opened();
        const run = await scram(c, hash, 'alice', 'pencil ✏ secret', { nonceSuffix: 'x' });
        assert.match(run.last, failure('malformed-request'));
      });

      it('client-final whose c= does not repeat the gs2 header → <malformed-request/> [RFC5802 5.1]', async () => {
        const c = await opened();
        const run = await scram(c, hash, 'alice', 'pencil ✏ secret', { cbind: b64('y,,') });
        assert.match(run.last, failure('malformed-request'));
      });
    });
  }

  it("SCRAM with the channel-binding flag 'p=' → <malformed-request/> (no -PLUS offered) [RFC5802 6]", async () => {
    const c = await opened();
    c.send(
      `<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${b64('p=tls-exporter,,n=alice,r=abcdef')}</auth>`,
    );
    assert.match(await nextSasl(c), failure('malformed-request'));
  });

  it('SCRAM with a mandatory extension m= → <malformed-request/> [RFC5802 5.1]', async () => {
    const c = await opened();
    c.send(
      `<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-1'>${b64('n,,m=ext,n=alice,r=abcdef')}</auth>`,
    );
    assert.match(await nextSasl(c), failure('malformed-request'));
  });

  it('<abort/> during SCRAM → <aborted/>, and a new attempt succeeds [RFC6120 6.4.4]', async () => {
    const c = await opened();
    c.send(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-1'>${b64('n,,n=alice,r=abcdef')}</auth>`);
    assert.match(await nextSasl(c), /^<challenge /);
    c.send(`<abort xmlns='${NS_SASL}'/>`);
    assert.match(await nextSasl(c), failure('aborted'));
    assert.match((await scram(c, 'sha1', 'alice', 'pencil ✏ secret')).last, /^<success /);
  });

  describe('PLAIN [RFC4616]', function () {
    const plain = (s: string): string =>
      `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${b64(s)}</auth>`;

    it('offered only on a secure stream; SCRAM first [RFC6120 6.4.1]', async () => {
      const secure = h.connect();
      assert.match(
        await secure.open(),
        /<mechanisms [^>]*><mechanism>SCRAM-SHA-256<\/mechanism><mechanism>SCRAM-SHA-1<\/mechanism><mechanism>PLAIN<\/mechanism><\/mechanisms>/,
      );
      const insecure = h.connect({ secure: false });
      const features = await insecure.open();
      assert.match(features, /<mechanism>SCRAM-SHA-256<\/mechanism>/);
      assert.doesNotMatch(features, /PLAIN/);
    });

    it('PLAIN on an unencrypted stream → <encryption-required/> [RFC6120 6.5.4]', async () => {
      const c = await opened(false);
      c.send(plain('\0alice\0pencil ✏ secret'));
      assert.match(await nextSasl(c), failure('encryption-required'));
    });

    it('authzid of another user → <invalid-authzid/> [RFC6120 6.5.6, RFC4616 2]', async () => {
      const c = await opened();
      c.send(plain('bob@localhost\0alice\0pencil ✏ secret'));
      assert.match(await nextSasl(c), failure('invalid-authzid'));
    });

    it('authzid equal to the user → success [RFC4616 2]', async () => {
      const c = await opened();
      c.send(plain('alice@localhost\0alice\0pencil ✏ secret'));
      assert.match(await nextSasl(c), /^<success /);
    });

    it('wrong password and unknown user both → <not-authorized/> [RFC6120 6.5.10]', async () => {
      const c = await opened();
      c.send(plain('\0alice\0nope'));
      assert.match(await nextSasl(c), failure('not-authorized'));
      c.send(plain('\0nobody\0nope'));
      assert.match(await nextSasl(c), failure('not-authorized'));
    });

    it('a message without two NULs → <malformed-request/> [RFC4616 2]', async () => {
      const c = await opened();
      c.send(plain('alice\0pencil ✏ secret'));
      assert.match(await nextSasl(c), failure('malformed-request'));
    });

    it('no initial response → an empty challenge (=), then the response logs in [RFC6120 6.4.2]', async () => {
      const c = await opened();
      c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'/>`);
      assert.match(await nextSasl(c), new RegExp(`^<challenge xmlns='${NS_SASL}'>=</challenge>$`));
      c.send(`<response xmlns='${NS_SASL}'>${b64('\0alice\0pencil ✏ secret')}</response>`);
      assert.match(await nextSasl(c), /^<success /);
      await c.open();
      assert.equal(await c.bind('late'), 'alice@localhost/late');
    });

    it('the username is normalised: ALICE logs in as alice [RFC7622 3.3]', async () => {
      const c = await opened();
      c.send(plain('\0ALICE\0pencil ✏ secret'));
      assert.match(await nextSasl(c), /^<success /);
      await c.open();
      assert.equal(await c.bind('caps'), 'alice@localhost/caps');
    });
  });

  it('authFreeFailures failures from one address are answered at once, later ones more slowly; another address is not slowed', async () => {
    await h.stop();
    h = await Harness.start({ limits: { authFreeFailures: 1 } });
    /** ms until the answer to one failed PLAIN attempt */
    const failOnce = async (c: Client): Promise<number> => {
      const t0 = Date.now();
      c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${b64('\0alice\0nope')}</auth>`);
      assert.match(await nextSasl(c), failure('not-authorized'));
      return Date.now() - t0;
    };
    const slow = h.connect({ remoteAddress: '192.0.2.1' });
    await slow.open();
    const first = await failOnce(slow);
    const second = await failOnce(slow);
    const other = h.connect({ remoteAddress: '192.0.2.2' });
    await other.open();
    const elsewhere = await failOnce(other);
    assert.deepEqual(
      { first: first < 200, second: second >= 200, elsewhere: elsewhere < 200 },
      { first: true, second: true, elsewhere: true },
      `answered after ${first}, ${second} and ${elsewhere} ms`,
    );
  });
});
