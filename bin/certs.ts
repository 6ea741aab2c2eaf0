import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import tls, { type SecureContextOptions } from 'node:tls';
import selfsigned from 'selfsigned';
import type { Config } from './config.ts';

/** The certificate and key every TLS listener serves, and where they came from. */
export interface NodeCertificate {
  cert: string;
  key: string;
  /** true when this start generated them (a local CA and a leaf it signed) */
  generated: boolean;
}

const YEAR_MS = 365 * 24 * 3600 * 1000;

/** The files of the generated certificate, in `<dataDir>/tls/`. */
export function tlsFiles(cfg: Config): { dir: string; cert: string; key: string; ca: string } {
  const dir = path.join(cfg.dataDir, 'tls');
  return {
    dir,
    cert: path.join(dir, 'cert.pem'),
    key: path.join(dir, 'key.pem'),
    ca: path.join(dir, 'ca.pem'),
  };
}

/**
 * The certificate for every TLS listener (STARTTLS, direct TLS, MQTT TLS,
 * HTTPS): the configured PEM files, or one generated into the data directory
 * on first start: a local CA (`tls/ca.pem`, for operators to install in
 * their clients) and a leaf it signed for `domain`, `127.0.0.1` and `::1`.
 * The CA's private key is never written: it could sign a certificate for
 * any name that clients trusting `ca.pem` would accept. Every file is 0600
 * in a 0700 directory.
 */
export async function loadOrCreateCert(cfg: Config): Promise<NodeCertificate> {
  if (cfg.tls.cert && cfg.tls.key) {
    return {
      cert: readFileSync(cfg.tls.cert, 'utf8'),
      key: readFileSync(cfg.tls.key, 'utf8'),
      generated: false,
    };
  }
  const files = tlsFiles(cfg);
  if (existsSync(files.cert) && existsSync(files.key)) {
    return {
      cert: readFileSync(files.cert, 'utf8'),
      key: readFileSync(files.key, 'utf8'),
      generated: false,
    };
  }
  mkdirSync(files.dir, { recursive: true, mode: 0o700 });
  const { ca, leaf } = await generateCaAndLeaf(cfg.domain);
  writeFileSync(files.key, leaf.private, { mode: 0o600 });
  writeFileSync(files.cert, leaf.cert, { mode: 0o600 });
  writeFileSync(files.ca, ca.cert, { mode: 0o600 });
  return { cert: leaf.cert, key: leaf.private, generated: true };
}

/** A CA and a server certificate it signed (SAN: the domain, 127.0.0.1 and ::1). */
export async function generateCaAndLeaf(
  domain: string,
): Promise<{ ca: { cert: string; private: string }; leaf: { cert: string; private: string } }> {
  const notAfterDate = new Date(Date.now() + 10 * YEAR_MS);
  const ca = await generateCa(`Parley local CA for ${domain}`, notAfterDate);
  const leaf = await issueServerCert(ca, domain, notAfterDate);
  return { ca, leaf };
}

/** A CA that may sign server certificates only (no intermediate below it); the test suite makes its own with this too. */
export async function generateCa(
  commonName: string,
  notAfterDate: Date,
): Promise<{ cert: string; private: string }> {
  return selfsigned.generate([{ name: 'commonName', value: commonName }], {
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
}

/** A server certificate signed by `ca` for `name`, 127.0.0.1 and ::1. */
export async function issueServerCert(
  ca: { cert: string; private: string },
  name: string,
  notAfterDate: Date,
  /** more DNS names the certificate covers (a server's service domains) */
  otherNames: string[] = [],
): Promise<{ cert: string; private: string }> {
  // RSA: the suites every client has (ECDHE-RSA and TLS 1.3), with a key exchange that is forward-secret.
  return selfsigned.generate([{ name: 'commonName', value: name }], {
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: name },
          ...otherNames.map((value) => ({ type: 2 as const, value })),
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
}

/**
 * What every TLS listener is given: the certificate and the protocol policy
 * of `tls.*` (forward-secret suites only by default, TLS 1.2 at least).
 * Re-read on reload, so replaced files take effect without a restart.
 */
export async function loadTlsOptions(
  cfg: Config,
): Promise<{ options: SecureContextOptions; generated: boolean }> {
  const c = await loadOrCreateCert(cfg);
  const options = {
    cert: c.cert,
    key: c.key,
    ciphers: cfg.tls.ciphers,
    minVersion: cfg.tls.minVersion,
    // the server's order: the strongest suite both sides have, not the client's first
    honorCipherOrder: true,
  } satisfies SecureContextOptions;
  tls.createSecureContext(options); // throws here (key not matching, bad PEM, unknown suite) instead of in a listener
  return { options, generated: c.generated };
}

/** SHA-256 fingerprint of the first certificate of a PEM, as Node prints it (AA:BB:…). */
export function fingerprint256(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}
