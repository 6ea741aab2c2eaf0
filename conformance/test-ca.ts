// The suite's TLS trust: one test CA per test process, and a server
// certificate it signed (SAN localhost, 127.0.0.1, ::1) that startNode puts
// into each node's `<dataDir>/tls/` before it starts. Every TLS client of the
// suite trusts this CA and only it, with verification on: a node serving
// another certificate, or one for another name, fails the handshake.
import { generateCa, issueServerCert } from '../bin/certs.ts';

/** The suite's XMPP domain (wire.ts DOMAIN). */
const DOMAIN = 'localhost';

export interface TestPem {
  cert: string;
  key: string;
}

let caPem: string | undefined;
let pending: Promise<{ ca: TestPem; leaf: TestPem }> | undefined;

/** Ten days: long enough for any run of the suite. */
const notAfter = () => new Date(Date.now() + 10 * 24 * 3600 * 1000);

/** A CA (10 days) whose key is kept for more leaves; issued as the node issues its own (bin/certs.ts). */
async function makeCa(cn: string): Promise<TestPem> {
  const ca = await generateCa(cn, notAfter());
  return { cert: ca.cert, key: ca.private };
}

/** A server certificate signed by `ca` for DOMAIN (or `name`, and `otherNames`), 127.0.0.1 and ::1. */
export async function issueLeaf(
  ca: TestPem,
  name = DOMAIN,
  otherNames: string[] = [],
): Promise<TestPem> {
  const leaf = await issueServerCert(
    { cert: ca.cert, private: ca.key },
    name,
    notAfter(),
    otherNames,
  );
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
