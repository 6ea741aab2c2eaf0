/** What the XMPP stream layer implements outside its modules, for docs/compliance.md. */
export const xmppSpecs: {
  spec: string;
  section?: string;
  status: 'complete' | 'partial';
  where: string;
  note?: string;
}[] = [
  {
    spec: 'RFC6120',
    section: '4 (streams, stream errors 4.9)',
    status: 'complete',
    where: 'adapters/xmpp/connection.ts',
  },
  {
    spec: 'RFC6120',
    section: '5 (STARTTLS)',
    status: 'complete',
    where: 'adapters/xmpp/connection.ts',
  },
  {
    spec: 'RFC6120',
    section: '6 (SASL)',
    status: 'partial',
    where: 'adapters/xmpp/sasl.ts',
    note: 'SCRAM-SHA-256, SCRAM-SHA-1, PLAIN over TLS; no -PLUS channel binding',
  },
  {
    spec: 'RFC6120',
    section: '7 (resource binding)',
    status: 'complete',
    where: 'adapters/xmpp/connection.ts',
  },
  {
    spec: 'RFC6120',
    section: '8 (stanzas, stanza errors 8.3)',
    status: 'complete',
    where: 'adapters/xmpp/iq.ts, stanza.ts',
  },
  {
    spec: 'RFC6120',
    section: '11.1 (restricted XML)',
    status: 'complete',
    where: 'adapters/xmpp/parser.ts',
  },
  {
    spec: 'RFC6120',
    section: '4.7-4.9, 5 (server-to-server streams, STARTTLS)',
    status: 'partial',
    where: 'adapters/xmpp/s2s/',
    note: 'off by default (s2s.enabled); STARTTLS required, peer certificates verified for the domain; SRV and static routes; no direct TLS s2s, no SASL EXTERNAL; docs/federation.md',
  },
  {
    spec: 'RFC6120',
    section: '8.3.3.16, 8.3.3.17 (remote-server-not-found, -timeout)',
    status: 'complete',
    where: 'adapters/xmpp/s2s/service.ts',
  },
  {
    spec: 'XEP-0220',
    status: 'partial',
    where: 'adapters/xmpp/s2s/',
    note: 'dialback both ways with piggybacking (several domains per stream); db:result errors; no dialback without TLS by default',
  },
  {
    spec: 'XEP-0185',
    status: 'complete',
    where: 'adapters/xmpp/s2s/dialback.ts',
    note: 'HMAC-SHA256 keys',
  },
  {
    spec: 'XEP-0368',
    status: 'complete',
    where: 'adapters/xmpp/server.ts',
    note: 'direct TLS listener',
  },
  {
    spec: 'XEP-0124',
    status: 'partial',
    where: 'adapters/xmpp/bosh*.ts',
    note: 'BOSH: no session pause, compression, key sequencing or multiple streams',
  },
  {
    spec: 'XEP-0206',
    status: 'complete',
    where: 'adapters/xmpp/bosh*.ts',
    note: 'XMPP over BOSH at /http-bind, stream restarts',
  },
];
