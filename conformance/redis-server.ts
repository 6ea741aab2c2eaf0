// A real redis-server for tests (the Debian package, /usr/bin/redis-server):
// started on a free loopback port with a temporary directory, AOF on, no
// config file, and stopped (with its directory removed) by the test; and a
// TCP proxy in front of it that cuts the link (reset or blackhole). Shared by
// the storage contract suite, the conformance tests of a node on the Redis
// store and the cluster tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

/** A running redis-server. */
export interface TestRedis {
  port: number;
  /** `redis://127.0.0.1:<port>` */
  url: string;
  /** its working directory (AOF and RDB files) */
  dir: string;
  readonly pid: number | undefined;
  /** SIGKILL: no shutdown, nothing saved beyond what the AOF already holds */
  kill9(): Promise<void>;
  /** start again on the same directory and port (after kill9 or stop) */
  restart(): Promise<void>;
  /** SHUTDOWN (saves), waits for the exit */
  stop(): Promise<void>;
  /** stop and remove the directory */
  dispose(): Promise<void>;
}

export interface TestRedisOptions {
  /** appendfsync: `always` or `everysec` (default everysec, as in production) */
  appendfsync?: 'always' | 'everysec' | 'no';
}

const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/** A port free on 127.0.0.1 at the time of the call (the kernel's choice). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function waitExit(p: ChildProcess, ms: number): Promise<boolean> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** Starts redis-server on 127.0.0.1 and resolves once it accepts connections. */
export async function startRedis(opts: TestRedisOptions = {}): Promise<TestRedis> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-redis-'));
  let port = await freePort();
  let proc: ChildProcess | undefined;

  const launch = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const args = [
        '--bind',
        '127.0.0.1',
        '--port',
        String(port),
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        opts.appendfsync ?? 'everysec',
        '--save',
        '',
        '--protected-mode',
        'yes',
        '--daemonize',
        'no',
        '--loglevel',
        'warning',
      ];
      const p = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      proc = p;
      live.add(p);
      let out = '';
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(
        () => finish(new Error(`redis-server not ready in time:\n${out}`)),
        15_000,
      );
      p.stdout!.on('data', (d) => (out += d));
      p.stderr!.on('data', (d) => (out += d));
      p.once('error', (err) => finish(err));
      p.once('exit', (code, signal) => {
        live.delete(p);
        finish(new Error(`redis-server exited (code ${code}, signal ${signal}):\n${out}`));
      });
      // Ready when a PING is answered.
      const probe = () => {
        if (done) return;
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => s.write('PING\r\n'));
        s.once('data', (d) => {
          s.destroy();
          if (String(d).startsWith('+PONG')) finish();
          else setTimeout(probe, 20);
        });
        s.once('error', () => {
          s.destroy();
          setTimeout(probe, 20);
        });
      };
      probe();
    });

  const stop = async (): Promise<void> => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGTERM'); // redis-server shuts down cleanly on SIGTERM (fsyncs the AOF)
    if (!(await waitExit(p, 10_000))) {
      p.kill('SIGKILL');
      await waitExit(p, 5_000);
    }
  };

  try {
    await launch();
  } catch {
    // The port was taken between the probe and the bind: once more on another.
    port = await freePort();
    await launch();
  }
  return {
    get port() {
      return port;
    },
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    dir,
    get pid() {
      return proc?.pid;
    },
    async kill9() {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      p.kill('SIGKILL');
      await waitExit(p, 5_000);
    },
    async restart() {
      await stop();
      await launch();
    },
    stop,
    async dispose() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every key of the server matching a glob pattern (SCAN), for assertions and clean-up. */
export async function redisKeys(url: string, pattern: string): Promise<string[]> {
  const client = new Redis(url);
  try {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      found.push(...keys);
    } while (cursor !== '0');
    return found;
  } finally {
    await client.quit();
  }
}

/**
 * A TCP proxy on a free loopback port in front of `target`, standing for the
 * network between one node and Redis. `cut('reset')` resets every
 * connection and each new one at once (a peer that answers with RST);
 * `cut('blackhole')` forwards nothing either way and holds new connections,
 * as a silent partition does: TCP keeps the bytes and delivers them, late,
 * when the link heals (`heal()`), and no side sees an error meanwhile.
 */
export class CutProxy {
  private server!: net.Server;
  private mode: 'open' | 'reset' | 'blackhole' = 'open';
  private readonly pairs = new Set<{ flush(): void; reset(): void }>();
  port = 0;

  constructor(private readonly target: { port: number }) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = net.createServer((client) => this.accept(client));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  cut(how: 'reset' | 'blackhole'): void {
    this.mode = how;
    if (how === 'reset') for (const p of [...this.pairs]) p.reset();
  }

  heal(): void {
    this.mode = 'open';
    for (const p of [...this.pairs]) p.flush();
  }

  async stop(): Promise<void> {
    for (const p of [...this.pairs]) p.reset();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private accept(client: net.Socket): void {
    if (this.mode === 'reset') return void client.resetAndDestroy();
    let upstream: net.Socket | undefined;
    const held: { toUp: Buffer[]; toClient: Buffer[] } = { toUp: [], toClient: [] };
    const pair = {
      flush: () => {
        if (!upstream) connect();
        for (const b of held.toUp.splice(0)) upstream!.write(b);
        for (const b of held.toClient.splice(0)) client.write(b);
      },
      reset: () => {
        this.pairs.delete(pair);
        client.resetAndDestroy();
        upstream?.resetAndDestroy();
      },
    };
    const connect = () => {
      const up = (upstream = net.connect(this.target.port, '127.0.0.1'));
      up.on('data', (d) => (this.mode === 'open' ? client.write(d) : held.toClient.push(d)));
      up.on('error', () => {});
      up.on('close', () => {
        this.pairs.delete(pair);
        client.destroy();
      });
    };
    this.pairs.add(pair);
    client.on('data', (d) => (this.mode === 'open' ? upstream!.write(d) : held.toUp.push(d)));
    client.on('error', () => {});
    client.on('close', () => {
      this.pairs.delete(pair);
      upstream?.destroy();
    });
    if (this.mode === 'open') connect();
  }
}
