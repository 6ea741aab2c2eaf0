// Development aid, not part of the runner: an A/B of two Parley checkouts on
// the XMPP chat, alternating runs (A B A B …) against servers that run side
// by side (only the one being measured is busy), each pinned to the server
// core. Prints, per run, msgs/s and the server's CPU time per message — the
// figure to compare on a machine other work is loading, where a rate moves
// with the neighbours.
//   node --import tsx bench/ab.ts --a /path/to/checkout-a --b /path/to/checkout-b
//     [--rounds 3] [--duration 5] [--warmup 1] [--rate R (fixed offered rate; default: closed loop, window 4)] [--sm N]
// PARLEY_BENCH_CONFIG (YAML appended to each server's config) applies to both.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { num, parseFlags } from './lib/common.ts';
import { GENERATOR_CORE, ParleyServer, wipe } from './servers.ts';

const f = parseFlags();
const here = path.dirname(fileURLToPath(import.meta.url));
const rounds = num(f, 'rounds', 3);
const extra = [
  ...(f.rate ? ['--mode', 'rate', '--rate', f.rate] : ['--mode', 'window', '--window', '4']),
  ...(f.sm ? ['--sm', f.sm] : []),
];
const sides = (['a', 'b'] as const).map((k) => {
  const repo = path.resolve(f[k] ?? path.join(here, '..'));
  const dir = `/tmp/parley-ab-${process.pid}-${k}`;
  wipe(dir);
  return { k, repo, dir, server: new ParleyServer(dir, repo, true) };
});

function chat(s: ParleyServer): Promise<Record<string, any>> {
  const args = [
    '--port',
    String(s.ports.xmpp),
    '--pid',
    String(s.pid),
    '--pairs',
    '100',
    '--warmup',
    String(num(f, 'warmup', 1)),
    '--duration',
    String(num(f, 'duration', 5)),
    ...extra,
  ];
  return new Promise((resolve) => {
    const child = spawn(
      'taskset',
      [
        '-c',
        GENERATOR_CORE,
        process.execPath,
        '--import',
        'tsx',
        path.join(here, 'xmpp-chat.ts'),
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', () => resolve(JSON.parse(out.trim().split('\n').pop() || '{"ok":false}')));
  });
}

try {
  for (const s of sides) {
    await s.server.start();
    await s.server.seed(1000);
  }
  for (let r = 1; r <= rounds; r++) {
    for (const s of r % 2 ? sides : [...sides].reverse()) {
      const x = await chat(s.server);
      console.log(
        JSON.stringify({
          side: s.k,
          round: r,
          msgsPerSec: x.msgsPerSec,
          cpuUsPerMsg: x.serverCpuUsPerMsg,
          cpuShare: x.serverCpuShare,
          syscallsPerMsg: x.serverSyscallsPerMsg,
          p50: x.latencyMs?.p50,
          p99: x.latencyMs?.p99,
          ok: x.ok,
        }),
      );
    }
  }
} finally {
  for (const s of sides) await s.server.stop();
  for (const s of sides) wipe(s.dir);
}
