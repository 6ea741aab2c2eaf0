// HTTPS requests to the URLs of XEP-0363 slots, verified against the suite's test CA.
import https from 'node:https';
import { testCa } from './test-ca.ts';

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTPS request to a slot URL, sent to 127.0.0.1 but verified as the URL's host (the certificate's name). */
export async function httpsCall(method: string, url: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<HttpResult> {
  const u = new URL(url);
  const ca = await testCa();
  return new Promise((resolve, reject) => {
    const req = https.request(
      { method, host: '127.0.0.1', servername: u.hostname, port: u.port, path: u.pathname + u.search, headers: { host: u.host, ...headers }, ca, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
