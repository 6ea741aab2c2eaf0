import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { digest, hmac, type Broker, type ScramHash } from '../../broker/index.ts';

/** SASL failure conditions [RFC6120 6.5]. */
export type SaslFailure =
  | 'aborted'
  | 'account-disabled'
  | 'credentials-expired'
  | 'encryption-required'
  | 'incorrect-encoding'
  | 'invalid-authzid'
  | 'invalid-mechanism'
  | 'malformed-request'
  | 'mechanism-too-weak'
  | 'not-authorized'
  | 'temporary-auth-failure';

export type SaslStep =
  | { kind: 'challenge'; data: Buffer }
  | { kind: 'success'; username: string; data?: Buffer }
  | { kind: 'failure'; condition: SaslFailure; text?: string };

export interface SaslMechanism {
  step(data: Buffer | null): Promise<SaslStep>;
}

/** Mechanisms offered, strongest first; PLAIN only on an encrypted stream [RFC6120 6.4.1]. */
export function offeredMechanisms(secure: boolean): string[] {
  return secure ? ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'] : ['SCRAM-SHA-256', 'SCRAM-SHA-1'];
}

/** `ip`: the client's address, for the shared login throttle. */
export function createMechanism(
  name: string,
  broker: Broker,
  localpartOf: (authzid: string) => string | undefined,
  ip = 'unknown',
): SaslMechanism | undefined {
  if (name === 'PLAIN') return new Plain(broker, localpartOf, ip);
  if (name === 'SCRAM-SHA-1') return new Scram('SHA-1', broker, localpartOf, ip);
  if (name === 'SCRAM-SHA-256') return new Scram('SHA-256', broker, localpartOf, ip);
  return undefined;
}

const fail = (condition: SaslFailure, text?: string): SaslStep => ({
  kind: 'failure',
  condition,
  text,
});

/**
 * Check a password under the shared login throttle (broker/accounts.ts
 * AuthThrottle): a slot per address and per account is taken first, or the
 * attempt is refused unchecked with temporary-auth-failure [RFC6120 6.5.11];
 * a wrong password is answered not-authorized [RFC6120 6.5.10] after the
 * delay the failures so far have earned, the slot held meanwhile.
 */
async function throttled(
  broker: Broker,
  ip: string,
  account: string,
  check: () => boolean | Promise<boolean>,
): Promise<SaslStep | undefined> {
  const attempt = broker.throttle.begin(ip, account);
  if (!attempt) return fail('temporary-auth-failure', 'too many login attempts in progress'); // [RFC6120 6.5.11]
  let ok: boolean;
  try {
    ok = await check();
  } catch (err) {
    attempt.cancel();
    throw err;
  }
  if (ok) {
    attempt.succeed();
    return undefined;
  }
  await attempt.fail();
  return fail('not-authorized'); // [RFC6120 6.5.10]
}

/** PLAIN [RFC4616]: authzid NUL authcid NUL passwd. */
class Plain implements SaslMechanism {
  constructor(
    private readonly broker: Broker,
    private readonly localpartOf: (authzid: string) => string | undefined,
    private readonly ip: string,
  ) {}

  async step(data: Buffer | null): Promise<SaslStep> {
    if (!data) return { kind: 'challenge', data: Buffer.alloc(0) };
    const parts = data.toString('utf8').split('\0');
    if (parts.length !== 3) return fail('malformed-request');
    const [authzid, authcid, password] = parts;
    if (!authcid || !password) return fail('not-authorized');
    if (authzid && this.localpartOf(authzid) !== authcid.toLowerCase())
      return fail('invalid-authzid'); // [RFC6120 6.4.6]
    const refused = await throttled(this.broker, this.ip, authcid, () =>
      this.broker.accounts.verifyPassword(authcid, password),
    );
    return refused ?? { kind: 'success', username: authcid };
  }
}

/** Decode a SCRAM saslname [RFC5802 5.1]: =2C → ',', =3D → '='; any other '=' is malformed. */
function saslname(s: string): string | undefined {
  if (/=(?!2C|3D)/.test(s)) return undefined;
  return s.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

function parseAttrs(s: string): Map<string, string> | undefined {
  const m = new Map<string, string>();
  for (const part of s.split(',')) {
    if (part.length < 2 || part[1] !== '=') return undefined;
    m.set(part[0], part.slice(2));
  }
  return m;
}

/** A per-process secret so unknown users get a stable fake salt (no user enumeration). */
const fakeSaltKey = randomBytes(32);

/** SCRAM-SHA-1 / SCRAM-SHA-256 server side [RFC5802], [RFC7677]; no channel binding. */
class Scram implements SaslMechanism {
  private state: 'first' | 'final' | 'done' = 'first';
  private gs2 = '';
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  private username = '';
  private storedKey?: Buffer;
  private serverKey?: Buffer;

  constructor(
    private readonly hash: ScramHash,
    private readonly broker: Broker,
    private readonly localpartOf: (authzid: string) => string | undefined,
    private readonly ip: string,
  ) {}

  async step(data: Buffer | null): Promise<SaslStep> {
    if (this.state === 'first') {
      if (!data || data.length === 0) return { kind: 'challenge', data: Buffer.alloc(0) };
      return this.first(data.toString('utf8'));
    }
    if (this.state === 'final') return this.final((data ?? Buffer.alloc(0)).toString('utf8'));
    return fail('malformed-request');
  }

  private async first(msg: string): Promise<SaslStep> {
    // gs2-header: cbind-flag "," [authzid] ","
    const m = /^([ny]|p=[^,]*),(a=[^,]*)?,(.*)$/s.exec(msg);
    if (!m) return fail('malformed-request');
    if (m[1].startsWith('p=')) return fail('malformed-request', 'channel binding is not supported'); // [RFC5802 6]
    this.gs2 = `${m[1]},${m[2] ?? ''},`;
    this.clientFirstBare = m[3];
    const attrs = parseAttrs(this.clientFirstBare);
    const user = attrs?.get('n');
    const cnonce = attrs?.get('r');
    if (!attrs || user === undefined || !cnonce || attrs.has('m')) return fail('malformed-request'); // [RFC5802 5.1] m= unsupported
    const name = saslname(user);
    if (!name) return fail('malformed-request');
    if (m[2]) {
      const authzid = saslname(m[2].slice(2));
      if (!authzid || this.localpartOf(authzid) !== name.toLowerCase())
        return fail('invalid-authzid'); // [RFC6120 6.4.6]
    }
    this.username = name;
    const rec = await this.broker.accounts.get(name);
    let salt: string;
    let iterations: number;
    if (rec) {
      const cred = rec.scram[this.hash];
      salt = cred.salt;
      iterations = cred.iterations;
      this.storedKey = Buffer.from(cred.storedKey, 'base64');
      this.serverKey = Buffer.from(cred.serverKey, 'base64');
    } else {
      salt = createHmac('sha256', fakeSaltKey)
        .update(name)
        .digest()
        .subarray(0, 16)
        .toString('base64');
      iterations = this.broker.limits.scramIterations;
    }
    this.nonce = cnonce + randomBytes(18).toString('base64');
    this.serverFirst = `r=${this.nonce},s=${salt},i=${iterations}`;
    this.state = 'final';
    return { kind: 'challenge', data: Buffer.from(this.serverFirst) };
  }

  private async final(msg: string): Promise<SaslStep> {
    this.state = 'done';
    const idx = msg.lastIndexOf(',p=');
    if (idx === -1) return fail('malformed-request');
    const withoutProof = msg.slice(0, idx);
    const attrs = parseAttrs(msg);
    if (!attrs) return fail('malformed-request');
    const c = attrs.get('c');
    const r = attrs.get('r');
    const p = attrs.get('p');
    if (!c || !r || !p) return fail('malformed-request');
    if (Buffer.from(c, 'base64').toString('utf8') !== this.gs2)
      return fail('malformed-request', 'channel binding mismatch');
    if (r !== this.nonce) return fail('malformed-request', 'nonce mismatch');
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const refused = await throttled(this.broker, this.ip, this.username, () => {
      // An unknown user is a failed guess like a wrong proof.
      if (!this.storedKey || !this.serverKey) return false;
      const clientSignature = hmac(this.hash, this.storedKey, authMessage);
      const proof = Buffer.from(p, 'base64');
      if (proof.length !== clientSignature.length) return false;
      const clientKey = Buffer.alloc(proof.length);
      for (let i = 0; i < proof.length; i++) clientKey[i] = proof[i] ^ clientSignature[i];
      return timingSafeEqual(digest(this.hash, clientKey), this.storedKey);
    });
    if (refused) return refused;
    const serverSignature = hmac(this.hash, this.serverKey!, authMessage);
    return {
      kind: 'success',
      username: this.username,
      data: Buffer.from(`v=${serverSignature.toString('base64')}`),
    };
  }
}
