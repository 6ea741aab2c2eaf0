/**
 * MQTT topic names and filters [MQTT-4.7], and the two topic trees the core
 * owns (`chat/` and `presence/`, docs/mqtt-mapping.md).
 */

/** Where the adapter parks a PUBLISH that it consumed or dropped: nothing can subscribe to it. */
export const SINK_TOPIC = '$parley/consumed';

/**
 * Topics whose messages stay on the node that published them when aedes'
 * fan-out crosses a cluster (the `mq` option): the park for consumed
 * packets (their payload is the core's, already routed) and each node's own
 * `$SYS/broker/` statistics (docs/cluster.md, "Plain MQTT topics").
 */
export function nodeLocalTopic(topic: string): boolean {
  return (
    topic.charCodeAt(0) === 36 /* $ */ && (topic === SINK_TOPIC || topic.startsWith('$SYS/broker/'))
  );
}

/** True when `topic` (a topic name, no wildcards) matches `filter` [MQTT-4.7.1]. */
export function topicMatches(filter: string, topic: string): boolean {
  // A filter without wildcards matches only itself: no split per delivery for the common `chat/{me}`.
  if (!filter.includes('+') && !filter.includes('#')) return filter === topic;
  return levelsMatch(filter.split('/'), topic.split('/'));
}

/** `filter` already split into levels; `levels` is the topic name split into levels. */
export function levelsMatch(filter: readonly string[], levels: readonly string[]): boolean {
  // [MQTT-4.7.2-1] a filter starting with a wildcard never matches a topic starting with '$'
  if ((filter[0] === '#' || filter[0] === '+') && levels[0].startsWith('$')) return false;
  for (let i = 0; i < filter.length; i++) {
    const f = filter[i];
    if (f === '#') return true; // [MQTT-4.7.1-2] also matches the parent level
    if (i >= levels.length) return false;
    if (f !== '+' && f !== levels[i]) return false; // [MQTT-4.7.1-3] '+' matches exactly one level
  }
  return filter.length === levels.length;
}

/**
 * True when every topic `filter` can match is also matched by `pattern`
 * (both may hold wildcards): `sensors/#` covers `sensors/+/t`, `sensors/+`
 * does not cover `sensors/#`. Used to decide a SUBSCRIBE against an ACL rule.
 */
export function filterCovers(pattern: readonly string[], filter: readonly string[]): boolean {
  if ((pattern[0] === '#' || pattern[0] === '+') && filter[0].startsWith('$')) return false; // [MQTT-4.7.2-1]
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p === '#') return true;
    if (i >= filter.length) return false;
    const f = filter[i];
    if (f === '#') return false;
    if (p === '+') continue;
    if (f === '+' || f !== p) return false;
  }
  return pattern.length === filter.length;
}

/** A topic level holds no wildcard and no separator. */
export function isLiteralLevel(level: string): boolean {
  return level.length > 0 && !/[+#/]/.test(level);
}

/** A filter without wildcards. */
export function isLiteral(filter: string): boolean {
  return !filter.includes('+') && !filter.includes('#');
}

/** The core-owned trees: `chat/{user}` and `presence/{user}`. */
export type Reserved = { tree: 'chat' | 'presence'; user: string | undefined };

/**
 * Classify a topic name or filter: a reserved tree with its user level
 * (undefined when the topic is not exactly two levels, or the second is a
 * wildcard), or undefined for a plain topic.
 */
export function reserved(topic: string): Reserved | undefined {
  if (!topic.startsWith('chat') && !topic.startsWith('presence')) return undefined; // the common case, without slicing
  const slash = topic.indexOf('/');
  const head = slash === -1 ? topic : topic.slice(0, slash);
  if (head !== 'chat' && head !== 'presence') return undefined;
  const rest = slash === -1 ? undefined : topic.slice(slash + 1);
  return { tree: head, user: rest !== undefined && isLiteralLevel(rest) ? rest : undefined };
}

/** True when a filter could match some topic of a reserved tree. */
export function touchesReserved(filter: string): boolean {
  const first = filter.split('/')[0];
  return (
    first === '#' || first === '+' || first === 'chat' || first === 'presence' || first === 'rooms'
  );
}

/** The chat topic of a user (local part, already normalised). */
export function chatTopic(local: string): string {
  return `chat/${local}`;
}

/** The presence topic of a user (local part, already normalised). */
export function presenceTopic(local: string): string {
  return `presence/${local}`;
}
