// TLS probes shared by the security tests of the node's certificates and TLS
// policy (ops-tls.test.ts, ops-tls-trust.test.ts).
import tls from 'node:tls';
import { DOMAIN, RawConn, testCa } from '../helpers.ts';

/** A TLS handshake with the node's port; resolves with the peer certificate's SHA-256 fingerprint or rejects with the TLS error. */
export async function handshake(port: number, opts: tls.ConnectionOptions = {}): Promise<string> {
  const ca = await testCa();
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: DOMAIN, ca, ...opts });
    s.once('secureConnect', () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve(fp);
    });
    s.once('error', (err) => {
      s.destroy();
      reject(err);
    });
  });
}

/** STARTTLS on the c2s port [RFC6120 5.4]; resolves with the peer certificate's fingerprint. */
export async function starttlsHandshake(
  port: number,
  opts: tls.ConnectionOptions = {},
): Promise<string> {
  const c = await RawConn.connect(port);
  try {
    await c.openStream();
    await c.startTls(opts);
    return (c.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
  } finally {
    c.destroy();
  }
}
