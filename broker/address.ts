import { isIPv6 } from 'node:net';
import { BrokerError } from './errors.ts';

/**
 * `local@domain/resource`, normalised per RFC 7622 (a pragmatic subset of the
 * PRECIS profiles: NFKC and case folding for the local and domain parts, NFC
 * for the resource; forbidden characters and length limits enforced).
 */
export class Address {
  readonly local: string;
  readonly domain: string;
  readonly resource: string;
  private cached?: string;
  private bareCache?: Address;

  private constructor(local: string, domain: string, resource: string) {
    this.local = local;
    this.domain = domain;
    this.resource = resource;
  }

  /** Parse and normalise; throws BrokerError('jid-malformed'). [RFC7622 3.1] */
  static parse(input: string): Address {
    if (typeof input !== 'string' || input.length === 0) throw malformed('empty address');
    // Addresses are immutable, so one parse of a JID can be shared: every
    // stanza's `to` is parsed, and the same few JIDs come back all the time.
    const hit = parsed.get(input);
    if (hit !== undefined) return hit;
    const key = ownCopy(input);
    const addr = Address.parseUncached(key);
    if (parsed.size >= PARSE_CACHE) parsed.clear();
    parsed.set(key, addr);
    return addr;
  }

  private static parseUncached(input: string): Address {
    let rest = input;
    let resource = '';
    const slash = rest.indexOf('/');
    if (slash !== -1) {
      resource = rest.slice(slash + 1);
      rest = rest.slice(0, slash);
      if (resource.length === 0) throw malformed('empty resource'); // [RFC7622 3.4]
    }
    let local = '';
    const at = rest.indexOf('@');
    if (at !== -1) {
      local = rest.slice(0, at);
      rest = rest.slice(at + 1);
      if (local.length === 0) throw malformed('empty localpart'); // [RFC7622 3.3]
    }
    return Address.of(local, rest, resource);
  }

  /** Build from parts, normalising each. */
  static of(local: string, domain: string, resource = ''): Address {
    return new Address(normLocal(local), normDomain(domain), normResource(resource));
  }

  /** Like parse but returns undefined instead of throwing. */
  static tryParse(input: string | undefined): Address | undefined {
    if (input === undefined) return undefined;
    try {
      return Address.parse(input);
    } catch {
      return undefined;
    }
  }

  get isBare(): boolean {
    return this.resource === '';
  }

  get isDomain(): boolean {
    return this.local === '' && this.resource === '';
  }

  bare(): Address {
    if (this.resource === '') return this;
    // Cached: the router asks a full address for its bare form several times per message.
    return (this.bareCache ??= new Address(this.local, this.domain, ''));
  }

  withResource(resource: string): Address {
    return new Address(this.local, this.domain, normResource(resource));
  }

  equals(other: Address | undefined): boolean {
    return !!other && this.toString() === other.toString();
  }

  toString(): string {
    if (this.cached === undefined) {
      let s = this.domain;
      if (this.local) s = `${this.local}@${s}`;
      if (this.resource) s = `${s}/${this.resource}`;
      this.cached = s;
    }
    return this.cached;
  }
}

/** At most this many parsed JIDs are remembered (then the cache starts over). */
const PARSE_CACHE = 10_000;
const parsed = new Map<string, Address>();
/** At most this many normalised domains are remembered. */
const DOMAIN_CACHE = 1_000;
const domains = new Map<string, string>();

function malformed(text: string): BrokerError {
  return new BrokerError('jid-malformed', text);
}

const MAX_PART_BYTES = 1023; // [RFC7622 3.2, 3.3, 3.4]
// Characters forbidden in a localpart [RFC7622 3.3.1] plus controls and spaces.
const LOCAL_FORBIDDEN = /["&'/:<>@\s\u0000-\u001f\u007f]/u;
const CONTROL = /[\u0000-\u001f\u007f]/u;
const DOMAIN_LABEL = /^[\p{L}\p{N}](?:[\p{L}\p{N}_-]*[\p{L}\p{N}])?$/u;

function checkLength(part: string, what: string): void {
  if (Buffer.byteLength(part, 'utf8') > MAX_PART_BYTES) throw malformed(`${what} too long`);
}

/**
 * Bidirectional formatting controls: they reorder how a JID is displayed
 * ("alice\u202Eeg.exe" shows as "aliceexe.ge"), so that one account can pass
 * for another. Refused in every part.
 */
const BIDI_CONTROL = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;
/**
 * Code points the PRECIS IdentifierClass allows [RFC8264 4.2, 9]: printable
 * ASCII, letters and digits (Ll Lu Lo Lm Nd) and combining marks (Mn Mc).
 * Everything else is refused: controls, spaces, symbols and punctuation
 * outside ASCII, format characters (Cf: bidi controls, zero-width joiners,
 * which are CONTEXTJ and not allowed here), private use, surrogates,
 * unassigned code points.
 */
const IDENTIFIER_CHAR = /^[\u0021-\u007e\p{Ll}\p{Lu}\p{Lo}\p{Lm}\p{Nd}\p{Mn}\p{Mc}]*$/u;
/** Default-ignorable code points are disallowed in every PRECIS class [RFC8264 9.13]. */
const IGNORABLE = /\p{Default_Ignorable_Code_Point}/u;
/** Letters of right-to-left scripts (an approximation of Bidi_Class R and AL, which JavaScript regexps do not expose). */
const RTL_LETTER =
  /[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}\p{Script=Samaritan}\p{Script=Mandaic}\p{Script=Adlam}\p{Script=Hanifi_Rohingya}]/u;
/** Any letter (with RTL_LETTER: a left-to-right one). */
const LETTER = /\p{L}/u;

/**
 * The localpart rules of RFC 7622 3.3 with the PRECIS UsernameCaseMapped
 * profile [RFC8265 3.3] as the target; docs/architecture.md ("Addresses")
 * says precisely what is implemented and where it differs.
 */
function normLocal(local: string): string {
  if (local === '') return '';
  const n = local.normalize('NFKC').toLowerCase();
  if (LOCAL_FORBIDDEN.test(n)) throw malformed('forbidden character in localpart');
  if (BIDI_CONTROL.test(n)) throw malformed('bidirectional control character in localpart'); // [RFC8264 9.13]
  if (!IDENTIFIER_CHAR.test(n) || IGNORABLE.test(n))
    throw malformed('character not allowed in a localpart'); // [RFC8264 4.2] [RFC8265 3.3]
  if (RTL_LETTER.test(n)) checkBidiRule(n);
  checkLength(n, 'localpart');
  return n;
}

/**
 * A simplified Bidi Rule [RFC5893 2] for a localpart with right-to-left
 * letters [RFC8265 3.3 rule 5]: it starts with a right-to-left letter and
 * holds no left-to-right letter, so that its display cannot mix directions.
 * Digits and marks are allowed after the first character.
 */
function checkBidiRule(n: string): void {
  const chars = [...n];
  if (!RTL_LETTER.test(chars[0]!))
    throw malformed('a right-to-left localpart must start with a right-to-left letter'); // [RFC5893 2 rule 1]
  for (const c of chars) {
    if (LETTER.test(c) && !RTL_LETTER.test(c))
      throw malformed('left-to-right and right-to-left letters mixed in a localpart'); // [RFC5893 2 rule 2]
  }
}

function normDomain(domain: string): string {
  // Nearly every address has this node's domain: check it once.
  const hit = domains.get(domain);
  if (hit !== undefined) return hit;
  const key = ownCopy(domain);
  const d = normDomainUncached(key);
  if (domains.size >= DOMAIN_CACHE) domains.clear();
  domains.set(key, d);
  return d;
}

/**
 * A copy of `s` that shares no storage with it. What the caches above keep is
 * often a slice of a whole chunk of XML read from a socket (an attribute
 * value), and a V8 sliced string keeps its parent alive: a cached key, or a
 * part sliced from it, would pin that chunk for as long as the entry lives.
 * (A JSON round trip is exact for every string, lone surrogates included.)
 */
function ownCopy(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}

function normDomainUncached(domain: string): string {
  let d = domain.normalize('NFKC').toLowerCase();
  if (d.endsWith('.')) d = d.slice(0, -1); // [RFC7622 3.2]
  if (d.length === 0) throw malformed('empty domain');
  checkLength(d, 'domain');
  if (d.startsWith('[') || d.endsWith(']')) {
    // An IP literal must be a real IPv6 address [RFC7622 3.2, RFC3986 3.2.2]: `a@[<script>]` is not one.
    if (!(d.startsWith('[') && d.endsWith(']') && isIPv6(d.slice(1, -1))))
      throw malformed('invalid IPv6 literal');
    return d;
  }
  if (!d.split('.').every((label) => DOMAIN_LABEL.test(label))) {
    throw malformed('invalid domain');
  }
  return d;
}

function normResource(resource: string): string {
  if (resource === '') return '';
  const n = resource.normalize('NFC');
  if (CONTROL.test(n)) throw malformed('control character in resource');
  if (BIDI_CONTROL.test(n)) throw malformed('bidirectional control character in resource'); // [RFC8264 9.13]
  checkLength(n, 'resource');
  return n;
}
