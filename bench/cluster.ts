// Cross-node 1:1 chat on a Redis cluster: 1, 2 and 3 Parley nodes, XMPP
// clients spread over the nodes so that with 2 nodes every pair crosses
// nodes. The store and the cluster each get a redis-server of their own
// (--one-redis: one for both, as before), so that the Redis work of the store
// and of the cluster are counted apart. Reports throughput (closed loop), p99
// at a fixed offered rate, Redis commands per delivered message (INFO
// commandstats deltas, per message sent (archive appends), the chat's own
// logins taken off when --idle measured them), storage calls per message, and
// with --idle N: per login and per idle session (XMPP and MQTT, on node 1),
// Redis commands and node memory (RSS delta / sessions).
// Not a test; prints a Markdown table and one JSON line per run.
//   node --import tsx bench/cluster.ts [--nodes 1,2,3] [--pairs 100] [--duration 5] [--warmup 1] [--rate 1000] [--idle 2000] [--settle 15] [--one-redis]
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../conformance/redis-server.ts';
import { ROOT } from '../conformance/node-args.ts';
import { num, parseFlags, str } from './lib/common.ts';
import { GENERATOR_CORE, ParleyServer, wipe } from './servers.ts';

const f = parseFlags();
const counts_ = str(f, 'nodes', '1,2,3').split(',').map(Number);
const pairs = num(f, 'pairs', 100);
const duration = num(f, 'duration', 5);
const warmup = num(f, 'warmup', 1);
const rate = num(f, 'rate', 1000);
const idle = num(f, 'idle', 0);
const oneRedis = f['one-redis'] === 'true';
// seconds the idle generators wait before and after (memory.reclaimWhenIdle gives a burst's garbage back after ≥ 10 s)
const settle = num(f, 'settle', 15);
const DIR = '/tmp/parley-bench-cluster';

/** One run of bench/xmpp-chat.ts on the generator core; its JSON line. */
function chat(ports: number[], extra: string[]): Promise<Record<string, any>> {
  return generator('xmpp-chat.ts', [
    '--ports',
    ports.join(','),
    '--pairs',
    String(pairs),
    '--warmup',
    String(warmup),
    '--duration',
    String(duration),
    ...extra,
  ]);
}

/** One generator script (bench/<script>) on the generator core; its last JSON line. */
function generator(script: string, extra: string[]): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const args = [
      '-c',
      GENERATOR_CORE,
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'bench', script),
      ...extra,
    ];
    const p = spawn('taskset', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('exit', () => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!));
      } catch (err) {
        reject(err);
      }
    });
  });
}

/** Calls per command (INFO commandstats), to see where Redis' work goes. */
async function commandStats(r: Redis): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const m of (await r.info('commandstats')).matchAll(/cmdstat_([^:]+):calls=(\d+)/g))
    out.set(m[1], Number(m[2]));
  return out;
}

/** Storage calls by operation, summed over the nodes (their /metrics: parley_store_operation_seconds_count). */
async function storeCalls(servers: ParleyServer[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const s of servers) {
    const text = await (await fetch(`http://127.0.0.1:${s.ports.http}/metrics`)).text();
    for (const m of text.matchAll(/^parley_store_operation_seconds_count\{op="([^"]+)"\} (\d+)/gm))
      out.set(m[1], (out.get(m[1]) ?? 0) + Number(m[2]));
  }
  return out;
}

/** CPU time redis-server has used (INFO cpu: user + system, every thread), in µs. */
async function cpuUs(r: Redis): Promise<number> {
  const info = await r.info('cpu');
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return Math.round((get('used_cpu_user') + get('used_cpu_sys')) * 1e6);
}

/**
 * Both servers' command counts (store, cluster), to take deltas of; the
 * servers' CPU time rides along as the pseudo-command `cpu_us`, counted out
 * of the totals.
 */
type Counts = { store: Map<string, number>; cluster: Map<string, number> };

async function counts(store: Redis, cluster: Redis): Promise<Counts> {
  const out = { store: await commandStats(store), cluster: await commandStats(cluster) };
  out.store.set('cpu_us', await cpuUs(store));
  // with one server for both, its CPU is reported once, on the store's side
  if (cluster !== store) out.cluster.set('cpu_us', await cpuUs(cluster));
  return out;
}

/** Per-command deltas since `before`, divided by `units`. */
function rates(before: Map<string, number>, after: Map<string, number>, units: number) {
  const out = new Map<string, number>();
  for (const [k, v] of after) out.set(k, (v - (before.get(k) ?? 0)) / Math.max(1, units));
  // with one server for both, the probe's own INFO calls land on both sides; leave them out
  out.delete('info');
  return out;
}

/**
 * Calls per unit since `before`, per command (≥ 0.01) and their sum; with
 * `minus`, `times` × its per-unit calls are taken off first (the chat run's
 * own logins, at the per-login cost measured apart).
 */
function perUnit(
  before: Map<string, number>,
  after: Map<string, number>,
  units: number,
  minus?: { per: Map<string, number>; times: number },
) {
  const by: Record<string, number> = {};
  let total = 0;
  let cpuUsPer: number | undefined;
  for (const [k, r] of rates(before, after, 1)) {
    const d =
      Math.max(0, r - (minus ? (minus.per.get(k) ?? 0) * minus.times : 0)) / Math.max(1, units);
    if (k === 'cpu_us') {
      cpuUsPer = Math.round(d * 10) / 10;
      continue;
    }
    total += d;
    if (d >= 0.01) by[k] = Math.round(d * 100) / 100;
  }
  return { total: Math.round(total * 100) / 100, cpuUsPer, by };
}

async function main(): Promise<void> {
  wipe(DIR);
  const storeRedis = await startRedis({ appendfsync: 'everysec' });
  const clusterRedis: TestRedis = oneRedis
    ? storeRedis
    : await startRedis({ appendfsync: 'everysec' });
  const probeStore = new Redis(storeRedis.url);
  const probeCluster = new Redis(clusterRedis.url);
  const snap = () => counts(probeStore, probeCluster);
  /** Wait (at most 60 s) until both servers see fewer than 30 commands a second: the sessions a generator left are gone. */
  const quiet = async () => {
    const total = async () => {
      let n = 0;
      for (const m of Object.values(await snap()))
        for (const [k, v] of m) if (k !== 'cpu_us') n += v;
      return n;
    };
    for (let i = 0, last = await total(); i < 60; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      const now = await total();
      if (now - last < 30) return;
      last = now;
    }
  };
  const rows: string[] = [];
  const idleRows: string[] = [];
  try {
    for (const k of counts_) {
      const tag = `k${k}x${Date.now().toString(36)}`;
      const servers: ParleyServer[] = [];
      for (let i = 1; i <= k; i++) {
        // ParleyServer reads PARLEY_BENCH_CONFIG when it is made.
        process.env.PARLEY_BENCH_CONFIG = [
          `nodeId: n${i}`,
          ...(i === 1 && idle > 0 ? [] : ['mqtt: { tcp: null, tls: null }']),
          `storage: { backend: redis, url: "${storeRedis.url}", prefix: "${tag}:" }`,
          `cluster: { redis: "${clusterRedis.url}", prefix: ${tag} }`,
        ].join('\n');
        servers.push(new ParleyServer(path.join(DIR, `${tag}-n${i}`), ROOT, i === 1 && idle > 0));
      }
      delete process.env.PARLEY_BENCH_CONFIG;
      for (const s of servers) await s.start(); // every node on the server core (taskset -c 0)
      await servers[0].seed(Math.max(pairs * 2, idle > 0 ? 1000 : 0));
      const ports = servers.map((s) => s.ports.xmpp!);
      // Logins first (node 1 alone): Redis commands per login and memory per idle session.
      let login: Record<string, any> | undefined;
      let perLogin:
        | { store: Map<string, number>; cluster: Map<string, number>; calls: Map<string, number> }
        | undefined;
      if (idle > 0) {
        const n1 = servers[0];
        const x0 = await snap();
        const y0 = await storeCalls(servers);
        const xi = await generator('xmpp-idle.ts', [
          ...['--port', String(n1.ports.xmpp), '--pid', String(n1.pid)],
          ...['--sessions', String(idle), '--users', '1000', '--settle', String(settle)],
        ]);
        await quiet(); // their logouts are part of the cost
        const x1 = await snap();
        const y1 = await storeCalls(servers);
        const mi = await generator('mqtt-load.ts', [
          ...['--port', String(n1.ports.mqtt), '--auth', '--workload', 'idle'],
          ...['--connections', String(idle), '--pid', String(n1.pid), '--settle', String(settle)],
        ]);
        await quiet();
        const x2 = await snap();
        const y2 = await storeCalls(servers);
        perLogin = {
          store: rates(x0.store, x1.store, xi.sessions),
          cluster: rates(x0.cluster, x1.cluster, xi.sessions),
          calls: rates(y0, y1, xi.sessions),
        };
        login = {
          xmppBytesPerIdleSession: xi.bytesPerSession,
          mqttBytesPerIdleConnection: mi.bytesPerConnection,
          // a login here: connect, SASL, bind, initial presence, idle, and the logout when the generator closes
          xmppLoginStore: perUnit(x0.store, x1.store, xi.sessions),
          xmppLoginCluster: perUnit(x0.cluster, x1.cluster, xi.sessions),
          xmppLoginStoreCalls: perUnit(y0, y1, xi.sessions),
          mqttConnectStore: perUnit(x1.store, x2.store, mi.connections),
          mqttConnectCluster: perUnit(x1.cluster, x2.cluster, mi.connections),
          mqttConnectStoreCalls: perUnit(y1, y2, mi.connections),
        };
        idleRows.push(
          `| ${k} | ${xi.bytesPerSession} | ${mi.bytesPerConnection} | ${login.xmppLoginStore.total} + ${login.xmppLoginCluster.total} | ${login.mqttConnectStore.total} + ${login.mqttConnectCluster.total} |`,
        );
      }
      await quiet();
      const c0 = await snap();
      const o0 = await storeCalls(servers);
      const sat = await chat(ports, ['--mode', 'window', '--window', '4']);
      const c1 = await snap();
      const o1 = await storeCalls(servers);
      const fixed = await chat(ports, ['--mode', 'rate', '--rate', String(rate)]);
      // Per message sent: every 1:1 chat message is appended to the archive once (warm-up included,
      // like the counts); the chat run's 2 × pairs logins (and logouts) are taken off at the cost
      // measured above when --idle ran.
      const sent = Math.max(
        1,
        (o1.get('archive.chat.append') ?? 0) - (o0.get('archive.chat.append') ?? 0),
      );
      const logins = 2 * pairs;
      const off = (per?: Map<string, number>) => (per ? { per, times: logins } : undefined);
      const storeApi = perUnit(o0, o1, sent, off(perLogin?.calls));
      const store = perUnit(c0.store, c1.store, sent, off(perLogin?.store));
      const cluster = perUnit(c0.cluster, c1.cluster, sent, off(perLogin?.cluster));
      const line = {
        nodes: k,
        pairs,
        oneRedis,
        msgsPerSec: sat.msgsPerSec,
        p99AtRate: fixed.latencyMs?.p99,
        rate,
        deliveredAtRate: fixed.msgsPerSec,
        storeCommandsPerMsg: store,
        storeCallsPerMsg: storeApi,
        clusterCommandsPerMsg: cluster,
        messagesSent: sent,
        loginCorrected: perLogin !== undefined,
        ...login,
      };
      console.log(JSON.stringify(line));
      rows.push(
        `| ${k} | ${sat.msgsPerSec} | ${fixed.latencyMs?.p99} (${fixed.msgsPerSec} delivered) | ${store.total} (${store.cpuUsPer} µs) | ${cluster.total} (${cluster.cpuUsPer ?? '—'} µs) | ${storeApi.total} |`,
      );
      for (const s of servers) await s.stop();
    }
  } finally {
    probeStore.disconnect();
    probeCluster.disconnect();
    await storeRedis.dispose();
    if (!oneRedis) await clusterRedis.dispose();
  }
  console.log(
    `\n| nodes | msgs/s (closed loop, window 4, ${pairs} pairs) | p99 ms at ${rate} msgs/s | store Redis commands per message (its CPU) | cluster Redis commands per message (its CPU) | storage calls per message |\n|---|---|---|---|---|---|\n${rows.join('\n')}`,
  );
  if (idleRows.length)
    console.log(
      `\n| nodes | B per idle XMPP session (node 1, ${idle}) | B per idle MQTT connection | Redis commands per XMPP login (store + cluster) | per MQTT connect |\n|---|---|---|---|---|\n${idleRows.join('\n')}`,
    );
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
