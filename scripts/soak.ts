/**
 * Soak: a node under mixed XMPP (TCP), MQTT and WebSocket traffic with random
 * disconnects and bad input, its RSS and event-loop lag printed every
 * interval, and a verdict at the end: did RSS plateau? (docs/fuzzing.md)
 *
 *   npm run soak -- --minutes 30 [--interval 60] [--clients 6] [--keep]
 *
 * Everything runs on loopback with plain TCP listeners (no TLS, so nothing
 * to trust); the node is bin/parley.js in a child process with a temporary
 * data directory. Exit status 1 when the node died or RSS kept growing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import WebSocket from 'ws';
import { addUsers } from '../conformance/mqtt-helpers.ts';
import { DOMAIN, NS_BIND, NS_SASL, RawConn, ScramClient } from '../conformance/wire.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const rnd = (n: number) => Math.floor(Math.random() * n);

const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const MINUTES = opt('minutes', 30);
const INTERVAL_S = opt('interval', 60);
const CLIENTS = opt('clients', 6);
const KEEP = args.includes('--keep');
/** --skip a,b: leave out bad inputs by name (e.g. one that still crashes the node, to measure the rest) */
const SKIP = new Set(
  (args.includes('--skip') ? args[args.indexOf('--skip') + 1] : '').split(',').filter(Boolean),
);
const PASSWORD = 'soak-password';

const stats = {
  xmppSent: 0,
  xmppLogins: 0,
  mqttSent: 0,
  mqttRecv: 0,
  mqttConnects: 0,
  wsSent: 0,
  wsLogins: 0,
  drops: 0,
  badInputs: 0,
  clientErrors: 0,
};

// ------------------------------------------------------------------ node ----

interface Node {
  proc: ChildProcess;
  dataDir: string;
  xmpp: number;
  http: number;
  mqtt: number;
  /** the node's last log lines (stdout and stderr) */
  tail: string[];
}

async function startNode(): Promise<Node> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'parley-soak-'));
  const cfg = path.join(dataDir, 'parley.yaml');
  // Plain listeners only; small message limits so the oversize inputs are cheap.
  writeFileSync(
    cfg,
    [
      'log: { level: info }',
      'xmpp:',
      '  requireTls: false',
      '  directTls: null',
      '  maxStanzaSize: 65536',
      'mqtt:',
      '  tcp: { host: 127.0.0.1, port: 0 }',
      '  tls: null',
      '  maxPacketSize: 65536',
      'web:',
      '  https: null',
      '  maxMessageSize: 70000',
      '',
    ].join('\n'),
  );
  const proc = spawn(
    process.execPath,
    [
      path.join(ROOT, 'bin', 'parley.js'),
      '--data-dir',
      dataDir,
      '--domain',
      DOMAIN,
      '--config',
      cfg,
      '--host',
      '127.0.0.1',
      '--xmpp-port',
      '0',
      '--mqtt-port',
      '0',
      '--http-port',
      '0',
      'start',
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  process.once('exit', () => proc.kill('SIGKILL'));
  const node: Partial<Node> = { proc, dataDir };
  let buf = '';
  const tail: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`node not ready in 60 s:\n${tail.join('\n')}`)),
      60_000,
    );
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        tail.push(line);
        if (tail.length > 50) tail.shift();
        if (!line.startsWith('{')) continue;
        const rec = JSON.parse(line) as {
          msg?: string;
          mqtt?: { tcp?: number };
          xmpp?: { tcp?: number };
          web?: { http?: number };
        };
        if (rec.msg === 'mqtt listening') node.mqtt = rec.mqtt?.tcp;
        if (rec.msg === 'parley node ready') {
          node.xmpp = rec.xmpp?.tcp;
          node.http = rec.web?.http;
          clearTimeout(t);
          resolve();
        }
      }
    });
    proc.stderr!.on('data', (d: Buffer) =>
      tail.push(
        ...String(d)
          .split('\n')
          .filter(Boolean)
          .map((l) => `stderr: ${l}`),
      ),
    );
    proc.once('exit', (code, sig) =>
      reject(new Error(`node exited (${code ?? sig}) before ready:\n${tail.join('\n')}`)),
    );
  });
  // Keep draining the log; its last lines tell why the node died, if it does.
  proc.stdout!.removeAllListeners('data');
  proc.stdout!.on('data', (d: string) => {
    tail.push(...d.split('\n').filter(Boolean));
    tail.splice(0, Math.max(0, tail.length - 50));
  });
  node.tail = tail;
  return node as Node;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function metricsLag(port: number): Promise<{ p50?: number; p99?: number; max?: number }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        const g = (name: string) => {
          const m = new RegExp(`^parley_nodejs_eventloop_lag_${name}_seconds (\\S+)$`, 'm').exec(
            body,
          );
          return m ? Number(m[1]) * 1000 : undefined;
        };
        resolve(res.statusCode === 200 ? { p50: g('p50'), p99: g('p99'), max: g('max') } : {});
      });
    });
    req.on('error', () => resolve({}));
    req.on('timeout', () => req.destroy());
  });
}

// ------------------------------------------------------------- clients ----

const users = Array.from({ length: CLIENTS }, (_, i) => `soak${i}`);
let running = true;

async function xmppLogin(port: number, user: string, resource: string): Promise<RawConn> {
  const c = await RawConn.connect(port);
  await c.openStream();
  const { outcome } = await c.auth('SCRAM-SHA-1', user, PASSWORD);
  if (!outcome.includes('<success')) throw new Error(`login ${user}: ${outcome}`);
  await c.openStream();
  c.send(
    `<iq type='set' id='b'><bind xmlns='${NS_BIND}'><resource>${resource}</resource></bind></iq><presence/>`,
  );
  await c.waitFor(/<\/iq>/, 10_000);
  stats.xmppLogins++;
  return c;
}

/** One XMPP user: chats at random, and now and then drops the TCP connection without a goodbye. */
async function xmppUser(port: number, i: number): Promise<void> {
  while (running) {
    try {
      const c = await xmppLogin(port, users[i], `x${rnd(1e6)}`);
      const life = Date.now() + 5_000 + rnd(40_000);
      while (running && Date.now() < life && !c.closed) {
        const to = users[rnd(users.length)];
        c.send(
          `<message to='${to}@${DOMAIN}' type='chat' id='m${rnd(1e9)}'><body>${'x'.repeat(rnd(2000))}</body></message>`,
        );
        stats.xmppSent++;
        await sleep(100 + rnd(400));
        c.unread(); // nothing to assert: the traffic is the point
      }
      if (rnd(2)) c.send('</stream:stream>');
      c.destroy();
      stats.drops++;
    } catch {
      stats.clientErrors++;
      await sleep(1000);
    }
  }
}

/** One MQTT device: chat to XMPP users, plain pub/sub, QoS 0/1, persistent sessions, abrupt drops. */
async function mqttUser(port: number, i: number): Promise<void> {
  while (running) {
    let c: MqttClient | undefined;
    try {
      c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
        clientId: `soak-dev-${i}`,
        username: users[i],
        password: PASSWORD,
        clean: rnd(2) === 0,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
      });
      c.on('error', () => {});
      await new Promise<void>((resolve, reject) => {
        c!.once('connect', () => resolve());
        c!.once('close', () => reject(new Error('closed')));
      });
      stats.mqttConnects++;
      c.on('message', () => stats.mqttRecv++);
      await c.subscribeAsync([`chat/${users[i]}`, 'soak/#'], { qos: 1 });
      const life = Date.now() + 5_000 + rnd(40_000);
      while (running && Date.now() < life && c.connected) {
        if (rnd(2))
          c.publish(
            `chat/${users[rnd(users.length)]}`,
            JSON.stringify({ body: `m ${rnd(1e9)} ${'y'.repeat(rnd(1000))}` }),
            { qos: rnd(2) as 0 | 1 },
          );
        else
          c.publish(`soak/${rnd(10)}`, Buffer.alloc(rnd(4000), 0x61), {
            qos: rnd(2) as 0 | 1,
            retain: rnd(20) === 0,
          });
        stats.mqttSent++;
        await sleep(100 + rnd(400));
      }
      c.end(rnd(2) === 0);
      stats.drops++;
    } catch {
      stats.clientErrors++;
      c?.end(true);
      await sleep(1000);
    }
  }
}

/** XMPP over WebSocket [RFC7395]: SCRAM, bind, chat, drop. */
async function wsUser(port: number, i: number): Promise<void> {
  const FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
  while (running) {
    let ws: WebSocket | undefined;
    try {
      ws = new WebSocket(`ws://127.0.0.1:${port}/xmpp-websocket`, ['xmpp']);
      const frames: string[] = [];
      let wake: (() => void) | undefined;
      ws.on('message', (d) => {
        frames.push(d.toString());
        wake?.();
      });
      ws.on('error', () => {});
      const next = async (re: RegExp): Promise<string> => {
        const end = Date.now() + 10_000;
        for (;;) {
          const k = frames.findIndex((f) => re.test(f));
          if (k >= 0) return frames.splice(0, k + 1)[k];
          if (Date.now() > end || ws!.readyState > WebSocket.OPEN) throw new Error(`ws: no ${re}`);
          await new Promise<void>((r) => {
            wake = r;
            setTimeout(r, 200);
          });
        }
      };
      await new Promise<void>((resolve, reject) => {
        ws!.once('open', () => resolve());
        ws!.once('error', reject);
      });
      const open = `<open xmlns='${FRAMING}' to='${DOMAIN}' version='1.0'/>`;
      ws.send(open);
      await next(/<stream:features|<features/);
      const scram = new ScramClient('SHA-1', users[i], PASSWORD);
      ws.send(
        `<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-1'>${Buffer.from(scram.clientFirst()).toString('base64')}</auth>`,
      );
      const ch = /<challenge[^>]*>([^<]*)<\/challenge>/.exec(await next(/<challenge|<failure/));
      if (!ch) throw new Error('ws auth refused');
      ws.send(
        `<response xmlns='${NS_SASL}'>${Buffer.from(scram.clientFinal(Buffer.from(ch[1], 'base64').toString())).toString('base64')}</response>`,
      );
      await next(/<success/);
      ws.send(open);
      await next(/<stream:features|<features/);
      ws.send(`<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='${NS_BIND}'/></iq>`);
      await next(/<\/iq>/);
      stats.wsLogins++;
      const life = Date.now() + 5_000 + rnd(40_000);
      while (running && Date.now() < life && ws.readyState === WebSocket.OPEN) {
        ws.send(
          `<message xmlns='jabber:client' to='${users[rnd(users.length)]}@${DOMAIN}' type='chat'><body>w ${'z'.repeat(rnd(1500))}</body></message>`,
        );
        stats.wsSent++;
        frames.length = 0;
        await sleep(150 + rnd(400));
      }
      if (rnd(2)) ws.close();
      else ws.terminate();
      stats.drops++;
    } catch {
      stats.clientErrors++;
      ws?.terminate();
      await sleep(1000);
    }
  }
}

/** Bad input on every listener: each must end that one connection (or answer 400), never the node. */
const BAD: { name: string; proto: 'xmpp' | 'mqtt' | 'http' | 'ws'; data: () => Buffer | string }[] =
  [
    {
      name: 'xmpp-unclosed',
      proto: 'xmpp',
      data: () =>
        `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}' version='1.0'><message><body></message>`,
    },
    {
      name: 'xmpp-comment',
      proto: 'xmpp',
      data: () =>
        `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}' version='1.0'><!-- c --><message/>`,
    },
    {
      name: 'xmpp-oversize',
      proto: 'xmpp',
      data: () =>
        `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}' version='1.0'><message><body>${'a'.repeat(100_000)}</body></message>`,
    },
    {
      name: 'xmpp-bad-utf8',
      proto: 'xmpp',
      data: () =>
        Buffer.concat([
          Buffer.from(
            `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}'><message><body>`,
          ),
          Buffer.from([0xc0, 0x80, 0xff]),
        ]),
    },
    {
      name: 'xmpp-deep',
      proto: 'xmpp',
      data: () =>
        `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}'>${'<a>'.repeat(200)}`,
    },
    {
      name: 'mqtt-length-5-bytes',
      proto: 'mqtt',
      data: () => Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]),
    }, // five remaining-length bytes
    {
      name: 'mqtt-publish-before-connect',
      proto: 'mqtt',
      data: () => Buffer.from([0x30, 0xff, 0xff, 0x7f]),
    }, // PUBLISH announcing 2 MB before CONNECT
    {
      name: 'mqtt-topic-bad-utf8',
      proto: 'mqtt',
      data: () =>
        Buffer.from([
          0x10, 0x0c, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 0x3c, 0, 0, 0x30, 0x05, 0, 3, 0x61,
          0xc0, 0x80,
        ]),
    }, // topic with bad UTF-8
    { name: 'mqtt-http', proto: 'mqtt', data: () => Buffer.from('GET / HTTP/1.1\r\n\r\n') },
    {
      name: 'http-host-space',
      proto: 'http',
      data: () => 'GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n',
    },
    {
      name: 'http-bosh-partial',
      proto: 'http',
      data: () =>
        `POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20\r\n\r\n<body xmlns='x'><a>`,
    },
    { name: 'http-garbage', proto: 'http', data: () => 'GARBAGE\r\n\r\n' },
    { name: 'ws-not-xml', proto: 'ws', data: () => 'not xml at all <<<' },
    {
      name: 'ws-raw-stream-header',
      proto: 'ws',
      data: () =>
        `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}'>`,
    },
    {
      name: 'ws-oversize',
      proto: 'ws',
      data: () =>
        `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='${DOMAIN}' version='1.0'/><message>${'b'.repeat(80_000)}</message>`,
    },
  ];

/** The last bad inputs sent, to name the likely culprit when the node dies. */
const recentBad: string[] = [];

async function badInput(node: Node, kinds: typeof BAD): Promise<void> {
  while (running && kinds.length) {
    const b = kinds[rnd(kinds.length)];
    recentBad.push(`${new Date().toISOString()} ${b.name}`);
    if (recentBad.length > 6) recentBad.shift();
    try {
      if (b.proto === 'ws') {
        const ws = new WebSocket(`ws://127.0.0.1:${node.http}/xmpp-websocket`, ['xmpp']);
        ws.on('error', () => {});
        await new Promise<void>((r) => {
          ws.once('open', () => {
            ws.send(b.data());
            setTimeout(r, 500);
          });
          ws.once('close', () => r());
          setTimeout(r, 5000);
        });
        ws.terminate();
      } else {
        const port = b.proto === 'xmpp' ? node.xmpp : b.proto === 'mqtt' ? node.mqtt : node.http;
        const s = net.connect({ host: '127.0.0.1', port });
        s.on('error', () => {});
        s.on('data', () => {});
        await new Promise<void>((r) => {
          s.once('connect', () => {
            s.write(b.data());
            setTimeout(r, 500);
          });
          s.once('close', () => r());
          setTimeout(r, 5000);
        });
        s.destroy();
      }
      stats.badInputs++;
    } catch {
      stats.clientErrors++;
    }
    await sleep(200 + rnd(800));
  }
}

/** Round trip of an XEP-0199 ping on a fresh connection: the lag another user would feel. */
async function pingMs(node: Node): Promise<number> {
  const c = await xmppLogin(node.xmpp, users[0], 'probe');
  try {
    const t0 = performance.now();
    c.send(`<iq type='get' id='ping1' to='${DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await c.waitFor(/id=['"]ping1['"]/, 30_000);
    return performance.now() - t0;
  } finally {
    c.destroy();
  }
}

// ----------------------------------------------------------------- main ----

async function main(): Promise<void> {
  console.log(
    `soak: ${MINUTES} min, ${CLIENTS} users each on XMPP/TCP, MQTT and WebSocket, bad input on every listener, a sample every ${INTERVAL_S} s`,
  );
  const node = await startNode();
  const pid = node.proc.pid!;
  let died: string | undefined;
  node.proc.once('exit', (code, sig) => (died = `node exited (${code ?? sig}) during the soak`));
  await addUsers(
    { dataDir: node.dataDir } as never,
    Object.fromEntries(users.map((u) => [u, PASSWORD])),
  );
  console.log(
    `node pid ${pid}: xmpp ${node.xmpp}, mqtt ${node.mqtt}, http ${node.http}; data ${node.dataDir}; RSS at start ${rssMiB(pid).toFixed(0)} MiB`,
  );

  const workers: Promise<void>[] = [];
  for (let i = 0; i < CLIENTS; i++)
    workers.push(xmppUser(node.xmpp, i), mqttUser(node.mqtt, i), wsUser(node.http, i));
  const kinds = BAD.filter((b) => !SKIP.has(b.name));
  workers.push(badInput(node, kinds), badInput(node, kinds));

  const samples: number[] = [];
  const t0 = Date.now();
  const end = t0 + MINUTES * 60_000;
  console.log(
    '\n| min | RSS MiB | max RSS MiB (interval) | lag p50 / p99 / max ms (/metrics) | ping ms | xmpp sent | mqtt sent / recv | ws sent | logins x/m/w | drops | bad inputs | client errors |',
  );
  console.log(
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  while (Date.now() < end && !died) {
    // RSS every 5 s for the verdict; one printed row per interval.
    const rowEnd = Math.min(end, Date.now() + INTERVAL_S * 1000);
    let maxRss = 0;
    while (Date.now() < rowEnd && !died) {
      await sleep(Math.min(5000, Math.max(0, rowEnd - Date.now())));
      if (died) break;
      const r = rssMiB(pid);
      samples.push(r);
      maxRss = Math.max(maxRss, r);
    }
    if (died) break;
    const lag = await metricsLag(node.http);
    let ping = NaN;
    try {
      ping = await pingMs(node);
    } catch {
      stats.clientErrors++;
    }
    const f = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(1));
    console.log(
      `| ${((Date.now() - t0) / 60_000).toFixed(1)} | ${rssMiB(pid).toFixed(0)} | ${maxRss.toFixed(0)} | ${f(lag.p50)} / ${f(lag.p99)} / ${f(lag.max)} | ${f(ping)} | ${stats.xmppSent} | ${stats.mqttSent} / ${stats.mqttRecv} | ${stats.wsSent} | ${stats.xmppLogins}/${stats.mqttConnects}/${stats.wsLogins} | ${stats.drops} | ${stats.badInputs} | ${stats.clientErrors} |`,
    );
  }
  running = false;
  await Promise.race([Promise.all(workers), sleep(15_000)]);

  // Verdict: the last third's peak within 20 % (+ 32 MiB of slack for GC timing) of the first third's.
  const third = Math.max(1, Math.floor(samples.length / 3));
  const firstMax = Math.max(...samples.slice(0, third));
  const lastMax = Math.max(...samples.slice(-third));
  const bound = firstMax * 1.2 + 32;
  const plateau = lastMax <= bound;
  console.log(
    `\nRSS samples: ${samples.length} (every 5 s); first third max ${firstMax.toFixed(0)} MiB, last third max ${lastMax.toFixed(0)} MiB, bound ${bound.toFixed(0)} MiB`,
  );
  if (died) {
    console.log(
      `VERDICT: FAIL: ${died}\nlast bad inputs sent:\n  ${recentBad.join('\n  ')}\nlast node log lines:\n  ${node.tail.slice(-12).join('\n  ')}`,
    );
  } else
    console.log(
      `VERDICT: ${plateau ? 'PASS: RSS plateaued' : 'FAIL: RSS kept growing'}; node alive after ${stats.badInputs} bad inputs and ${stats.drops} dropped connections`,
    );

  const failed = !!died || !plateau; // decided before our own SIGTERM, whose exit would set `died`
  node.proc.kill('SIGTERM');
  await Promise.race([new Promise((r) => node.proc.once('exit', r)), sleep(10_000)]);
  if (!KEEP) rmSync(node.dataDir, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
}

await main();
