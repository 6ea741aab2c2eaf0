/**
 * Errors and close reasons shared by the core and every adapter.
 * Each adapter maps these to its own wire form in one file.
 */

/** Stanza-level error conditions [RFC6120 8.3.3]. Never renumber or rename: adapters map them 1:1. */
export type ErrorCondition =
  | 'bad-request'
  | 'conflict'
  | 'feature-not-implemented'
  | 'forbidden'
  | 'gone'
  | 'internal-server-error'
  | 'item-not-found'
  | 'jid-malformed'
  | 'not-acceptable'
  | 'not-allowed'
  | 'not-authorized'
  | 'policy-violation'
  | 'recipient-unavailable'
  | 'redirect'
  | 'registration-required'
  | 'remote-server-not-found'
  | 'remote-server-timeout'
  | 'resource-constraint'
  | 'service-unavailable'
  | 'subscription-required'
  | 'undefined-condition'
  | 'unexpected-request';

/** Error types [RFC6120 8.3.2]. */
export type ErrorType = 'auth' | 'cancel' | 'continue' | 'modify' | 'wait';

const defaultType: Record<ErrorCondition, ErrorType> = {
  'bad-request': 'modify',
  conflict: 'cancel',
  'feature-not-implemented': 'cancel',
  forbidden: 'auth',
  gone: 'cancel',
  'internal-server-error': 'cancel',
  'item-not-found': 'cancel',
  'jid-malformed': 'modify',
  'not-acceptable': 'modify',
  'not-allowed': 'cancel',
  'not-authorized': 'auth',
  'policy-violation': 'modify',
  'recipient-unavailable': 'wait',
  redirect: 'modify',
  'registration-required': 'auth',
  'remote-server-not-found': 'cancel',
  'remote-server-timeout': 'wait',
  'resource-constraint': 'wait',
  'service-unavailable': 'cancel',
  'subscription-required': 'auth',
  'undefined-condition': 'cancel',
  'unexpected-request': 'wait',
};

/** A request failed in a way the client should be told about. */
/**
 * An application-specific error condition [RFC6120 8.3.4]: an element with
 * optional attributes and text children (XEP-0363's
 * `<file-too-large><max-file-size>…</max-file-size></file-too-large>`,
 * `<retry stamp='…'/>`).
 */
export interface AppCondition {
  name: string;
  ns: string;
  attrs?: Record<string, string>;
  /** child elements with text content, in order */
  children?: [name: string, text: string][];
}

export class BrokerError extends Error {
  readonly condition: ErrorCondition;
  readonly type: ErrorType;
  readonly text?: string;
  /** an application-specific condition beside the defined one [RFC6120 8.3.4], e.g. pubsub's precondition-not-met */
  readonly app?: AppCondition;

  constructor(condition: ErrorCondition, text?: string, type?: ErrorType, app?: AppCondition) {
    super(text ? `${condition}: ${text}` : condition);
    this.name = 'BrokerError';
    this.condition = condition;
    this.type = type ?? defaultType[condition];
    this.text = text;
    if (app) this.app = app;
  }
}

/**
 * Why a connection ended. Shows in logs and metrics; adapters map the
 * protocol-level ones to stream errors or MQTT return codes.
 */
export type CloseKind =
  | 'client-closed'
  | 'socket-error'
  | 'idle-timeout'
  | 'auth-timeout'
  | 'auth-failed'
  | 'not-well-formed'
  | 'restricted-xml'
  | 'policy-violation'
  | 'invalid-namespace'
  | 'bad-format'
  | 'bad-namespace-prefix'
  | 'host-unknown'
  | 'unsupported-version'
  | 'invalid-from'
  | 'unsupported-stanza-type'
  | 'not-authorized'
  | 'resource-conflict'
  | 'connection-timeout'
  | 'system-shutdown'
  /** the node drains and names another one to connect to (`to`: host[:port]) [RFC6120 4.9.3.19] */
  | 'see-other-host'
  /** the same over WebSocket: `<close see-other-uri='…'/>` (`to`: the other endpoint's URI) [RFC7395 3.6.1] */
  | 'see-other-uri'
  | 'session-taken-over'
  /** resumed on another cluster node [XEP-0198 5]: the session goes on there (no unavailable presence, nothing to offline) */
  | 'session-moved'
  /** a stream-management session kept for resumption was not resumed in time [XEP-0198 5] */
  | 'resume-timeout'
  /** the client did not answer the server's ping in time [XEP-0199 4.1] */
  | 'ping-timeout'
  | 'protocol-error'
  | 'internal-error';

export interface CloseReason {
  kind: CloseKind;
  text?: string;
  /** see-other-host / see-other-uri: where the client should connect instead */
  to?: string;
}

export function closeReason(kind: CloseKind, text?: string): CloseReason {
  return text === undefined ? { kind } : { kind, text };
}
