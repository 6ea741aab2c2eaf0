import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { xml, type Element } from '@xmpp/xml';
import { BrokerError } from '../../../broker/index.ts';
import { NS_DATA, NS_REGISTER } from '../ns.ts';

/**
 * What in-band registration of new accounts (XEP-0077, module `register`)
 * needs besides the account service: who may register (allow-list, rate per
 * source address), what a username and a password must look like, and the
 * two request forms (plain fields and the XEP-0004 form).
 */

/** The usernames nobody registers in-band (impersonating the operator), as Prosody's mod_block_registrations. */
export const DEFAULT_RESERVED = [
  'abuse',
  'admin',
  'administrator',
  'hostmaster',
  'info',
  'news',
  'noc',
  'operator',
  'owner',
  'postmaster',
  'register',
  'registration',
  'root',
  'security',
  'service',
  'signup',
  'support',
  'sysadmin',
  'sysop',
  'system',
  'test',
  'trouble',
  'webmaster',
  'www',
  'xmpp',
];

/** At most this many addresses tracked; the oldest goes first (an attacker with that many addresses registers that many accounts anyway). */
const MAX_TRACKED = 100_000;

/**
 * The key an address is counted under: an IPv4 address as is, an IPv6
 * address by its first `v6Prefix` bits (one host usually holds a whole /64,
 * so counting single IPv6 addresses would let it register without limit).
 * IPv4-mapped IPv6 addresses count as their IPv4 address.
 */
export function addressKey(ip: string, v6Prefix: number): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip;
  const groups = expandV6(ip);
  let bits = '';
  for (const g of groups) bits += parseInt(g, 16).toString(2).padStart(16, '0');
  return `${bits.slice(0, v6Prefix)}/${v6Prefix}`;
}

/** The eight 16-bit groups of an IPv6 address (zone id dropped). */
function expandV6(ip: string): string[] {
  const bare = ip.split('%')[0]!;
  const [head, tail] = bare.includes('::') ? bare.split('::') : [bare, undefined];
  const parse = (s: string | undefined): string[] => {
    if (!s) return [];
    const parts = s.split(':');
    const last = parts[parts.length - 1]!;
    if (isIPv4(last)) {
      // an embedded IPv4 tail is two groups
      const o = last.split('.').map(Number);
      parts.splice(
        parts.length - 1,
        1,
        ((o[0]! << 8) | o[1]!).toString(16),
        ((o[2]! << 8) | o[3]!).toString(16),
      );
    }
    return parts;
  };
  const h = parse(head);
  const t = parse(tail);
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t];
}

/** The allow-list: addresses and CIDR ranges, IPv4 and IPv6; empty means everyone. Throws on a bad entry. */
export function allowList(entries: string[]): BlockList | undefined {
  if (!entries.length) return undefined;
  const list = new BlockList();
  for (const e of entries) {
    const [addr, prefix] = e.split('/');
    const type = isIPv4(addr ?? '') ? 'ipv4' : isIPv6(addr ?? '') ? 'ipv6' : undefined;
    if (!type)
      throw new Error(`modules.register.allowFrom: '${e}' is not an address or CIDR range`);
    if (prefix === undefined) list.addAddress(addr!, type);
    else {
      const n = Number(prefix);
      if (!Number.isInteger(n) || n < 0 || n > (type === 'ipv4' ? 32 : 128))
        throw new Error(`modules.register.allowFrom: '${e}': bad prefix length`);
      list.addSubnet(addr!, n, type);
    }
  }
  return list;
}

/** Whether `ip` is on the list (an IPv4-mapped IPv6 address is checked as IPv4). */
export function allowed(list: BlockList, ip: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return list.check(mapped[1]!, 'ipv4');
  return isIPv6(ip) ? list.check(ip.split('%')[0]!, 'ipv6') : isIPv4(ip) && list.check(ip, 'ipv4');
}

export interface RegistrationLimits {
  /** seconds after an account was registered from an address before the next one may be */
  minSecondsBetween: number;
  /** refused attempts (bad name, taken name, weak password) per address in that window */
  maxFailures: number;
  v6Prefix: number;
}

interface AddressRecord {
  /** when an account was last created from here */
  lastSuccess?: number;
  failures: number;
  /** start of the failure window */
  since: number;
}

/**
 * Registrations per source address (ejabberd's `registration_timeout`,
 * Prosody's `min_seconds_between_registrations`): one account per
 * `minSecondsBetween` from an address, and at most `maxFailures` refused
 * attempts in such a window, so that the `conflict` answer XEP-0077
 * requires cannot be used to try names by the thousand. Counted per
 * address, not per stream: reconnecting changes nothing. In memory, per
 * node.
 */
export class RegistrationThrottle {
  private readonly limits: RegistrationLimits;
  private readonly byAddress = new Map<string, AddressRecord>();

  constructor(limits: RegistrationLimits) {
    this.limits = limits;
  }

  private windowMs(): number {
    return this.limits.minSecondsBetween * 1000;
  }

  private record(key: string, now: number): AddressRecord {
    let r = this.byAddress.get(key);
    if (r && now - r.since > this.windowMs()) {
      r.failures = 0; // a new failure window
      r.since = now;
    }
    if (!r) {
      r = { failures: 0, since: now };
      this.byAddress.set(key, r);
      if (this.byAddress.size > MAX_TRACKED)
        this.byAddress.delete(this.byAddress.keys().next().value!);
    }
    return r;
  }

  /** Throws resource-constraint when `ip` may not try now [XEP-0077 3.1]. */
  check(ip: string, now = Date.now()): void {
    if (this.limits.minSecondsBetween <= 0) return;
    const r = this.byAddress.get(addressKey(ip, this.limits.v6Prefix));
    if (!r) return;
    const wait = r.lastSuccess !== undefined ? r.lastSuccess + this.windowMs() - now : 0;
    if (wait > 0)
      throw new BrokerError(
        'resource-constraint',
        `one registration per ${this.limits.minSecondsBetween} s from an address; try again in ${Math.ceil(wait / 1000)} s`,
      );
    if (now - r.since <= this.windowMs() && r.failures >= this.limits.maxFailures) {
      throw new BrokerError(
        'resource-constraint',
        'too many refused registration attempts from this address; try again later',
      );
    }
  }

  failed(ip: string, now = Date.now()): void {
    if (this.limits.minSecondsBetween <= 0) return;
    this.record(addressKey(ip, this.limits.v6Prefix), now).failures++;
  }

  succeeded(ip: string, now = Date.now()): void {
    if (this.limits.minSecondsBetween <= 0) return;
    this.record(addressKey(ip, this.limits.v6Prefix), now).lastSuccess = now;
  }
}

/** What a registration request asks for. */
export interface RegistrationRequest {
  username?: string;
  password?: string;
  /** `<remove/>` [XEP-0077 3.2] */
  remove: boolean;
}

/** The fields of a request: the XEP-0004 form when there is one [XEP-0077 4], else the plain fields [XEP-0077 3.1]. */
export function readRequest(query: Element): RegistrationRequest {
  const form = query.getChild('x', NS_DATA);
  if (form) {
    if (form.attrs.type !== 'submit')
      throw new BrokerError('bad-request', 'the registration form must be of type submit'); // [XEP-0004 3.1]
    const fields = new Map<string, string>();
    for (const f of form.getChildren('field')) {
      const name = f.attrs.var as string | undefined;
      if (name && !fields.has(name)) fields.set(name, f.getChildText('value') ?? '');
    }
    const ft = fields.get('FORM_TYPE');
    if (ft !== undefined && ft !== NS_REGISTER)
      throw new BrokerError('bad-request', `FORM_TYPE must be ${NS_REGISTER}`);
    return { username: fields.get('username'), password: fields.get('password'), remove: false };
  }
  const text = (name: string): string | undefined => {
    const c = query.getChild(name);
    return c ? c.getText() : undefined;
  };
  return {
    username: text('username'),
    password: text('password'),
    remove: !!query.getChild('remove'),
  };
}

/** The registration form [XEP-0077 3.1] with its XEP-0004 variant [XEP-0077 4]. */
export function registrationForm(instructions: string): Element {
  return xml(
    'query',
    { xmlns: NS_REGISTER },
    xml('instructions', {}, instructions),
    xml('username'),
    xml('password'),
    xml(
      'x',
      { xmlns: NS_DATA, type: 'form' },
      xml('title', {}, 'Account registration'),
      xml('instructions', {}, instructions),
      xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_REGISTER)),
      xml('field', { var: 'username', type: 'text-single', label: 'Username' }, xml('required')),
      xml('field', { var: 'password', type: 'text-private', label: 'Password' }, xml('required')),
    ),
  );
}

export interface PasswordPolicy {
  minPasswordLength: number;
  maxPasswordBytes: number;
}

/** Throws not-acceptable for a password the policy refuses [XEP-0077 3.1]. */
export function checkPassword(password: string, policy: PasswordPolicy): void {
  if ([...password.normalize('NFKC')].length < policy.minPasswordLength) {
    throw new BrokerError(
      'not-acceptable',
      `the password must be at least ${policy.minPasswordLength} characters`,
    );
  }
  if (Buffer.byteLength(password) > policy.maxPasswordBytes)
    throw new BrokerError(
      'not-acceptable',
      `the password must be at most ${policy.maxPasswordBytes} bytes`,
    );
  // Control characters cannot be typed at a login prompt again (SASLprep prohibits them [RFC4013 2.3]).
  if (/[\u0000-\u001f\u007f]/.test(password))
    throw new BrokerError('not-acceptable', 'the password holds control characters');
}
