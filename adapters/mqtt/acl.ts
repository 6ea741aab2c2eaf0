import { filterCovers, levelsMatch } from './topics.ts';

/**
 * One access rule, Mosquitto-style: `%u` is replaced by the username and
 * `%c` by the client id. Rules are checked in order; the first rule that
 * applies decides; no rule means deny.
 */
export interface AclRule {
  effect: 'allow' | 'deny';
  /** topic filter; may hold `+`, `#`, `%u`, `%c` */
  topic: string;
  access: 'read' | 'write' | 'readwrite';
  /**
   * Who the rule is for: absent means everyone; otherwise usernames and the
   * two classes `$authenticated` and `$anonymous`.
   */
  users?: string[];
}

/** Every authenticated client may use every plain topic and read the broker statistics. */
export const defaultAcl: AclRule[] = [
  { effect: 'allow', topic: '#', access: 'readwrite' },
  { effect: 'allow', topic: '$SYS/broker/#', access: 'read', users: ['$authenticated'] },
];

/** Who a client is, for rule selection and placeholder substitution. */
export interface AclIdentity {
  /** normalised username (local part); undefined for anonymous clients */
  username?: string;
  /** the client id as the client sent it (or as generated) */
  clientId: string;
}

interface Compiled {
  allow: boolean;
  read: boolean;
  write: boolean;
  levels: string[];
}

/** A value that would change the meaning of a filter once substituted [CVE-2017-7650]. */
const UNSAFE = /[+#/]/;

/** What a rule list's verdicts depend on, computed once per list. */
interface Dependence {
  /** a rule names a user or uses %u */
  user: boolean;
  /** a rule uses %c */
  client: boolean;
}
const dependence = new WeakMap<readonly AclRule[], Dependence>();
/** Shared instances per rule list, keyed by what the verdicts depend on. */
const shared = new WeakMap<readonly AclRule[], Map<string, ClientAcl>>();
/** Most shared instances kept per rule list (one per user when rules name users). */
const SHARED_MAX = 10_000;

/** The rules as they apply to one client: placeholders substituted, other users' rules gone. */
export class ClientAcl {
  private readonly rules: Compiled[];
  /** plain-topic answers, small and bounded: devices publish to few topics */
  private readonly readCache = new Map<string, boolean>();
  private readonly writeCache = new Map<string, boolean>();

  /**
   * The ACL of a client, shared with every client it cannot differ from:
   * without %c and user-specific rules (the default rules), all
   * authenticated clients get one instance and one verdict cache, instead
   * of compiled rules and a cache per connection.
   */
  static for(rules: readonly AclRule[], who: AclIdentity): ClientAcl {
    let dep = dependence.get(rules);
    if (!dep) {
      dep = {
        user: rules.some(
          (r) => r.topic.includes('%u') || (r.users ?? []).some((u) => !u.startsWith('$')),
        ),
        client: rules.some((r) => r.topic.includes('%c')),
      };
      dependence.set(rules, dep);
    }
    if (dep.client) return new ClientAcl(rules, who);
    const key =
      who.username === undefined
        ? '\0anonymous'
        : dep.user
          ? `u:${who.username}`
          : '\0authenticated';
    let byKey = shared.get(rules);
    if (!byKey) shared.set(rules, (byKey = new Map()));
    let acl = byKey.get(key);
    if (!acl) {
      if (byKey.size >= SHARED_MAX) byKey.clear();
      byKey.set(key, (acl = new ClientAcl(rules, who)));
    }
    return acl;
  }

  constructor(rules: readonly AclRule[], who: AclIdentity) {
    this.rules = [];
    for (const r of rules) {
      if (!appliesTo(r, who)) continue;
      const topic = substitute(r.topic, who);
      if (topic === undefined) continue; // a placeholder this client cannot fill never matches
      this.rules.push({
        allow: r.effect === 'allow',
        read: r.access !== 'write',
        write: r.access !== 'read',
        levels: topic.split('/'),
      });
    }
  }

  /** May publish to this topic name. */
  canWrite(topic: string): boolean {
    return this.decide('w', topic);
  }

  /** May receive a message on this topic name (checked when a message is forwarded). */
  canRead(topic: string): boolean {
    return this.decide('r', topic);
  }

  /**
   * May subscribe to this filter: the first read rule whose filter covers it
   * decides. A deny rule that only overlaps the filter does not refuse it;
   * such messages are held back one by one when forwarded (canRead).
   */
  canSubscribe(filter: string): boolean {
    const levels = filter.split('/');
    for (const r of this.rules) {
      if (r.read && filterCovers(r.levels, levels)) return r.allow;
    }
    return false;
  }

  private decide(kind: 'r' | 'w', topic: string): boolean {
    const cache = kind === 'r' ? this.readCache : this.writeCache;
    const hit = cache.get(topic);
    if (hit !== undefined) return hit;
    const levels = topic.split('/');
    let result = false;
    for (const r of this.rules) {
      if ((kind === 'r' ? r.read : r.write) && levelsMatch(r.levels, levels)) {
        result = r.allow;
        break;
      }
    }
    if (cache.size >= 256) cache.clear();
    cache.set(topic, result);
    return result;
  }
}

function appliesTo(rule: AclRule, who: AclIdentity): boolean {
  if (!rule.users) return true;
  return rule.users.some((u) => {
    if (u === '$anonymous') return who.username === undefined;
    if (u === '$authenticated') return who.username !== undefined;
    return who.username !== undefined && u.toLowerCase() === who.username;
  });
}

function substitute(topic: string, who: AclIdentity): string | undefined {
  let out = topic;
  if (out.includes('%u')) {
    if (who.username === undefined || UNSAFE.test(who.username)) return undefined;
    out = out.split('%u').join(who.username);
  }
  if (out.includes('%c')) {
    if (who.clientId === '' || UNSAFE.test(who.clientId)) return undefined;
    out = out.split('%c').join(who.clientId);
  }
  return out;
}

/** Check a rule list for mistakes an operator makes; returns one message per bad rule. */
export function validateAcl(rules: readonly AclRule[]): string[] {
  const errors: string[] = [];
  rules.forEach((r, i) => {
    const levels = r.topic.split('/');
    const bad = levels.some(
      (l, j) =>
        (l.includes('#') && (l !== '#' || j !== levels.length - 1)) ||
        (l.includes('+') && l !== '+'),
    );
    if (r.topic.length === 0 || bad)
      errors.push(`acl.${i}.topic: not a valid MQTT topic filter [MQTT-4.7.1]`);
  });
  return errors;
}
