import type { CloseKind } from '../../broker/index.ts';

import { NS_STREAMS_ERR } from './ns.ts';

/**
 * CloseKind → stream error condition [RFC6120 4.9.3]; undefined means close
 * without an error element. The one place this adapter maps close reasons.
 */
const conditions: Partial<Record<CloseKind, string>> = {
  'not-well-formed': 'not-well-formed',
  'restricted-xml': 'restricted-xml',
  'policy-violation': 'policy-violation',
  'invalid-namespace': 'invalid-namespace',
  'bad-format': 'bad-format',
  'bad-namespace-prefix': 'bad-namespace-prefix',
  'host-unknown': 'host-unknown',
  'unsupported-version': 'unsupported-version',
  'invalid-from': 'invalid-from',
  'unsupported-stanza-type': 'unsupported-stanza-type',
  'not-authorized': 'not-authorized',
  'resource-conflict': 'conflict',
  'session-taken-over': 'conflict',
  'session-moved': 'conflict',
  'idle-timeout': 'connection-timeout',
  'auth-timeout': 'connection-timeout',
  'connection-timeout': 'connection-timeout',
  'ping-timeout': 'connection-timeout', // [RFC6120 4.9.3.4] [XEP-0199 4.1]
  'system-shutdown': 'system-shutdown',
  'see-other-host': 'see-other-host',
  'internal-error': 'internal-server-error',
  'protocol-error': 'undefined-condition',
};

export function streamErrorXml(kind: CloseKind, text?: string, to?: string): string | undefined {
  const condition = conditions[kind];
  if (!condition) return undefined;
  const t = text ? `<text xmlns='${NS_STREAMS_ERR}'>${escapeText(text)}</text>` : '';
  // [RFC6120 4.9.3.19] the other host is the condition's character data
  const body = kind === 'see-other-host' && to ? `>${escapeText(to)}</${condition}>` : '/>';
  return `<stream:error><${condition} xmlns='${NS_STREAMS_ERR}'${body}${t}</stream:error>`;
}

function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
