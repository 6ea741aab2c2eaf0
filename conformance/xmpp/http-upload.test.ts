// Black-box XEP-0363 HTTP File Upload: an @xmpp/client asks upload.localhost
// for slots, Node's https client PUTs and GETs the file (with Range) against
// the node's HTTPS listener, verified against the suite's test CA.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { Element } from '@xmpp/xml';
import { httpsCall } from '../upload-helpers.ts';
import {
  runCli,
  startNode,
  stopAllClients,
  testCa,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
  type TestNode,
} from '../helpers.ts';

const NS = 'urn:xmpp:http:upload:0';
const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const PW = 'pw-upload';
const MAX = 4096;

const call = httpsCall;

function errorOf(r: Element): { type: string; condition: string; app?: Element } {
  const e = r.getChild('error')!;
  const condition = e.children.find(
    (c) =>
      typeof c !== 'string' &&
      (c as Element).attrs.xmlns === STANZAS &&
      (c as Element).name !== 'text',
  ) as Element;
  const app = e.children.find((c) => typeof c !== 'string' && (c as Element).attrs.xmlns === NS) as
    Element | undefined;
  return { type: e.attrs.type, condition: condition.name, app };
}

describe('XEP-0363 HTTP File Upload', function () {
  this.timeout(30_000);
  let node: TestNode;
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  let a: TestClient;

  const slot = (filename: string, size: number | string, contentType?: string, c = a) =>
    c.request(
      xml(
        'iq',
        { type: 'get', to: 'upload.localhost' },
        xml('request', {
          xmlns: NS,
          filename,
          size: String(size),
          ...(contentType ? { 'content-type': contentType } : {}),
        }),
      ),
    );
  const urls = (r: Element) => {
    assert.equal(r.attrs.type, 'result', r.toString());
    const s = r.getChild('slot', NS)!;
    return {
      put: s.getChild('put')!.attrs.url as string,
      get: s.getChild('get')!.attrs.url as string,
    };
  };

  before(async function () {
    this.timeout(60_000);
    node = await startNode({
      config: `modules:\n  upload:\n    maxFileSize: ${MAX}\n    quotaBytes: 20000\n    dailyBytes: 30000\n    allowedTypes: ['image/*', 'text/plain', 'application/octet-stream']\n    slotTtlSeconds: 2\n`,
    });
    await node.addUser(alice, PW);
    await node.addUser(bob, PW);
  });
  beforeEach(async () => {
    a = await xmppClient({ port: node.ports.xmpp, username: alice, password: PW });
  });
  afterEach(() => stopAllClients());
  after(async () => node?.dispose());

  it('the server lists upload.localhost; its disco#info has identity store/file, the feature and max-file-size [XEP-0363 3]', async () => {
    const items = await a.request(
      xml(
        'iq',
        { type: 'get', to: 'localhost' },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' }),
      ),
    );
    assert.ok(
      items
        .getChild('query')!
        .getChildren('item')
        .some((i) => i.attrs.jid === 'upload.localhost'),
    );
    const info = (
      await a.request(
        xml(
          'iq',
          { type: 'get', to: 'upload.localhost' },
          xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }),
        ),
      )
    ).getChild('query')!;
    assert.ok(
      info
        .getChildren('identity')
        .some((i) => i.attrs.category === 'store' && i.attrs.type === 'file'),
    );
    assert.ok(info.getChildren('feature').some((f) => f.attrs.var === NS));
    const form = info.getChild('x', 'jabber:x:data')!;
    const fields = new Map(
      form.getChildren('field').map((f) => [f.attrs.var, f.getChildText('value')]),
    );
    assert.equal(fields.get('FORM_TYPE'), NS);
    assert.equal(fields.get('max-file-size'), String(MAX));
  });

  it('slot, PUT, GET, Range 206 and 416, HEAD, CORS preflight [XEP-0363 4, 5; RFC9110 14]', async () => {
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
    const { put, get } = urls(await slot('photo 1.png', data.length, 'image/png'));
    assert.match(put, /^https:\/\/localhost:\d+\/upload\/[^/]+\/photo%201\.png$/);
    const p = await call('PUT', put, data, { 'content-type': 'image/png' });
    assert.equal(p.status, 201, p.body.toString());
    const g = await call('GET', get);
    assert.equal(g.status, 200);
    assert.deepEqual(g.body, data);
    assert.equal(g.headers['content-type'], 'image/png');
    assert.match(String(g.headers['content-disposition']), /^inline/);
    assert.match(String(g.headers['cache-control']), /max-age=\d+/);
    assert.equal(g.headers['accept-ranges'], 'bytes');
    assert.equal(g.headers['x-content-type-options'], 'nosniff');
    const r = await call('GET', get, undefined, { range: 'bytes=100-199' });
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], 'bytes 100-199/1000');
    assert.deepEqual(r.body, data.subarray(100, 200));
    const tail = await call('GET', get, undefined, { range: 'bytes=-10' });
    assert.equal(tail.status, 206);
    assert.deepEqual(tail.body, data.subarray(990));
    const open = await call('GET', get, undefined, { range: 'bytes=900-' });
    assert.deepEqual(open.body, data.subarray(900));
    const bad = await call('GET', get, undefined, { range: 'bytes=1000-1001' });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers['content-range'], 'bytes */1000');
    const h = await call('HEAD', get);
    assert.equal(h.status, 200);
    assert.equal(h.headers['content-length'], '1000');
    assert.equal(h.body.length, 0);
    const pre = await call('OPTIONS', put, undefined, {
      origin: 'https://web.example',
      'access-control-request-method': 'PUT',
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], '*');
    assert.match(String(pre.headers['access-control-allow-methods']), /PUT/);
    const cors = await call('GET', get, undefined, { origin: 'https://web.example' });
    assert.equal(cors.headers['access-control-allow-origin'], '*');
    // on disk under <dataDir>/upload/, 0600
    const files = readdirSync(path.join(node.dataDir, 'upload'));
    assert.ok(files.length >= 1);
    assert.equal(statSync(path.join(node.dataDir, 'upload', files[0])).mode & 0o777, 0o600);
    assert.equal(statSync(path.join(node.dataDir, 'upload.key')).mode & 0o777, 0o600);
  });

  it('a non-image is served as an attachment with its content type', async () => {
    const { put, get } = urls(await slot('notes.txt', 5, 'text/plain'));
    assert.equal((await call('PUT', put, 'hello', { 'content-type': 'text/plain' })).status, 201);
    const g = await call('GET', get);
    assert.equal(g.headers['content-type'], 'text/plain');
    assert.match(
      String(g.headers['content-disposition']),
      /^attachment; filename\*=UTF-8''notes\.txt$/,
    );
  });

  it('refused slot requests carry the exact XEP errors [XEP-0363 4]', async () => {
    const big = errorOf(await slot('big.bin', MAX + 1));
    assert.deepEqual(
      [big.type, big.condition, big.app?.name],
      ['modify', 'not-acceptable', 'file-too-large'],
    );
    assert.equal(big.app!.getChildText('max-file-size'), String(MAX));
    const type = errorOf(await slot('page.html', 10, 'text/html'));
    assert.deepEqual([type.type, type.condition], ['cancel', 'not-allowed']);
    for (const [name, size] of [
      ['neg.bin', '-5'],
      ['zero.bin', '0'],
      ['../../etc/passwd', '10'],
      ['..', '10'],
      ['a\\b.bin', '10'],
      ['x'.repeat(256), '10'],
      ['', '10'],
      ['x.bin', '1e3'],
      ['x.bin', '99999999999999999999999'],
    ] as const) {
      const e = errorOf(await slot(name, size));
      assert.equal(e.condition, 'bad-request', `${JSON.stringify(name)} ${size}`);
    }
  });

  it('quota and daily volume: resource-constraint (wait) with retry [XEP-0363 4]', async () => {
    const b = await xmppClient({ port: node.ports.xmpp, username: bob, password: PW });
    for (let i = 0; i < 4; i++) urls(await slot(`f${i}.bin`, MAX, undefined, b)); // 16384 of 20000 bytes
    const q = errorOf(await slot('over.bin', MAX, undefined, b));
    assert.deepEqual([q.type, q.condition, q.app?.name], ['wait', 'resource-constraint', 'retry']);
    assert.ok(Date.parse(q.app!.attrs.stamp) > Date.now(), 'retry when the oldest file expires');
  });

  it('malformed and forbidden PUT/GET: bad signature, other file, wrong size and type, overwrite, expired slot, traversal, listing', async () => {
    const { put, get } = urls(await slot('a.bin', 10));
    const tok = new URL(put).pathname.split('/')[2];
    const forged = put.replace(
      /\.([A-Za-z0-9_-]{43})\//,
      (_m, s: string) => `.${s[0] === 'A' ? 'B' : 'A'}${s.slice(1)}/`,
    );
    assert.equal((await call('PUT', forged, '0123456789')).status, 403, 'bad signature');
    assert.equal(
      (await call('PUT', put.replace(/a\.bin$/, 'b.bin'), '0123456789')).status,
      403,
      'the token does not authorize another file',
    );
    assert.equal((await call('PUT', put, '012345678901')).status, 413, 'more bytes than the slot');
    assert.equal(
      (await call('PUT', put, '0123456789', { 'content-length': '99999999999999' })).status,
      413,
      'a huge Content-Length is refused before any body',
    );
    assert.equal(
      (await call('PUT', put, '0123456789', { 'transfer-encoding': 'chunked' })).status,
      411,
      'no length: refused',
    );
    assert.equal(
      (await call('PUT', put, '0123456789', { 'content-type': 'text/html' })).status,
      415,
      'other content type',
    );
    assert.equal((await call('GET', get)).status, 404, 'nothing stored yet');
    assert.equal((await call('PUT', put, '0123456789')).status, 201);
    assert.equal((await call('PUT', put, 'abcdefghij')).status, 409, 'no overwrite');
    assert.equal((await call('GET', get)).body.toString(), '0123456789');
    assert.equal((await call('GET', forged)).status, 404);
    const base = new URL(put).origin;
    for (const p of [
      '/upload/',
      `/upload/${tok}/`,
      `/upload/${tok}/..%2F..%2Fupload.key`,
      `/upload/${tok}/a.bin/x`,
      '/upload/../upload.key',
      `/upload/${tok}/%00`,
    ])
      assert.equal((await call('GET', base + p)).status, 404, p);
    assert.equal(
      (await call('PUT', `${base}/upload/AAAAAAAAAAAAAAAAAAAAAAAA.zz.${'A'.repeat(43)}/x.bin`, 'x'))
        .status,
      403,
      'PUT without a slot',
    );
    // plain HTTP never serves uploads
    const plain = await new Promise<number>((resolve, reject) =>
      import('node:http').then(({ default: http }) =>
        http
          .get(
            {
              host: '127.0.0.1',
              port: node.ports.http,
              path: new URL(get).pathname,
              headers: { host: 'localhost' },
            },
            (res) => {
              res.resume();
              resolve(res.statusCode!);
            },
          )
          .on('error', reject),
      ),
    );
    assert.equal(plain, 403);
    const late = urls(await slot('late.bin', 3));
    await new Promise((r) => setTimeout(r, 2600));
    assert.equal((await call('PUT', late.put, 'abc')).status, 403, 'slot expired');
  });

  it("account removal deletes the user's files", async () => {
    const carol = uniqueName('carol');
    await node.addUser(carol, PW);
    const c = await xmppClient({ port: node.ports.xmpp, username: carol, password: PW });
    const { put, get } = urls(await slot('mine.bin', 4, undefined, c));
    assert.equal((await call('PUT', put, 'abcd')).status, 201);
    const before = readdirSync(path.join(node.dataDir, 'upload')).length;
    await c.stop();
    const r = await runCli([
      '--data-dir',
      node.dataDir,
      '--domain',
      'localhost',
      '--config',
      path.join(node.dataDir, 'parley.yaml'),
      'user',
      'remove',
      carol,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await call('GET', get)).status, 404);
    assert.equal(readdirSync(path.join(node.dataDir, 'upload')).length, before - 1);
    assert.ok(existsSync(path.join(node.dataDir, 'upload.key')));
  });
});

describe('XEP-0363 expiry and CORS with web.allowedOrigins', function () {
  this.timeout(30_000);
  let node: TestNode;
  const dave = uniqueName('dave');

  before(async function () {
    this.timeout(60_000);
    // maxAgeDays 0.00002 ≈ 1.7 s, purged every second
    node = await startNode({
      config:
        "web:\n  allowedOrigins: ['https://chat.example']\nmodules:\n  upload:\n    maxAgeDays: 0.00002\n    purgeIntervalSeconds: 1\n",
    });
    await node.addUser(dave, PW);
  });
  afterEach(() => stopAllClients());
  after(async () => node?.dispose());

  it('a GET of an expired file is 404 and the file is gone from disk', async () => {
    const c = await xmppClient({ port: node.ports.xmpp, username: dave, password: PW });
    const r = await c.request(
      xml(
        'iq',
        { type: 'get', to: 'upload.localhost' },
        xml('request', { xmlns: NS, filename: 'old.txt', size: '3', 'content-type': 'text/plain' }),
      ),
    );
    const s = r.getChild('slot', NS)!;
    const put = s.getChild('put')!.attrs.url as string;
    const get = s.getChild('get')!.attrs.url as string;
    assert.equal((await call('PUT', put, 'abc', { 'content-type': 'text/plain' })).status, 201);
    assert.equal((await call('GET', get)).status, 200);
    // CORS follows web.allowedOrigins: a listed origin is echoed, another is refused
    const ok = await call('OPTIONS', put, undefined, {
      origin: 'https://chat.example',
      'access-control-request-method': 'PUT',
    });
    assert.equal(ok.headers['access-control-allow-origin'], 'https://chat.example');
    assert.equal(
      (await call('GET', get, undefined, { origin: 'https://evil.example' })).status,
      403,
    );
    const deadline = Date.now() + 15_000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 500));
      status = (await call('GET', get)).status;
    }
    assert.equal(status, 404);
    assert.deepEqual(readdirSync(path.join(node.dataDir, 'upload')), []);
  });
});

describe('XEP-0363 a stalled upload is cut', function () {
  this.timeout(30_000);
  let node: TestNode;
  const carol = uniqueName('carol');

  before(async function () {
    this.timeout(60_000);
    node = await startNode({ config: 'modules:\n  upload:\n    stallTimeoutSeconds: 1\n' });
    await node.addUser(carol, PW);
  });
  afterEach(() => stopAllClients());
  after(async () => node?.dispose());

  it('a PUT that stops sending is closed after stallTimeoutSeconds, nothing is stored, and the slot can be used again (slow-body attack)', async () => {
    const c = await xmppClient({ port: node.ports.xmpp, username: carol, password: PW });
    const r = await c.request(
      xml(
        'iq',
        { type: 'get', to: 'upload.localhost' },
        xml('request', {
          xmlns: NS,
          filename: 'big.bin',
          size: '1000',
          'content-type': 'application/octet-stream',
        }),
      ),
    );
    const s = r.getChild('slot', NS)!;
    const put = s.getChild('put')!.attrs.url as string;
    const get = s.getChild('get')!.attrs.url as string;
    const u = new URL(put);
    const caPem = await testCa();
    const started = Date.now();
    const closed = await new Promise<string>((resolve) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          servername: 'localhost',
          port: u.port,
          path: u.pathname,
          method: 'PUT',
          ca: [caPem],
          headers: { 'content-length': '1000', 'content-type': 'application/octet-stream' },
        },
        (res) => resolve(`answered ${res.statusCode}`),
      );
      req.on('error', (err) => resolve(`closed: ${err.message}`));
      req.write(Buffer.alloc(100, 7)); // then nothing more
    });
    const waited = Date.now() - started;
    assert.match(closed, /closed|answered 4\d\d/, closed);
    assert.ok(waited >= 900 && waited < 15_000, `cut after ${waited} ms`);
    assert.equal((await call('GET', get)).status, 404, 'nothing stored');
    const again = await call('PUT', put, Buffer.alloc(1000, 1), {
      'content-type': 'application/octet-stream',
    });
    assert.equal(again.status, 201, again.body.toString());
  });
});
