// HTTPS requests to the URLs of XEP-0363 slots, verified against the suite's test CA.
import https from 'node:https';
import { xml, type Element } from '@xmpp/xml';
import { testCa } from './test-ca.ts';

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTPS request to a slot URL, sent to 127.0.0.1 but verified as the URL's host (the certificate's name). */
export async function httpsCall(
  method: string,
  url: string,
  body?: Buffer | string,
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  const u = new URL(url);
  const ca = await testCa();
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        method,
        host: '127.0.0.1',
        servername: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        headers: { host: u.host, ...headers },
        ca,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** What an XMPP client needs to ask for a slot (a TestClient's request). */
interface Requester {
  request(el: Element): Promise<Element>;
}

/** A slot from upload.localhost and the PUT of `data` to it [XEP-0363 4, 5]; returns the GET URL. */
export async function uploadFile(
  c: Requester,
  filename: string,
  data: Buffer,
  contentType = 'application/octet-stream',
): Promise<string> {
  const NS = 'urn:xmpp:http:upload:0';
  const r = await c.request(
    xml(
      'iq',
      { type: 'get', to: 'upload.localhost' },
      xml('request', {
        xmlns: NS,
        filename,
        size: String(data.length),
        'content-type': contentType,
      }),
    ),
  );
  const slot = r.getChild('slot', NS);
  if (!slot) throw new Error(`no slot: ${r.toString()}`);
  const put = await httpsCall('PUT', slot.getChild('put')!.attrs.url as string, data, {
    'content-type': contentType,
  });
  if (put.status !== 201) throw new Error(`PUT answered ${put.status}: ${put.body.toString()}`);
  return slot.getChild('get')!.attrs.url as string;
}
