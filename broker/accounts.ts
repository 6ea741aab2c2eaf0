import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { KeyValueStore } from '../storage/types.ts';
import { Address } from './address.ts';
import { BrokerError } from './errors.ts';

const pbkdf2Async = promisify(pbkdf2);

export type ScramHash = 'SHA-1' | 'SHA-256';

/** Salted, iterated SCRAM keys [RFC5802 3]; no plaintext password is ever stored. */
export interface ScramCredential {
  salt: string; // base64
  iterations: number;
  storedKey: string; // base64
  serverKey: string; // base64
}

export interface AccountRecord {
  username: string;
  created: number;
  scram: Record<ScramHash, ScramCredential>;
}

const nodeHash = (h: ScramHash): string => (h === 'SHA-1' ? 'sha1' : 'sha256');
const keyLength = (h: ScramHash): number => (h === 'SHA-1' ? 20 : 32);

/** SaltedPassword := Hi(Normalize(password), salt, i) [RFC5802 3]. */
export async function saltedPassword(
  hash: ScramHash,
  password: string,
  salt: Buffer,
  iterations: number,
): Promise<Buffer> {
  // SASLprep [RFC4013] approximated by NFKC, as most servers do.
  return pbkdf2Async(
    Buffer.from(password.normalize('NFKC'), 'utf8'),
    salt,
    iterations,
    keyLength(hash),
    nodeHash(hash),
  );
}

export function hmac(hash: ScramHash, key: Buffer, data: string | Buffer): Buffer {
  return createHmac(nodeHash(hash), key).update(data).digest();
}

export function digest(hash: ScramHash, data: Buffer): Buffer {
  return createHash(nodeHash(hash)).update(data).digest();
}

export async function deriveCredential(
  hash: ScramHash,
  password: string,
  iterations: number,
): Promise<ScramCredential> {
  const salt = randomBytes(16);
  const salted = await saltedPassword(hash, password, salt, iterations);
  const clientKey = hmac(hash, salted, 'Client Key');
  return {
    salt: salt.toString('base64'),
    iterations,
    storedKey: digest(hash, clientKey).toString('base64'),
    serverKey: hmac(hash, salted, 'Server Key').toString('base64'),
  };
}

/** Accounts shared by every protocol: one password store, SCRAM keys only. */
export class AccountService {
  private readonly store: KeyValueStore<AccountRecord>;
  private readonly domain: string;
  private iterations: number;
  private readonly known = new Map<string, number>();
  private readonly creating = new Set<string>();

  constructor(store: KeyValueStore<AccountRecord>, domain: string, iterations = 4096) {
    this.store = store;
    this.domain = domain;
    this.iterations = iterations;
  }

  /** PBKDF2 iterations for keys derived from now on (`parley reload`); existing keys keep theirs. */
  setIterations(n: number): void {
    this.iterations = n;
  }

  /** Normalise a username into a bare address of this domain; throws jid-malformed. */
  address(username: string): Address {
    const a = Address.of(username, this.domain);
    if (!a.local) throw new BrokerError('jid-malformed', 'empty username');
    return a;
  }

  /**
   * Existence is asked for every routed message, so positive answers are
   * cached briefly (removal on this node clears its entry at once).
   */
  /** Whether `exists` would answer true from its cache, without a store read. */
  isKnown(username: string): boolean {
    const hit = this.known.get(username);
    return hit !== undefined && hit > Date.now();
  }

  async exists(username: string): Promise<boolean> {
    if (this.isKnown(username)) return true;
    const found = (await this.get(username)) !== undefined;
    if (found) {
      if (this.known.size > 100_000) this.known.clear();
      this.known.set(username, Date.now() + 30_000);
    }
    return found;
  }

  async get(username: string): Promise<AccountRecord | undefined> {
    let local: string;
    try {
      local = this.address(username).local;
    } catch {
      return undefined;
    }
    return this.store.get(local);
  }

  /**
   * Create an account; conflict when it exists. Two creations of one name at
   * once on this node: the second gets conflict rather than overwriting the
   * first's password after both found the name free (in-band registration
   * makes this reachable from the network). Across cluster nodes the store
   * has no put-if-absent; docs/security.md.
   */
  async create(username: string, password: string): Promise<void> {
    const local = this.address(username).local;
    if (password.length === 0) throw new BrokerError('not-acceptable', 'empty password');
    if (this.creating.has(local)) throw new BrokerError('conflict', `user ${local} exists`);
    this.creating.add(local);
    try {
      if (await this.store.get(local)) throw new BrokerError('conflict', `user ${local} exists`);
      await this.store.put(local, await this.record(local, password));
    } finally {
      this.creating.delete(local);
    }
  }

  async setPassword(username: string, password: string): Promise<void> {
    const local = this.address(username).local;
    if (password.length === 0) throw new BrokerError('not-acceptable', 'empty password');
    const existing = await this.store.get(local);
    if (!existing) throw new BrokerError('item-not-found', `no user ${local}`);
    await this.store.put(local, {
      ...(await this.record(local, password)),
      created: existing.created,
    });
  }

  async remove(username: string): Promise<void> {
    const local = this.address(username).local;
    if (!(await this.store.get(local))) throw new BrokerError('item-not-found', `no user ${local}`);
    this.known.clear();
    await this.store.delete(local);
  }

  async list(): Promise<string[]> {
    return this.store.keys();
  }

  /** Check a plaintext password (SASL PLAIN, MQTT CONNECT) against the stored SCRAM-SHA-256 key. */
  async verifyPassword(username: string, password: string): Promise<boolean> {
    const rec = await this.get(username);
    if (!rec) {
      // Spend comparable time so that unknown users are not told apart by timing.
      await saltedPassword('SHA-256', password, Buffer.alloc(16), this.iterations);
      return false;
    }
    const cred = rec.scram['SHA-256'];
    const salted = await saltedPassword(
      'SHA-256',
      password,
      Buffer.from(cred.salt, 'base64'),
      cred.iterations,
    );
    const stored = digest('SHA-256', hmac('SHA-256', salted, 'Client Key'));
    return timingSafeEqual(stored, Buffer.from(cred.storedKey, 'base64'));
  }

  private async record(local: string, password: string): Promise<AccountRecord> {
    const [sha1, sha256] = await Promise.all([
      deriveCredential('SHA-1', password, this.iterations),
      deriveCredential('SHA-256', password, this.iterations),
    ]);
    return { username: local, created: Date.now(), scram: { 'SHA-1': sha1, 'SHA-256': sha256 } };
  }
}

/** Options of {@link AuthThrottle}; each is a `limits.*` config option (docs/configuration.md). */
export interface AuthThrottleOptions {
  /** failed logins from one address (any account) inside the window before failures are answered slowly */
  freeFailures: number;
  /** failed logins against one account (from any address) inside the window before failures are answered slowly */
  freeFailuresPerAccount: number;
  windowMs: number;
  maxDelayMs: number;
  /** password checks from one address at once; more are refused without a check */
  maxInFlightPerAddress: number;
  /** password checks for one account at once; more are refused without a check */
  maxInFlightPerAccount: number;
}

/** One login attempt holding its slot; exactly one of `fail` / `succeed` ends it. */
export interface AuthAttempt {
  /** A wrong password: counted, then resolves after the delay owed, and only then frees the slot. */
  fail(): Promise<void>;
  /** The right password: frees the slot and forgets the failures of this account from this address. */
  succeed(): void;
  /** Neither (the check could not be made): frees the slot, counts nothing. */
  cancel(): void;
}

interface FailureWindow {
  count: number;
  first: number;
}

/** At most this many keys per map (addresses, accounts, pairs); the oldest goes first. */
const MAX_TRACKED = 100_000;

/**
 * Slows down password guessing, shared by every protocol (SASL, MQTT
 * CONNECT, the admin page). Failures are counted per source address and per
 * target account, each in its own window, so that neither guessing many
 * accounts from one address nor one account from many addresses goes
 * unnoticed. Past the free failures of either counter, a failure is answered
 * after 250 ms, doubling per failure up to `maxDelayMs`, and the attempt keeps
 * its slot until then.
 *
 * Parallel guesses: an attempt takes a slot for its address and its account
 * before the password is checked; with `maxInFlightPerAddress` or
 * `maxInFlightPerAccount` slots taken, it is refused at once without a check.
 * As a slowed failure holds its slot, guesses per address are bounded by
 * slots / delay however many connections an attacker opens.
 *
 * A success forgets only the failures of that account from that address
 * (both counters are sums of (account, address) pairs): logging into one's
 * own account does not clear the failures against another.
 */
export class AuthThrottle {
  private readonly opts: AuthThrottleOptions;
  private readonly pairs = new Map<string, FailureWindow>();
  private readonly byAddress = new Map<string, FailureWindow>();
  private readonly byAccount = new Map<string, FailureWindow>();
  private readonly inFlightAddress = new Map<string, number>();
  private readonly inFlightAccount = new Map<string, number>();

  constructor(opts: AuthThrottleOptions) {
    this.opts = opts;
  }

  /**
   * Take a slot for a password check of `account` from `ip`; undefined when
   * too many checks are already in flight (refuse without checking).
   */
  begin(ip: string, account: string): AuthAttempt | undefined {
    const acct = accountKey(account);
    if ((this.inFlightAddress.get(ip) ?? 0) >= this.opts.maxInFlightPerAddress) return undefined;
    if ((this.inFlightAccount.get(acct) ?? 0) >= this.opts.maxInFlightPerAccount) return undefined;
    this.inFlightAddress.set(ip, (this.inFlightAddress.get(ip) ?? 0) + 1);
    this.inFlightAccount.set(acct, (this.inFlightAccount.get(acct) ?? 0) + 1);
    let done = false;
    const release = () => {
      if (done) return;
      done = true;
      decrement(this.inFlightAddress, ip);
      decrement(this.inFlightAccount, acct);
    };
    return {
      fail: async () => {
        if (done) return;
        this.fail(ip, account);
        const delay = this.delayFor(ip, account);
        try {
          if (delay > 0) await new Promise((r) => setTimeout(r, delay));
        } finally {
          release();
        }
      },
      succeed: () => {
        if (done) return;
        this.succeed(ip, account);
        release();
      },
      cancel: release,
    };
  }

  /** How long to hold the answer to a failed attempt of `account` from `ip`, given the failures counted so far. */
  delayFor(ip: string, account: string): number {
    const overAddress = (this.live(this.byAddress, ip)?.count ?? 0) - this.opts.freeFailures;
    const overAccount =
      (this.live(this.byAccount, accountKey(account))?.count ?? 0) -
      this.opts.freeFailuresPerAccount;
    const over = Math.max(overAddress, overAccount);
    if (over <= 0) return 0;
    return Math.min(this.opts.maxDelayMs, 250 * 2 ** Math.min(over - 1, 30));
  }

  /** Count a failed attempt against the address, the account and their pair. */
  fail(ip: string, account: string): void {
    const acct = accountKey(account);
    this.bump(this.byAddress, ip);
    this.bump(this.byAccount, acct);
    this.bump(this.pairs, pairKey(acct, ip));
  }

  /** Forget the failures of this account from this address, and only those. */
  succeed(ip: string, account: string): void {
    const acct = accountKey(account);
    const key = pairKey(acct, ip);
    const pair = this.live(this.pairs, key);
    if (!pair) return;
    this.pairs.delete(key);
    for (const [map, k] of [
      [this.byAddress, ip],
      [this.byAccount, acct],
    ] as const) {
      const w = this.live(map, k);
      if (!w) continue;
      w.count -= pair.count;
      if (w.count <= 0) map.delete(k);
    }
  }

  /** Checks in flight (for tests and metrics). */
  inFlight(): { addresses: number; accounts: number } {
    let addresses = 0;
    let accounts = 0;
    for (const n of this.inFlightAddress.values()) addresses += n;
    for (const n of this.inFlightAccount.values()) accounts += n;
    return { addresses, accounts };
  }

  private live(map: Map<string, FailureWindow>, key: string): FailureWindow | undefined {
    const w = map.get(key);
    if (w && Date.now() - w.first > this.opts.windowMs) {
      map.delete(key);
      return undefined;
    }
    return w;
  }

  private bump(map: Map<string, FailureWindow>, key: string): void {
    const w = this.live(map, key);
    if (w) w.count++;
    else map.set(key, { count: 1, first: Date.now() });
    if (map.size > MAX_TRACKED) map.delete(map.keys().next().value!);
  }
}

/** Account names as counted: case-folded and bounded (an unknown name is attacker-chosen). */
function accountKey(account: string): string {
  return account.slice(0, 1024).toLowerCase();
}

function pairKey(account: string, ip: string): string {
  return `${account}\u0000${ip}`;
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 1) - 1;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
