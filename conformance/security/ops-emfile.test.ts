// Black-box, issue 20 items 1 and 6: running out of file descriptors must not
// take the node down. A node started with a low descriptor limit is sent
// connections until every descriptor is used and new ones cannot be
// accepted (EMFILE): the node stays up, nothing reaches the process guard
// (no uncaught 'error' event from a listener, the store or a timer), and
// once the connections close it serves new logins again.
//
// What a failed accept looks like from inside depends on libuv: on Linux it
// keeps a spare descriptor and, on EMFILE, accepts and closes the pending
// connections itself without telling Node (the clients see a close). Only
// when that trick fails does the listener get an 'error' event, which
// adapters/listen.ts `onError` logs as `accept failed` and counts; this test
// reports those lines when they occur, but cannot force that path.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { closeAllRaw, rawLogin, startNode, uniqueName, type TestNode } from '../helpers.ts';

const BIN = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'bin',
  'parley.js',
);
const PW = 'emfile pw';
const LIMIT = 256;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The node's open descriptors. */
const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

/** Open one TCP connection; resolves once the kernel accepted it (the node may not have). */
function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function mqttPort(node: TestNode): number {
  const line = node.log.find((l) => l.includes('"mqtt listening"'));
  return line ? (JSON.parse(line) as { mqtt: { tcp: number } }).mqtt.tcp : 0;
}

describe('security: file descriptors run out (EMFILE)', function () {
  this.timeout(90_000);
  let node: TestNode;
  const user = uniqueName('fd');
  const held: net.Socket[] = [];

  before(async function () {
    this.timeout(60_000);
    // [RFC6120 13.12] resource exhaustion: a low limit so that a few hundred sockets exhaust it.
    node = await startNode({
      launcher: ['prlimit', `--nofile=${LIMIT}:${LIMIT}`, process.execPath, BIN],
      config: 'mqtt:\n  tcp: { host: 127.0.0.1, port: 0 }\n  tls: null\n',
    });
    await node.addUser(user, PW);
  });
  after(async () => {
    for (const s of held) s.destroy();
    closeAllRaw();
    await node?.dispose();
  });

  it('the XMPP, MQTT and HTTP listeners past the descriptor limit: the node stays up, nothing reaches the process guard, and it serves new logins once descriptors are free', async () => {
    const pid = node.pid!;
    const base = fds(pid);
    assert.ok(base < LIMIT - 50, `the node already holds ${base} of ${LIMIT} descriptors`);
    // Past the limit the kernel still completes handshakes (backlog); the node cannot accept them.
    const ports = [node.ports.xmpp, mqttPort(node), node.ports.http];
    let dropped = 0;
    for (let i = 0; i < LIMIT + 60; i++) {
      const s = await connect(ports[i % 3]).catch(() => undefined);
      if (!s) continue;
      s.on('error', () => {});
      s.once('close', () => dropped++);
      held.push(s);
    }
    let peak = 0;
    for (let end = Date.now() + 15_000; Date.now() < end && peak < LIMIT - 1; await sleep(200))
      peak = Math.max(peak, fds(pid));
    assert.ok(
      peak >= LIMIT - 1,
      `the node reached ${peak} of ${LIMIT} descriptors: the attack did not exhaust them`,
    );
    await sleep(2000); // every listener has had its turn at the exhausted table
    assert.equal(process.kill(pid, 0), true, 'the node is alive');
    const droppedWhileFull = dropped;
    // Released: the node accepts again.
    for (const s of held.splice(0)) s.destroy();
    let health = 0;
    for (let end = Date.now() + 15_000; Date.now() < end && health !== 200; await sleep(250)) {
      health = await fetch(`http://127.0.0.1:${node.ports.http}/healthz`).then(
        (r) => r.status,
        () => 0,
      );
    }
    assert.equal(health, 200, '/healthz after the descriptors came back');
    const c = await rawLogin(node.ports.xmpp, user, PW, 'PLAIN', 'after');
    c.send(`<iq type='get' id='fd-ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await c.waitFor(/id='fd-ping'/, 10_000);
    // Nothing escaped to the process guard, and no uncaught 'error' event was printed.
    const guard = node.log.filter((l) =>
      /the node keeps running|Unhandled 'error' event|EMFILE.*\n?.*at /.test(l),
    );
    assert.deepEqual(guard, [], 'the process guard caught something');
    const accepts = node.log.filter((l) => /"msg":"(accept failed|http listener error)"/.test(l));
    if (accepts.length) assert.match(accepts.join('\n'), /EMFILE|ENFILE/);
    const errors = node.log.filter((l) => /"level":(50|60)/.test(l)).length;
    console.log(
      `      (${droppedWhileFull} client connections closed by the node while exhausted; ${accepts.length} accept failures reported to the listeners; ${errors} error lines)`,
    );
  });
});
