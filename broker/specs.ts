/**
 * Specifications the core and the XMPP stream layer implement outside any
 * module (modules declare their own). Feeds docs/compliance.md.
 */
export const coreSpecs: { spec: string; section?: string; status: 'complete' | 'partial'; where: string; note?: string }[] = [
  { spec: 'RFC6120', section: '4 (streams, stream errors 4.9)', status: 'complete', where: 'adapters/xmpp/connection.ts' },
  { spec: 'RFC6120', section: '5 (STARTTLS)', status: 'complete', where: 'adapters/xmpp/connection.ts' },
  { spec: 'RFC6120', section: '6 (SASL)', status: 'partial', where: 'adapters/xmpp/sasl.ts', note: 'SCRAM-SHA-256, SCRAM-SHA-1, PLAIN over TLS; no -PLUS channel binding' },
  { spec: 'RFC6120', section: '7 (resource binding)', status: 'complete', where: 'adapters/xmpp/connection.ts' },
  { spec: 'RFC6120', section: '8 (stanzas, stanza errors 8.3)', status: 'complete', where: 'adapters/xmpp/iq.ts, stanza.ts' },
  { spec: 'RFC6120', section: '11.1 (restricted XML)', status: 'complete', where: 'adapters/xmpp/parser.ts' },
  { spec: 'RFC6120', section: '13.7 (server-to-server)', status: 'partial', where: 'broker/router.ts', note: 'no federation: remote domains get remote-server-not-found' },
  { spec: 'RFC6121', section: '4 (presence)', status: 'complete', where: 'broker/presence.ts' },
  { spec: 'RFC6121', section: '5, 8 (messages, delivery rules)', status: 'complete', where: 'broker/router.ts' },
  { spec: 'RFC7622', status: 'partial', where: 'broker/address.ts', note: 'NFKC + case folding instead of full PRECIS' },
  { spec: 'XEP-0368', status: 'complete', where: 'adapters/xmpp/server.ts', note: 'direct TLS listener' },
];
