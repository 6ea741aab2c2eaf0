// XEP-0363 upload and download throughput: one account asks the server's
// upload service for a slot, PUTs a file of --size bytes over HTTPS, GETs it
// back, and again until --duration seconds have passed. Reports MB/s each
// way (1 MB = 10^6 bytes) and the server's RSS (VmRSS, sampled every 50 ms):
// a server that streams stays flat whatever the file size; one that holds a
// file in memory grows by about its size.
//   --port P --pid PID --ca FILE --size BYTES --duration S [--host upload.localhost] [--user u1]
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { Readable } from 'node:stream';
import { num, now, parseFlags, rssKiB, run, str } from './lib/common.ts';
import { XmppClient } from './lib/xmpp.ts';

const f = parseFlags();
const port = num(f, 'port', 5222);
const pid = num(f, 'pid', 0);
const size = num(f, 'size', 1_000_000);
const duration = num(f, 'duration', 8);
const host = str(f, 'host', 'upload.localhost');
const user = str(f, 'user', 'u1');
const ca = readFileSync(str(f, 'ca', ''));
const NS = 'urn:xmpp:http:upload:0';

const unescape = (s: string) =>
  s
    .replace(/&amp;/g, '&')
    .replace(/&apos;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>');

/** `size` bytes in 64 KiB chunks of one buffer: the client holds 64 KiB, not the file. */
function body(n: number): Readable {
  const chunk = Buffer.alloc(65536, 0x5a);
  let left = n;
  return new Readable({
    read() {
      if (left <= 0) return this.push(null);
      const len = Math.min(chunk.length, left);
      left -= len;
      this.push(len === chunk.length ? chunk : chunk.subarray(0, len));
    },
  });
}

/** One HTTPS request to 127.0.0.1, verified as the URL's host against --ca; resolves with status and body length. */
function call(
  method: 'PUT' | 'GET',
  url: string,
  send?: Readable,
  headers: Record<string, string> = {},
): Promise<{ status: number; bytes: number }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        method,
        host: '127.0.0.1',
        port: u.port || 443,
        servername: u.hostname,
        path: u.pathname + u.search,
        headers: { host: u.host, ...headers },
        ca,
        agent: false,
      },
      (res) => {
        let bytes = 0;
        res.on('data', (d: Buffer) => (bytes += d.length));
        res.on('end', () => resolve({ status: res.statusCode!, bytes }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (send) send.pipe(req);
    else req.end();
  });
}

run(async () => {
  const c = await XmppClient.login({
    host: '127.0.0.1',
    port,
    domain: 'localhost',
    user,
    password: 'pw',
    resource: 'up',
    tls: false,
    mech: 'SCRAM-SHA-1',
    presence: false,
  });
  let peak = 0;
  const base = pid ? rssKiB(pid) : 0;
  const sampler = setInterval(() => {
    if (pid) peak = Math.max(peak, rssKiB(pid));
  }, 50);
  let putMs = 0;
  let getMs = 0;
  let files = 0;
  const started = now();
  try {
    while (files < 2 || now() - started < duration * 1000) {
      const id = `s${files}`;
      const answer = await c.request(
        `<iq type='get' id='${id}' to='${host}'><request xmlns='${NS}' filename='bench-${files}.bin' size='${size}' content-type='application/octet-stream'/></iq>`,
        id,
      );
      const put = /<put[^>]*\burl=(['"])(.*?)\1/.exec(answer)?.[2];
      const get = /<get[^>]*\burl=(['"])(.*?)\1/.exec(answer)?.[2];
      if (!put || !get) throw new Error(`no slot: ${answer.slice(0, 300)}`);
      // [XEP-0363 5] headers the service puts in the slot (Prosody: Authorization) go with the PUT
      const putHeaders: Record<string, string> = {};
      const putEl = /<put[\s\S]*?(?:\/>|<\/put>)/.exec(answer)?.[0] ?? '';
      for (const h of putEl.matchAll(
        /<header[^>]*\bname=(['"])(Authorization|Cookie|Expires)\1[^>]*>([^<]*)<\/header>/gi,
      ))
        putHeaders[h[2].toLowerCase()] = unescape(h[3]);
      let t = now();
      const p = await call('PUT', unescape(put), body(size), {
        ...putHeaders,
        'content-type': 'application/octet-stream',
        'content-length': String(size),
      });
      putMs += now() - t;
      if (p.status !== 201 && p.status !== 200) throw new Error(`PUT answered ${p.status}`);
      t = now();
      const g = await call('GET', unescape(get));
      getMs += now() - t;
      if (g.status !== 200 || g.bytes !== size)
        throw new Error(`GET answered ${g.status} with ${g.bytes} bytes`);
      files++;
    }
  } finally {
    clearInterval(sampler);
    c.destroy();
  }
  const mb = (files * size) / 1e6;
  return {
    files,
    sizeBytes: size,
    uploadMBps: Math.round((mb / (putMs / 1000)) * 10) / 10,
    downloadMBps: Math.round((mb / (getMs / 1000)) * 10) / 10,
    rssBaseMiB: Math.round(base / 102.4) / 10,
    rssPeakMiB: Math.round(peak / 102.4) / 10,
    rssGrowthMiB: Math.round((peak - base) / 102.4) / 10,
  };
}, 600_000);
