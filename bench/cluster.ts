// Cross-node 1:1 chat on a Redis cluster: 1, 2 and 3 Parley nodes sharing one
// redis-server (store and cluster), XMPP clients spread over the nodes so that
// with 2 nodes every pair crosses nodes. Reports throughput (closed loop),
// p99 at a fixed offered rate, and Redis commands per delivered message.
// Not a test; prints a Markdown table and one JSON line per run.
//   node --import tsx bench/cluster.ts [--nodes 1,2,3] [--pairs 100] [--duration 5] [--warmup 1] [--rate 1000]
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Redis } from 'ioredis';
import { startRedis } from '../conformance/redis-server.ts';
import { ROOT } from '../conformance/node-args.ts';
import { num, parseFlags, str } from './lib/common.ts';
import { GENERATOR_CORE, ParleyServer, wipe } from './servers.ts';

const f = parseFlags();
const counts = str(f, 'nodes', '1,2,3').split(',').map(Number);
const pairs = num(f, 'pairs', 100);
const duration = num(f, 'duration', 5);
const warmup = num(f, 'warmup', 1);
const rate = num(f, 'rate', 1000);
const DIR = '/tmp/parley-bench-cluster';

/** One run of bench/xmpp-chat.ts on the generator core; its JSON line. */
function chat(ports: number[], extra: string[]): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const args = [
      '-c',
      GENERATOR_CORE,
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'bench/xmpp-chat.ts'),
      '--ports',
      ports.join(','),
      '--pairs',
      String(pairs),
      '--warmup',
      String(warmup),
      '--duration',
      String(duration),
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

async function commands(r: Redis): Promise<number> {
  const info = await r.info('stats');
  return Number(/total_commands_processed:(\d+)/.exec(info)![1]);
}

/** Calls per command (INFO commandstats), to see where Redis' work goes. */
async function commandStats(r: Redis): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const m of (await r.info('commandstats')).matchAll(/cmdstat_([^:]+):calls=(\d+)/g))
    out.set(m[1], Number(m[2]));
  return out;
}

async function main(): Promise<void> {
  wipe(DIR);
  const redis = await startRedis({ appendfsync: 'everysec' });
  const probe = new Redis(redis.url);
  const rows: string[] = [];
  try {
    for (const k of counts) {
      const tag = `k${k}x${Date.now().toString(36)}`;
      const servers: ParleyServer[] = [];
      for (let i = 1; i <= k; i++) {
        // ParleyServer reads PARLEY_BENCH_CONFIG when it is made.
        process.env.PARLEY_BENCH_CONFIG = [
          `nodeId: n${i}`,
          'mqtt: { tcp: null, tls: null }',
          `storage: { backend: redis, url: "${redis.url}", prefix: "${tag}:" }`,
          `cluster: { redis: "${redis.url}", prefix: ${tag} }`,
        ].join('\n');
        servers.push(new ParleyServer(path.join(DIR, `${tag}-n${i}`), ROOT, false));
      }
      delete process.env.PARLEY_BENCH_CONFIG;
      for (const s of servers) await s.start(); // every node on the server core (taskset -c 0)
      await servers[0].seed(pairs * 2);
      const ports = servers.map((s) => s.ports.xmpp!);
      const c0 = await commands(probe);
      const s0 = await commandStats(probe);
      const sat = await chat(ports, ['--mode', 'window', '--window', '4']);
      const c1 = await commands(probe);
      const s1 = await commandStats(probe);
      const per = [...s1]
        .map(
          ([k, v]) =>
            [
              k,
              Math.round(((v - (s0.get(k) ?? 0)) / Math.max(1, sat.received)) * 100) / 100,
            ] as const,
        )
        .filter(([, v]) => v >= 0.05)
        .sort((x, y) => y[1] - x[1]);
      const fixed = await chat(ports, ['--mode', 'rate', '--rate', String(rate)]);
      const perMsg = (c1 - c0) / Math.max(1, sat.received ?? 1);
      const line = {
        nodes: k,
        pairs,
        msgsPerSec: sat.msgsPerSec,
        p99AtRate: fixed.latencyMs?.p99,
        rate,
        redisCommandsPerMsg: Math.round(perMsg * 100) / 100,
        perCommand: Object.fromEntries(per),
      };
      console.log(JSON.stringify(line));
      rows.push(
        `| ${k} | ${sat.msgsPerSec} | ${fixed.latencyMs?.p99} | ${line.redisCommandsPerMsg} |`,
      );
      for (const s of servers) await s.stop();
    }
  } finally {
    probe.disconnect();
    await redis.dispose();
  }
  console.log(
    `\n| nodes | msgs/s (closed loop, window 4, ${pairs} pairs) | p99 ms at ${rate} msgs/s | Redis commands per message (warmup included) |\n|---|---|---|---|\n${rows.join('\n')}`,
  );
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
