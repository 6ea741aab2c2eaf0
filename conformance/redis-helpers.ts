// A real redis-server (the Debian package scripts/test.sh installs) on a free
// loopback port, for the cluster tests: started, killed with SIGKILL and
// started again on the same port, as an operator's Redis would be.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';

export interface TestRedis {
  port: number;
  url: string;
  /** SIGKILL: no save, connections reset */
  kill9(): Promise<void>;
  /** start again on the same port (after kill9) */
  restart(): Promise<void>;
  /** stop and remove its directory */
  dispose(): Promise<void>;
}

/** A port the kernel just handed out and that nothing listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export async function startRedis(): Promise<TestRedis> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-redis-'));
  const port = await freePort();
  let proc: ChildProcess | undefined;
  const launch = () =>
    new Promise<void>((resolve, reject) => {
      // No persistence: a restart starts empty, the harshest case for the nodes.
      const p = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'yes'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      proc = p;
      live.add(p);
      let out = '';
      const timer = setTimeout(() => reject(new Error(`redis-server not ready:\n${out}`)), 10_000);
      p.stdout!.setEncoding('utf8');
      p.stdout!.on('data', (d: string) => {
        out += d;
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      p.once('exit', (code) => {
        live.delete(p);
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}):\n${out}`));
      });
    });
  const kill9 = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill9,
    restart: launch,
    async dispose() {
      await kill9();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
