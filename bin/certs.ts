import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import selfsigned from 'selfsigned';
import type { Config } from './config.ts';

/**
 * The certificate for STARTTLS and direct TLS: the configured PEM files, or a
 * self-signed one generated into the data directory on first start (fine for
 * localhost; use a real one in production).
 */
export async function loadOrCreateCert(cfg: Config): Promise<{ cert: string; key: string; generated: boolean }> {
  if (cfg.tls.cert && cfg.tls.key) {
    return { cert: readFileSync(cfg.tls.cert, 'utf8'), key: readFileSync(cfg.tls.key, 'utf8'), generated: false };
  }
  const certFile = path.join(cfg.dataDir, 'tls', 'cert.pem');
  const keyFile = path.join(cfg.dataDir, 'tls', 'key.pem');
  if (existsSync(certFile) && existsSync(keyFile)) {
    return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), generated: false };
  }
  mkdirSync(path.dirname(certFile), { recursive: true });
  const pems = await selfsigned.generate([{ name: 'commonName', value: cfg.domain }], {
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 3650 * 24 * 3600 * 1000),
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: cfg.domain }] }],
  } as any);
  writeFileSync(keyFile, pems.private, { mode: 0o600 });
  writeFileSync(certFile, pems.cert);
  return { cert: pems.cert, key: pems.private, generated: true };
}
