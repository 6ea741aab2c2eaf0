// The suite's TLS trust: one test CA per test process, and a server
// certificate it signed (SAN localhost, 127.0.0.1, ::1) that startNode puts
// into each node's `<dataDir>/tls/` before it starts. Every TLS client of the
// suite trusts this CA and only it, with verification on: a node serving
// another certificate, or one for another name, fails the handshake.
import selfsigned from 'selfsigned';

/** The suite's XMPP domain (wire.ts DOMAIN). */
const DOMAIN = 'localhost';

export interface TestPem {
  cert: string;
  key: string;
}

let caPem: string | undefined;
let pending: Promise<{ ca: TestPem; leaf: TestPem }> | undefined;

/** A CA (10 days) and a leaf it signed for `names`; the CA's key is kept for more leaves. */
async function makeCa(cn: string): Promise<TestPem> {
  const ca = await selfsigned.generate([{ name: 'commonName', value: cn }], {
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 10 * 24 * 3600 * 1000),
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  return { cert: ca.cert, key: ca.private };
}

/** A server certificate signed by `ca` for DOMAIN (or `name`), 127.0.0.1 and ::1. */
export async function issueLeaf(ca: TestPem, name = DOMAIN): Promise<TestPem> {
  const leaf = await selfsigned.generate([{ name: 'commonName', value: name }], {
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 10 * 24 * 3600 * 1000),
    ca: { key: ca.key, cert: ca.cert },
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: name },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  return { cert: leaf.cert, key: leaf.private };
}

/** The suite's CA and the certificate every test node serves (made once per process). */
export function testPki(): Promise<{ ca: TestPem; leaf: TestPem }> {
  pending ??= (async () => {
    const ca = await makeCa('Parley conformance test CA');
    const leaf = await issueLeaf(ca);
    caPem = ca.cert;
    return { ca, leaf };
  })();
  return pending;
}

/** The CA every TLS client of the suite trusts (PEM). */
export async function testCa(): Promise<string> {
  return (await testPki()).ca.cert;
}

/** The test CA once made (startNode makes it before a node can be reached), else undefined. */
export function testCaIfReady(): string | undefined {
  return caPem;
}

/** Another CA, unrelated to the suite's: for tests that a client trusting it is refused. */
export function otherCa(cn = 'Some other CA'): Promise<TestPem> {
  return makeCa(cn);
}
