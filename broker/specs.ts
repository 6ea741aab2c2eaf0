/**
 * Specifications the core implements outside any module (modules and
 * adapters declare their own). Feeds docs/compliance.md.
 */
export const coreSpecs: {
  spec: string;
  section?: string;
  status: 'complete' | 'partial';
  where: string;
  note?: string;
}[] = [
  {
    spec: 'RFC6120',
    section: '13.7 (server-to-server)',
    status: 'partial',
    where: 'broker/router.ts, broker/remote.ts',
    note: 'remote domains go to the route an adapter registers (XMPP s2s, docs/federation.md); without one, remote-server-not-found',
  },
  { spec: 'RFC6121', section: '4 (presence)', status: 'complete', where: 'broker/presence.ts' },
  {
    spec: 'RFC6121',
    section: '5, 8 (messages, delivery rules)',
    status: 'complete',
    where: 'broker/router.ts',
  },
  {
    spec: 'RFC7622',
    status: 'partial',
    where: 'broker/address.ts',
    note: 'NFKC + case folding instead of full PRECIS',
  },
];
