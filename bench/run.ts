// Over 600 lines, most of it data: the table of workloads (one object per workload, expanded by prettier)
// and the loop that alternates servers over them. Next split: the workload table into bench/workloads.ts.
// The benchmark runner. Not part of `npm test`. Start it with bench/run.sh
// (raises `ulimit -n`), e.g.:  bench/run.sh --peers --reps 3
//   --peers            install (apt) and include Prosody, ejabberd and Mosquitto
//   --reps N           runs per workload and server, alternating servers (default 3)
//   --duration S       measured seconds per throughput run (default 8); --warmup S (default 2)
//   --sessions N       idle sessions/connections for the memory workloads (default 10000)
//   --only REGEX       only workloads whose id matches
//   --servers REGEX    only servers whose name matches (e.g. 'parley|^prosody$')
//   --work DIR         scratch directory, wiped first (default /tmp/parley-bench)
//   --profile          afterwards, one CPU-profiled Parley chat run (node --cpu-prof), summarised
//   --no-results-md    do not rewrite bench/RESULTS.md
//   --quiet-wait S     before each run, wait at most S seconds for the machine to be 80 % idle (default 120; 0: do
//                      not wait, for A/B runs on a shared machine that compare server CPU per message, not rates)
//   --occupants N      occupants of the groupchat fan-out workloads (default 1000)
//   --occupants-large N  occupants of muc-fanout-10k-* (default 10000); --rooms R --per-room P: muc-rooms-* (100 × 50)
//   --max-steal P      repeat a throughput or latency run during which the hypervisor stole more than P % of
//                      this VM's CPU time (default 5), at most --steal-retries more times (default 3)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { num, parseFlags, sleep } from './lib/common.ts';
import {
  AedesServer,
  EjabberdServer,
  GENERATOR_CORE,
  makeCert,
  MosquittoServer,
  ParleyServer,
  ProsodyServer,
  wipe,
  type Server,
} from './servers.ts';
import { summarizeProfile } from './profile-summary.ts';
import { mucWorkloads } from './muc-workloads.ts';
import type { Workload } from './workload.ts';

const f = parseFlags();
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
/** --work DIR: where the servers' data go (wiped first); another directory lets two runs share a machine */
const work = f.work ?? '/tmp/parley-bench';
const reps = num(f, 'reps', 3);
const duration = num(f, 'duration', 8);
const warmup = num(f, 'warmup', 2);
const sessions = num(f, 'sessions', 10_000);
const only = f.only ? new RegExp(f.only) : undefined;
const serverFilter = f.servers ? new RegExp(f.servers) : undefined;
const quietWaitMs = num(f, 'quiet-wait', 120) * 1000;
const occupants = num(f, 'occupants', 1000);
/** ejabberd's Erlang node names get the --work directory's name, so two runs' nodes differ */
const nodeSuffix = f.work ? path.basename(f.work).replace(/[^A-Za-z0-9]/g, '') : '';
const USERS = 1000;
const maxSteal = num(f, 'max-steal', 5);
const stealRetries = num(f, 'steal-retries', 3);

const T = () => ['--warmup', String(warmup), '--duration', String(duration)];
const uploadArgs = (s: Server, bytes: number) => [
  '--port',
  String(s.ports.xmpp),
  '--pid',
  String(s.pid),
  '--ca',
  s.caFile ?? '',
  '--size',
  String(bytes),
  '--duration',
  String(duration),
];
const uploadMore = [
  { path: 'downloadMBps', unit: 'MB/s down' },
  { path: 'rssGrowthMiB', unit: 'MiB server RSS growth' },
  { path: 'rssPeakMiB', unit: 'MiB server RSS peak' },
];
const mqttCommon = (s: Server) => [
  '--port',
  String(s.ports.mqtt),
  ...(s.mqttAuth ? ['--auth'] : []),
  '--users',
  String(USERS),
];

const workloads: Workload[] = [
  {
    id: 'xmpp-chat-sat',
    title: 'XMPP 1:1 chat, 100 pairs, closed loop (window 4 per direction)',
    proto: 'xmpp',
    script: 'xmpp-chat.ts',
    metric: 'msgsPerSec',
    unit: 'msgs/s',
    args: (s) => [
      '--port',
      String(s.ports.xmpp),
      '--pairs',
      '100',
      '--mode',
      'window',
      '--window',
      '4',
      '--pid',
      String(s.pid),
      ...T(),
    ],
    target: '≥ 2× ejabberd, ≥ 3× Prosody',
  },
  {
    id: 'xmpp-chat-sm',
    title:
      'XMPP 1:1 chat with stream management, <r/> every 5 stanzas, 100 pairs, closed loop (window 4); compare with xmpp-chat-sat',
    proto: 'xmpp',
    script: 'xmpp-chat.ts',
    metric: 'msgsPerSec',
    unit: 'msgs/s',
    servers: ['parley'],
    args: (s) => [
      '--port',
      String(s.ports.xmpp),
      '--pairs',
      '100',
      '--mode',
      'window',
      '--window',
      '4',
      '--sm',
      '5',
      '--pid',
      String(s.pid),
      ...T(),
    ],
    target: '≥ 85% of xmpp-chat-sat (SM costs ≤ 15 %)',
  },
  {
    id: 'xmpp-chat-2000',
    title: 'XMPP 1:1 chat, 100 pairs, 2,000 msgs/s offered',
    proto: 'xmpp',
    script: 'xmpp-chat.ts',
    metric: 'latencyMs.p99',
    unit: 'ms p99',
    lowerIsBetter: true,
    minReps: 5,
    args: (s) => [
      '--port',
      String(s.ports.xmpp),
      '--pairs',
      '100',
      '--mode',
      'rate',
      '--rate',
      '2000',
      '--pid',
      String(s.pid),
      ...T(),
    ],
    target: 'p99 < 5 ms',
  },
  {
    id: 'xmpp-idle-plain',
    title: `XMPP idle authenticated sessions (${sessions}, plaintext, bound + presence)`,
    proto: 'xmpp',
    script: 'xmpp-idle.ts',
    metric: 'bytesPerSession',
    unit: 'B/session',
    lowerIsBetter: true,
    restart: true,
    args: (s) => [
      '--port',
      String(s.ports.xmpp),
      '--pid',
      String(s.pid),
      '--sessions',
      String(sessions),
      '--users',
      String(USERS),
    ],
    target: '≤ 12 KB (12,288 B)',
  },
  {
    id: 'xmpp-idle-tls',
    title: `XMPP idle authenticated sessions (${sessions}, STARTTLS)`,
    proto: 'xmpp',
    script: 'xmpp-idle.ts',
    metric: 'bytesPerSession',
    unit: 'B/session',
    lowerIsBetter: true,
    restart: true,
    args: (s) => [
      '--port',
      String(s.ports.xmpp),
      '--pid',
      String(s.pid),
      '--sessions',
      String(sessions),
      '--users',
      String(USERS),
      '--tls',
    ],
    target: 'state the figure',
  },
  {
    id: 'xmpp-login-scram',
    title: 'XMPP login rate, SCRAM-SHA-1, plaintext (20 concurrent)',
    proto: 'xmpp',
    script: 'xmpp-login.ts',
    metric: 'loginsPerSec',
    unit: 'logins/s',
    args: (s) => [
      '--port',
      String(s.ports.xmpp),
      '--mech',
      'SCRAM-SHA-1',
      '--users',
      '200',
      ...T(),
    ],
    target: '≥ 2× Prosody',
  },
  {
    id: 'xmpp-login-plain',
    title: 'XMPP login rate, PLAIN over STARTTLS (20 concurrent)',
    proto: 'xmpp',
    script: 'xmpp-login.ts',
    metric: 'loginsPerSec',
    unit: 'logins/s',
    args: (s) => ['--port', String(s.ports.xmpp), '--mech', 'PLAIN', '--users', '200', ...T()],
    target: '≥ 2× Prosody',
  },
  {
    id: 'xmpp-pep-fanout',
    title: 'XMPP PEP publish to 100 contacts with +notify caps (publisher window 4)',
    proto: 'xmpp',
    script: 'xmpp-pep.ts',
    metric: 'notificationsPerSec',
    unit: 'notifications/s',
    servers: ['parley', 'prosody'],
    args: (s) => [
      '--port',
      String(s.ports.xmpp),
      '--workload',
      'fanout',
      '--contacts',
      '100',
      '--window',
      '4',
      ...T(),
    ],
    target: 'state the figure, beside Prosody',
  },
  {
    id: 'xmpp-pep-login-5',
    title:
      'XMPP login rate with 5 PEP nodes to send (caps +notify for all 5; done when the 5 last items arrived), SCRAM-SHA-1, 20 concurrent',
    proto: 'xmpp',
    script: 'xmpp-pep.ts',
    metric: 'loginsPerSec',
    unit: 'logins/s',
    servers: ['parley', 'prosody'],
    args: (s) => [
      '--port',
      String(s.ports.xmpp),
      '--workload',
      'login',
      '--nodes',
      '5',
      '--users',
      '200',
      ...T(),
    ],
    target: 'compare with xmpp-pep-login-0',
  },
  {
    id: 'xmpp-pep-login-0',
    title:
      'XMPP login rate, the same without PEP (plain presence, ping), SCRAM-SHA-1, 20 concurrent',
    proto: 'xmpp',
    script: 'xmpp-pep.ts',
    metric: 'loginsPerSec',
    unit: 'logins/s',
    servers: ['parley', 'prosody'],
    args: (s) => [
      '--port',
      String(s.ports.xmpp),
      '--workload',
      'login',
      '--nodes',
      '0',
      '--users',
      '200',
      ...T(),
    ],
    target: 'reference for xmpp-pep-login-5',
  },
  {
    id: 'mqtt-fanin-10',
    title: 'MQTT QoS 0 fan-in, 10 publishers → 1 subscriber (window 50 each)',
    proto: 'mqtt',
    script: 'mqtt-load.ts',
    metric: 'msgsPerSec',
    unit: 'msgs/s',
    args: (s) => [
      ...mqttCommon(s),
      '--workload',
      'fanin',
      '--publishers',
      '10',
      '--window',
      '50',
      ...T(),
    ],
    target: '≥ 90% of aedes',
  },
  {
    id: 'mqtt-fanin-100',
    title: 'MQTT QoS 0 fan-in, 100 publishers → 1 subscriber (window 5 each)',
    proto: 'mqtt',
    script: 'mqtt-load.ts',
    metric: 'msgsPerSec',
    unit: 'msgs/s',
    args: (s) => [
      ...mqttCommon(s),
      '--workload',
      'fanin',
      '--publishers',
      '100',
      '--window',
      '5',
      ...T(),
    ],
    target: '≥ 90% of aedes',
  },
  {
    id: 'mqtt-qos1-sat',
    title: 'MQTT QoS 1, 100 pairs, closed loop (window 4)',
    proto: 'mqtt',
    script: 'mqtt-load.ts',
    metric: 'msgsPerSec',
    unit: 'msgs/s',
    args: (s) => [
      ...mqttCommon(s),
      '--workload',
      'qos1',
      '--pairs',
      '100',
      '--window',
      '4',
      ...T(),
    ],
    target: '≥ 90% of aedes',
  },
  {
    id: 'mqtt-qos1-2000',
    title: 'MQTT QoS 1, 100 pairs, 2,000 msgs/s offered',
    proto: 'mqtt',
    script: 'mqtt-load.ts',
    metric: 'latencyMs.p99',
    unit: 'ms p99',
    lowerIsBetter: true,
    minReps: 7,
    args: (s) => [
      ...mqttCommon(s),
      '--workload',
      'qos1',
      '--pairs',
      '100',
      '--mode',
      'rate',
      '--rate',
      '2000',
      ...T(),
    ],
    target: '≥ 90% of aedes (latency ≤ aedes/0.9)',
  },
  {
    id: 'mqtt-fanout-1000',
    title: 'MQTT QoS 0 fan-out, 1 publisher → 1,000 subscribers (window 8)',
    proto: 'mqtt',
    script: 'mqtt-load.ts',
    metric: 'msgsPerSec',
    unit: 'deliveries/s',
    args: (s) => [
      ...mqttCommon(s),
      '--workload',
      'fanout',
      '--subscribers',
      '1000',
      '--window',
      '8',
      ...T(),
    ],
    target: '≥ 90% of aedes',
  },
  {
    id: 'mqtt-idle',
    title: `MQTT idle connections (${sessions})`,
    proto: 'mqtt',
    script: 'mqtt-load.ts',
    metric: 'bytesPerConnection',
    unit: 'B/conn',
    lowerIsBetter: true,
    restart: true,
    args: (s) => [
      ...mqttCommon(s),
      '--workload',
      'idle',
      '--connections',
      String(sessions),
      '--pid',
      String(s.pid),
    ],
    target: '≥ 90% of aedes (≤ aedes/0.9)',
  },
  // The reference is plain aedes's QoS 1 pairs, run alternately with the chat (A B A B): this machine's speed
  // moves by up to 3× within minutes, so a ratio to a figure measured at another time says little.
  {
    id: 'mqtt-xmpp-chat',
    title:
      'MQTT device ↔ XMPP user through chat/{user}, 100 pairs, QoS 1, closed loop (window 4); aedes: its QoS 1 pairs (as mqtt-qos1-sat), run alternately',
    proto: 'mqtt',
    script: 'mqtt-load.ts',
    metric: 'msgsPerSec',
    unit: 'msgs/s',
    servers: ['parley', 'aedes'],
    args: (s) =>
      s.name === 'aedes'
        ? [...mqttCommon(s), '--workload', 'qos1', '--pairs', '100', '--window', '4', ...T()]
        : [
            ...mqttCommon(s),
            '--workload',
            'chat',
            '--pairs',
            '100',
            '--window',
            '4',
            '--xmpp-port',
            String(s.ports.xmpp),
            ...T(),
          ],
    target: '≥ 50% of aedes QoS 1 pairs',
  },
  // XEP-0363 against Prosody's mod_http_file_share: the same slot, PUT and GET over HTTPS (RSS shows whether files are streamed)
  {
    id: 'upload-1mb',
    title: 'XEP-0363 upload then download of 1 MB files over HTTPS, one client, back to back',
    proto: 'xmpp',
    script: 'upload.ts',
    metric: 'uploadMBps',
    unit: 'MB/s up',
    servers: ['parley', 'prosody'],
    more: uploadMore,
    args: (s) => uploadArgs(s, 1_000_000),
    target: 'state the figures; RSS flat (streamed)',
  },
  {
    id: 'upload-50mb',
    title: 'XEP-0363 upload then download of 50 MB files over HTTPS, one client, back to back',
    proto: 'xmpp',
    script: 'upload.ts',
    metric: 'uploadMBps',
    unit: 'MB/s up',
    servers: ['parley', 'prosody'],
    more: uploadMore,
    args: (s) => uploadArgs(s, 50_000_000),
    target: 'state the figures; RSS growth far below 50 MB (streamed)',
  },
  // Groupchat (XEP-0045), bench/muc-workloads.ts
  ...mucWorkloads({
    occupants,
    large: num(f, 'occupants-large', 10_000),
    rooms: num(f, 'rooms', 100),
    perRoom: num(f, 'per-room', 50),
    users: USERS,
    timing: T(),
  }),
];

// ---------- machine state ----------

/** Whole-machine CPU time from /proc/stat (user nice system idle iowait irq softirq steal ...), in ticks. */
function cpuTimes(): { idle: number; steal: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const idle = line[3] + line[4];
  return { idle, steal: line[7] ?? 0, total: line.reduce((a, b) => a + b, 0) };
}

/**
 * Percentage of this VM's CPU time the hypervisor gave to someone else
 * between two `cpuTimes()` readings. On this shared host it reaches 20–40 %
 * for minutes at a time; a fixed-rate run then measures the host (p50 from
 * 0.3 to 2 ms, p99 from 2 to 18 ms, for plain aedes as for Parley).
 */
function stealPct(a: ReturnType<typeof cpuTimes>, b: ReturnType<typeof cpuTimes>): number {
  return Math.round(((b.steal - a.steal) / Math.max(1, b.total - a.total)) * 1000) / 10;
}

/**
 * Wait until the machine is at least `want` idle over one second, at most `maxMs`;
 * returns the idle fraction seen.
 * A peer that could not keep up with a fixed-rate run goes on working off its
 * backlog on the server core after the generator stopped: ejabberd, delivering
 * ~260 of 2,000 msgs/s, had ~10,000 messages queued. With a 15 s cap that work
 * ran into the next server's run (idle 0.34 before it, p99 275 ms).
 */
async function waitQuiet(maxMs = quietWaitMs, want = 0.8): Promise<number> {
  if (maxMs <= 0) return NaN;
  const until = Date.now() + maxMs;
  let idle = 0;
  do {
    const a = cpuTimes();
    await sleep(1000);
    const b = cpuTimes();
    idle = (b.idle - a.idle) / Math.max(1, b.total - a.total);
    if (idle >= want) break;
  } while (Date.now() < until);
  return Math.round(idle * 100) / 100;
}

function runGenerator(
  script: string,
  args: string[],
  limitMs: number,
): Promise<Record<string, any>> {
  return new Promise((resolve) => {
    const child = spawn(
      'taskset',
      ['-c', GENERATOR_CORE, process.execPath, '--import', 'tsx', path.join(here, script), ...args],
      { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('exit', () => {
      clearTimeout(t);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line));
      } catch {
        resolve({ ok: false, error: `no result line: ${(err || out).slice(-400)}` });
      }
    });
  });
}

function pick(obj: Record<string, any>, p: string): number {
  let v: any = obj;
  for (const k of p.split('.')) v = v?.[k];
  return typeof v === 'number' ? v : NaN;
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---------- peers ----------

/** Install the peers the selected workloads compare with (all three when any workload names no servers). */
function installPeers(ws: Workload[]): void {
  const wanted = (name: string) => ws.some((w) => !w.servers || w.servers.includes(name));
  const missing = [
    ['prosody', 'prosody'],
    ['ejabberdctl', 'ejabberd'],
    ['mosquitto', 'mosquitto'],
  ].filter(
    ([bin, pkg]) => wanted(pkg) && spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0,
  );
  if (!missing.length) return;
  console.error(`installing ${missing.map((m) => m[1]).join(', ')} from Debian`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (spawnSync('apt-get', ['update'], { stdio: 'inherit', env }).status !== 0)
    throw new Error('apt-get update failed');
  if (
    spawnSync('apt-get', ['install', '-y', ...missing.map((m) => m[1])], { stdio: 'inherit', env })
      .status !== 0
  )
    throw new Error('apt-get install failed');
}

// ---------- main ----------

const log = (...a: unknown[]) =>
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);

async function main(): Promise<void> {
  const peers = f.peers === 'true';
  const selected = workloads.filter((w) => !only || only.test(w.id));
  if (peers) installPeers(selected);
  const help = spawnSync(process.execPath, [path.join(repo, 'bin/parley.js'), '--help'], {
    encoding: 'utf8',
  }).stdout;
  const parleyMqtt = help.includes('--mqtt-port') && existsSync(path.join(repo, 'bin/mqtt.ts'));
  wipe(work);
  mkdirSync(work, { recursive: true, mode: 0o755 });
  const cert = makeCert(`${work}/cert`);
  const servers: Server[] = [new ParleyServer(`${work}/parley`, repo, parleyMqtt)];
  if (peers)
    servers.push(
      new ProsodyServer(`${work}/prosody`, cert),
      new EjabberdServer(`${work}/ejabberd`, cert.bundle, true, nodeSuffix),
    );
  // references without message archiving, for the saturating chat workload only
  if (peers)
    servers.push(
      new ProsodyServer(`${work}/prosody-nomam`, cert, false),
      new EjabberdServer(`${work}/ejabberd-nomam`, cert.bundle, false, nodeSuffix),
    );
  servers.push(new AedesServer(repo));
  if (peers) servers.push(new MosquittoServer(`${work}/mosquitto`));
  if (serverFilter)
    servers.splice(0, servers.length, ...servers.filter((s) => serverFilter.test(s.name)));
  const started = new Set<Server>();
  const stopAll = async () => {
    for (const s of [...started]) {
      await s.stop().catch((e) => log(`stop ${s.name}: ${e.message}`));
      started.delete(s);
    }
  };
  const startSeeded = async (s: Server, seed: boolean) => {
    await s.start();
    started.add(s);
    // u1001: the sender of the 10,000-occupant room (u1…u1000 hold 10 sessions each there)
    if (seed) await s.seed(USERS + 1);
    await sleep(500);
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));

  const runs: {
    workload: string;
    server: string;
    rep: number;
    idleBefore: number;
    steal?: number;
    attempts?: number;
    result: Record<string, any>;
  }[] = [];
  const serversFor = (w: Workload) =>
    servers.filter(
      (s) =>
        s.protocols.includes(w.proto) &&
        (!w.servers || w.servers.includes(s.name)) &&
        (!s.name.endsWith('-nomam') || w.id === 'xmpp-chat-sat'),
    );
  // only the servers some selected workload runs on (--only upload starts Parley and Prosody, not ejabberd)
  const used = servers.filter((s) => selected.some((w) => serversFor(w).includes(s)));
  try {
    // Seed accounts once (data dirs survive restarts), then run the shared-process workloads.
    for (const s of used) await startSeeded(s, s.name !== 'aedes' && s.name !== 'mosquitto');
    for (const w of selected.filter((x) => !x.restart)) {
      for (let rep = 1; rep <= Math.max(reps, w.minReps ?? 0); rep++) {
        for (const s of serversFor(w)) {
          // A run the hypervisor starved (steal above --max-steal) is run again, a few times at most.
          for (let attempt = 1; ; attempt++) {
            const idle = await waitQuiet();
            log(
              `${w.id} ${s.name} #${rep} (idle ${idle}${attempt > 1 ? `, attempt ${attempt}` : ''})`,
            );
            const before = cpuTimes();
            const r = await runGenerator(w.script, w.args(s), (duration + warmup) * 1000 + 120_000);
            const steal = stealPct(before, cpuTimes());
            if (!r.ok) log(`  failed: ${r.error}`);
            else
              log(
                `  ${pick(r, w.metric)} ${w.unit}${r.serverCpuUsPerMsg === undefined ? '' : `, server ${r.serverCpuUsPerMsg} µs CPU/msg`} (steal ${steal} %)`,
              );
            if (r.ok && steal > maxSteal && attempt <= stealRetries) {
              log(`  steal ${steal} % > ${maxSteal} %: not kept, run again`);
              continue;
            }
            runs.push({
              workload: w.id,
              server: s.name,
              rep,
              idleBefore: idle,
              steal,
              attempts: attempt,
              result: r,
            });
            break;
          }
        }
      }
    }
    await stopAll();
    // Memory: a fresh server process for every run, nothing else running.
    for (const w of selected.filter((x) => x.restart)) {
      for (let rep = 1; rep <= reps; rep++) {
        for (const s of serversFor(w)) {
          if (s instanceof ParleyServer) s.inspect = !!w.memProbe;
          try {
            await startSeeded(s, false);
          } catch (e) {
            // one server that would not start (e.g. its data directory still locked) loses this run, not the others'
            log(`  ${s.name} did not start: ${(e as Error).message}`);
            runs.push({
              workload: w.id,
              server: s.name,
              rep,
              idleBefore: NaN,
              result: { ok: false, error: `start: ${(e as Error).message}` },
            });
            await stopAll();
            continue;
          }
          const idle = await waitQuiet();
          log(`${w.id} ${s.name} #${rep} (idle ${idle})`);
          const r = await runGenerator(w.script, w.args(s), (w.limitSec ?? 600) * 1000);
          if (!r.ok) log(`  failed: ${r.error}`);
          else log(`  ${pick(r, w.metric)} ${w.unit}`);
          runs.push({ workload: w.id, server: s.name, rep, idleBefore: idle, result: r });
          await stopAll();
          await sleep(1000);
        }
      }
    }
    let profile: string | undefined;
    if (f.profile === 'true') profile = await profileRun(cert);
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    mkdirSync(path.join(here, 'results'), { recursive: true });
    const meta = machine();
    const summary = summarize(selected, runs, used);
    writeFileSync(
      path.join(here, 'results', `run-${stamp}.json`),
      JSON.stringify(
        { meta, settings: { reps, duration, warmup, sessions, peers }, summary, runs },
        null,
        1,
      ),
    );
    const md = resultsMarkdown(meta, selected, summary, profile);
    writeFileSync(path.join(here, 'results', `run-${stamp}.md`), md);
    if (f['no-results-md'] !== 'true') writeFileSync(path.join(here, 'RESULTS.md'), md);
    console.log(JSON.stringify({ ok: true, results: `bench/results/run-${stamp}.json`, summary }));
  } finally {
    await stopAll();
    // epmd was started by ejabberdctl; with a --work of its own another run may still need it
    if (servers.some((s) => s instanceof EjabberdServer) && !f.work)
      spawnSync('epmd', ['-kill'], { stdio: 'ignore' });
  }
}

/** One Parley run under `node --cpu-prof`; returns the summary text. */
async function profileRun(_cert: unknown): Promise<string> {
  const dir = path.join(work, 'profile');
  mkdirSync(dir, { recursive: true });
  const p = new ParleyServer(`${work}/parley`, repo, false, dir);
  await p.start();
  await sleep(500);
  log('profile: xmpp-chat-sat under --cpu-prof');
  const r = await runGenerator(
    'xmpp-chat.ts',
    ['--port', String(p.ports.xmpp), '--pairs', '100', '--mode', 'window', '--window', '4', ...T()],
    180_000,
  );
  await p.stop();
  // tsx's loader runs in a worker thread with a profile of its own: keep the busiest one (the main thread)
  const busy = (file: string) => {
    const p = JSON.parse(readFileSync(file, 'utf8')) as {
      nodes: { callFrame: { functionName: string }; hitCount?: number }[];
    };
    return p.nodes.reduce(
      (a, n) => a + (n.callFrame.functionName === '(idle)' ? 0 : (n.hitCount ?? 0)),
      0,
    );
  };
  const file = readdirSync(dir)
    .filter((x) => x.endsWith('.cpuprofile'))
    .map((x) => path.join(dir, x))
    .sort((a, b) => busy(b) - busy(a))[0];
  if (!file) return 'no profile written';
  const out = path.join(here, 'results', `profile-${path.basename(file)}`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, readFileSync(file));
  const text = `Profiled run: ${pick(r, 'msgsPerSec')} msgs/s under the profiler; profile ${path.relative(repo, out)}\n\n${summarizeProfile(file, repo)}`;
  log(text);
  return text;
}

function machine(): Record<string, string> {
  const cpu = os.cpus();
  const git = (args: string[]) =>
    spawnSync('git', args, { cwd: repo, encoding: 'utf8' }).stdout.trim();
  const dirty = git(['status', '--porcelain']).length > 0;
  const ver = (cmd: string, args: string[], re: RegExp) =>
    re.exec(spawnSync(cmd, args, { encoding: 'utf8' }).stdout ?? '')?.[1] ?? 'n/a';
  return {
    date: new Date().toISOString(),
    machine: `${os.hostname()}: ${cpu[0]?.model ?? '?'} × ${cpu.length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`,
    node: process.version,
    commit: `${git(['rev-parse', '--short', 'HEAD'])}${dirty ? ' (+ uncommitted changes in the work tree)' : ''}`,
    prosody: ver('dpkg-query', ['-W', '-f=${Version}', 'prosody'], /^(.+)$/),
    ejabberd: ver('dpkg-query', ['-W', '-f=${Version}', 'ejabberd'], /^(.+)$/),
    mosquitto: ver('dpkg-query', ['-W', '-f=${Version}', 'mosquitto'], /^(.+)$/),
    aedes: JSON.parse(readFileSync(path.join(repo, 'node_modules/aedes/package.json'), 'utf8'))
      .version,
  };
}

type Summary = Record<
  string,
  Record<
    string,
    {
      median: number;
      min: number;
      max: number;
      n: number;
      p50?: number;
      p99?: number;
      extra?: string;
      steal?: number;
    }
  >
>;

function summarize(
  ws: Workload[],
  runs: { workload: string; server: string; steal?: number; result: Record<string, any> }[],
  servers: Server[],
): Summary {
  const out: Summary = {};
  for (const w of ws) {
    out[w.id] = {};
    for (const s of servers) {
      const rs = runs.filter((r) => r.workload === w.id && r.server === s.name && r.result.ok);
      if (!rs.length) continue;
      const vals = rs.map((r) => pick(r.result, w.metric));
      out[w.id][s.name] = {
        median: median(vals),
        min: Math.min(...vals),
        max: Math.max(...vals),
        n: vals.length,
        p50: median(rs.map((r) => pick(r.result, 'latencyMs.p50'))),
        p99: median(rs.map((r) => pick(r.result, 'latencyMs.p99'))),
        extra:
          [
            w.metric === 'latencyMs.p99'
              ? `${median(rs.map((r) => pick(r.result, 'msgsPerSec')))} msgs/s delivered`
              : '',
            ...(w.more ?? []).map(
              (m) => `${fmt(median(rs.map((r) => pick(r.result, m.path))))} ${m.unit}`,
            ),
            rs.some((r) => r.result.bytesPerOccupant !== undefined)
              ? `${fmt(median(rs.map((r) => pick(r.result, 'bytesPerOccupant'))))} B/occupant`
              : '',
          ]
            .filter(Boolean)
            .join(', ') || undefined,
        steal: rs.some((r) => r.steal !== undefined)
          ? Math.max(...rs.map((r) => r.steal ?? 0))
          : undefined,
      };
    }
  }
  return out;
}

const fmt = (x: number) =>
  !Number.isFinite(x)
    ? 'n/a'
    : x >= 100
      ? Math.round(x).toLocaleString('en-US')
      : String(Math.round(x * 100) / 100);

function resultsMarkdown(
  meta: Record<string, string>,
  ws: Workload[],
  sum: Summary,
  profile?: string,
): string {
  const L: string[] = [];
  L.push('# Parley benchmark results', '');
  L.push(
    `- Date: ${meta.date}`,
    `- Machine: ${meta.machine}`,
    `- Node: ${meta.node}`,
    `- Parley commit: ${meta.commit}`,
  );
  L.push(
    `- Peers: Prosody ${meta.prosody}, ejabberd ${meta.ejabberd}, Mosquitto ${meta.mosquitto}, aedes ${meta.aedes} (plain)`,
  );
  const more = ws.filter((w) => (w.minReps ?? 0) > reps).map((w) => `${w.minReps} for ${w.id}`);
  L.push(
    `- Settings: ${reps} runs per server and workload${more.length ? ` (${more.join(', ')})` : ''}, alternating servers; ${warmup} s warm-up + ${duration} s measured per throughput run; ${sessions} idle sessions; server on core 0, generator on core 1.`,
  );
  L.push(
    `- A throughput or latency run during which the hypervisor stole more than ${maxSteal} % of the machine's CPU time (/proc/stat) was run again, up to ${stealRetries} times; the last column gives the most stolen in a run that was kept.`,
  );
  L.push(
    '- Each cell: median (min–max). Ratio = Parley median / peer median (for memory and latency, lower is better: a ratio < 1 means Parley is better).',
    '',
  );
  for (const w of ws) {
    const row = sum[w.id] ?? {};
    const parley = row.parley?.median ?? NaN;
    L.push(`## ${w.id}: ${w.title}`, '');
    L.push(`Target: ${w.target ?? '—'}`, '');
    L.push(
      `| server | ${w.unit} median (min–max) | latency p50 / p99 ms | ratio Parley / server | most CPU stolen in a kept run |`,
      '|---|---|---|---|---|',
    );
    for (const [name, v] of Object.entries(row)) {
      const ratio = name === 'parley' ? '—' : fmt(parley / v.median);
      const lat = Number.isFinite(v.p99 ?? NaN) ? `${fmt(v.p50!)} / ${fmt(v.p99!)}` : '—';
      L.push(
        `| ${name} | ${fmt(v.median)} (${fmt(v.min)}–${fmt(v.max)})${v.extra ? `, ${v.extra}` : ''} | ${lat} | ${ratio} | ${v.steal === undefined ? '—' : `${v.steal} %`} |`,
      );
    }
    if (w.id === 'mqtt-xmpp-chat' && sum['mqtt-qos1-sat']?.aedes)
      L.push(
        `| aedes, mqtt-qos1-sat above (not alternated with the chat) | ${fmt(sum['mqtt-qos1-sat'].aedes.median)} | | ${fmt(parley / sum['mqtt-qos1-sat'].aedes.median)} | |`,
      );
    L.push('');
  }
  const notes = path.join(here, 'PROFILE-NOTES.md');
  if (existsSync(notes)) L.push(readFileSync(notes, 'utf8').trim(), '');
  if (profile) L.push('## Profile summary of this run', '', '```', profile.trim(), '```', '');
  return L.join('\n');
}

await main();
