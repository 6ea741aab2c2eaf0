// Black-box, issue 20 items 2 and 6 (XMPP part): STARTTLS command injection
// (the CVE-2011-0411 class), TLS handshakes bounded in time and counted
// against the connection limits from accept.
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  NS_CLIENT,
  NS_SASL,
  NS_STREAM,
  NS_TLS,
  RawConn,
  closeAllRaw,
  startNode,
  uniqueName,
  type TestNode,
} from '../helpers.ts';

const PW = 'injection pw';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const HEADER = `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' to='localhost' version='1.0'>`;

/** A bare TCP socket that never starts a TLS handshake; resolves with the ms it took the server to close it. */
function idleSocket(
  port: number,
  after?: (s: net.Socket) => void,
): Promise<{ sock: net.Socket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.on('error', () => {});
    sock.once('connect', () => {
      const t0 = Date.now();
      const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now() - t0)));
      after?.(sock);
      resolve({ sock, closed });
    });
    sock.once('error', reject);
  });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    sleep(ms).then(() => Promise.reject(new Error(`${what}: not within ${ms} ms`))),
  ]);
}

describe('security: XMPP STARTTLS and TLS handshakes', function () {
  this.timeout(30_000);
  let node: TestNode;
  const victim = uniqueName('victim');

  before(async function () {
    this.timeout(60_000);
    node = await startNode({
      config: 'xmpp:\n  tlsHandshakeTimeoutMs: 2500\n  maxConnectionsPerIp: 4\n',
    });
    await node.addUser(victim, PW);
  });
  afterEach(() => closeAllRaw());
  after(async () => {
    closeAllRaw();
    await node?.dispose();
  });

  it('cleartext sent after <starttls/> in the same write is never processed in the TLS session: the stream ends instead [RFC6120 5.4.3.3] (CVE-2011-0411)', async () => {
    const c = await RawConn.connect(node.ports.xmpp);
    await c.openStream();
    // One plaintext write: the request and a command for the session to come.
    const plain = Buffer.from(`\0${victim}\0${PW}`).toString('base64');
    c.send(
      `<starttls xmlns='${NS_TLS}'/><auth xmlns='${NS_SASL}' mechanism='PLAIN'>${plain}</auth>`,
    );
    const got = await c.waitFor(/<proceed[^>]*\/>|<\/stream:stream>/, 5000);
    assert.ok(!got.includes('<proceed'), `the server went on with TLS after an injection: ${got}`);
    assert.match(
      got,
      /<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/,
    );
    await c.waitClosed(5000);
  });

  it('a well-behaved STARTTLS client still logs in', async () => {
    const c = await RawConn.connect(node.ports.xmpp);
    await c.openStream();
    await c.startTls();
    await c.openStream();
    const { outcome } = await c.auth('PLAIN', victim, PW);
    assert.match(outcome, /<success/);
  });

  it('a direct TLS socket that never completes its handshake is closed after tlsHandshakeTimeoutMs [XEP-0368]', async () => {
    const { closed } = await idleSocket(node.ports.xmpps);
    const ms = await within(closed, 8000, 'half-done direct TLS handshake closed');
    assert.ok(ms >= 1500, `closed after ${ms} ms, before the timeout`);
  });

  it('a STARTTLS handshake never started after <proceed/> is closed after tlsHandshakeTimeoutMs [RFC6120 5.4.2.3]', async () => {
    let text = '';
    const { sock, closed } = await idleSocket(node.ports.xmpp, (s) => {
      s.on('data', (d) => (text += d.toString()));
      s.write(HEADER);
    });
    for (let i = 0; i < 50 && !text.includes('</stream:features>'); i++) await sleep(100);
    sock.write(`<starttls xmlns='${NS_TLS}'/>`);
    for (let i = 0; i < 50 && !text.includes('<proceed'); i++) await sleep(100);
    assert.match(text, /<proceed/);
    // No ClientHello: the server must give up well before the 30 s authentication timeout.
    await within(closed, 8000, 'half-done STARTTLS handshake closed');
  });

  it('TLS handshakes in progress count against maxConnectionsPerIp from accept', async () => {
    // Four idle sockets on the direct-TLS port: no handshake done, the per-address limit (4) reached.
    const idle = await Promise.all([0, 1, 2, 3].map(() => idleSocket(node.ports.xmpps)));
    await sleep(100);
    // (the four are closed by the handshake timeout after 2.5 s: both checks come before)
    await assert.rejects(
      within(RawConn.connect(node.ports.xmpps, { directTls: true }), 2000, 'fifth TLS connection'),
      'a fifth connection got through its handshake',
    );
    // The plain port shares the count: a fifth one there gets the stream error in the clear.
    const c = await RawConn.connect(node.ports.xmpp);
    c.send(HEADER);
    await c.waitFor(/<policy-violation/, 2000);
    for (const s of idle) s.sock.destroy();
    await Promise.all(idle.map((s) => s.closed));
    await sleep(200);
    const ok = await RawConn.connect(node.ports.xmpps, { directTls: true });
    assert.ok(!ok.closed);
  });
});
