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
export async function saltedPassword(hash: ScramHash, password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  // SASLprep [RFC4013] approximated by NFKC, as most servers do.
  return pbkdf2Async(Buffer.from(password.normalize('NFKC'), 'utf8'), salt, iterations, keyLength(hash), nodeHash(hash));
}

export function hmac(hash: ScramHash, key: Buffer, data: string | Buffer): Buffer {
  return createHmac(nodeHash(hash), key).update(data).digest();
}

export function digest(hash: ScramHash, data: Buffer): Buffer {
  return createHash(nodeHash(hash)).update(data).digest();
}

export async function deriveCredential(hash: ScramHash, password: string, iterations: number): Promise<ScramCredential> {
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
  private readonly iterations: number;
  private readonly known = new Map<string, number>();

  constructor(store: KeyValueStore<AccountRecord>, domain: string, iterations = 4096) {
    this.store = store;
    this.domain = domain;
    this.iterations = iterations;
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

  async create(username: string, password: string): Promise<void> {
    const local = this.address(username).local;
    if (password.length === 0) throw new BrokerError('not-acceptable', 'empty password');
    if (await this.store.get(local)) throw new BrokerError('conflict', `user ${local} exists`);
    await this.store.put(local, await this.record(local, password));
  }

  async setPassword(username: string, password: string): Promise<void> {
    const local = this.address(username).local;
    if (password.length === 0) throw new BrokerError('not-acceptable', 'empty password');
    const existing = await this.store.get(local);
    if (!existing) throw new BrokerError('item-not-found', `no user ${local}`);
    await this.store.put(local, { ...(await this.record(local, password)), created: existing.created });
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
    const salted = await saltedPassword('SHA-256', password, Buffer.from(cred.salt, 'base64'), cred.iterations);
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

/**
 * Slows down repeated failed logins from one address: after `freeFailures`
 * failures inside `windowMs`, each further attempt waits longer (doubling, up
 * to `maxDelayMs`). Shared by every protocol.
 */
export class AuthThrottle {
  private readonly failures = new Map<string, { count: number; first: number }>();
  private readonly opts: { freeFailures: number; windowMs: number; maxDelayMs: number };

  constructor(opts: { freeFailures: number; windowMs: number; maxDelayMs: number }) {
    this.opts = opts;
  }

  /** How long to hold the answer to the next attempt from this address. */
  delayFor(ip: string): number {
    const f = this.failures.get(ip);
    if (!f) return 0;
    if (Date.now() - f.first > this.opts.windowMs) {
      this.failures.delete(ip);
      return 0;
    }
    const over = f.count - this.opts.freeFailures;
    if (over <= 0) return 0;
    return Math.min(this.opts.maxDelayMs, 250 * 2 ** (over - 1));
  }

  fail(ip: string): void {
    const f = this.failures.get(ip);
    if (!f || Date.now() - f.first > this.opts.windowMs) this.failures.set(ip, { count: 1, first: Date.now() });
    else f.count++;
    if (this.failures.size > 100_000) this.failures.delete(this.failures.keys().next().value!);
  }

  succeed(ip: string): void {
    this.failures.delete(ip);
  }
}
