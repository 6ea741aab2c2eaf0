// The IM vocabulary every protocol maps to, defined once [RFC6121].

/** Presence `show` values [RFC6121 4.7.2.1]. */
export const SHOW_VALUES: ReadonlySet<string> = new Set(['away', 'chat', 'dnd', 'xa']);

/** Presence types that manage subscriptions [RFC6121 3]. */
export const SUBSCRIPTION_TYPES: ReadonlySet<string> = new Set([
  'subscribe',
  'subscribed',
  'unsubscribe',
  'unsubscribed',
]);

/** Every presence type [RFC6121 4.7.1]. */
export const PRESENCE_TYPES: ReadonlySet<string> = new Set([
  'error',
  'probe',
  'unavailable',
  ...SUBSCRIPTION_TYPES,
]);

/** Message types [RFC6121 5.2.2]. */
export const MESSAGE_TYPES: ReadonlySet<string> = new Set([
  'chat',
  'error',
  'groupchat',
  'headline',
  'normal',
]);
