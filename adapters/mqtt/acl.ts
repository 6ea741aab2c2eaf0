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

/** The rules as they apply to one client: placeholders substituted, other users' rules gone. */
export class ClientAcl {
  private readonly rules: Compiled[];
  /** plain-topic answers, small and bounded: devices publish to few topics */
  private readonly cache = new Map<string, boolean>();

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
    const key = kind + topic;
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    const levels = topic.split('/');
    let result = false;
    for (const r of this.rules) {
      if ((kind === 'r' ? r.read : r.write) && levelsMatch(r.levels, levels)) {
        result = r.allow;
        break;
      }
    }
    if (this.cache.size >= 256) this.cache.clear();
    this.cache.set(key, result);
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
    const bad = levels.some((l, j) => (l.includes('#') && (l !== '#' || j !== levels.length - 1)) || (l.includes('+') && l !== '+'));
    if (r.topic.length === 0 || bad) errors.push(`acl.${i}.topic: not a valid MQTT topic filter [MQTT-4.7.1]`);
  });
  return errors;
}
