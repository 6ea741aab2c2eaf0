import { existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Broker } from '../broker/index.ts';

/** Requests the admin socket understands (one JSON object per line). */
export type AdminRequest =
  | { cmd: 'user.add'; username: string; password: string }
  | { cmd: 'user.remove'; username: string }
  | { cmd: 'user.passwd'; username: string; password: string }
  | { cmd: 'user.list' }
  | { cmd: 'status' };

export type AdminResponse = { ok: true; result?: unknown } | { ok: false; error: string };

/** Run one admin command against a broker (running node or an opened store). */
export async function runAdmin(broker: Broker, req: AdminRequest): Promise<unknown> {
  switch (req.cmd) {
    case 'user.add':
      await broker.accounts.create(req.username, req.password);
      return undefined;
    case 'user.remove':
      // The one removal path: sessions, rosters, requests, queues and the account:removed hook.
      await broker.removeAccount(req.username);
      return undefined;
    case 'user.passwd':
      await broker.accounts.setPassword(req.username, req.password);
      return undefined;
    case 'user.list':
      return broker.accounts.list();
    case 'status':
      return {
        domain: broker.domain,
        node: broker.cluster.bus.nodeId,
        sessions: broker.sessions.count(),
        uptimeMs: Date.now() - broker.startedAt,
        metrics: broker.metrics.snapshot(),
      };
  }
}

/**
 * The admin socket: a Unix socket only the node's user can reach. The CLI
 * talks to a running node through it, so the store is never opened twice.
 */
export async function startAdminServer(broker: Broker, socketPath: string): Promise<net.Server> {
  if (existsSync(socketPath)) {
    // A stale socket from a killed node: remove it if nobody answers.
    const alive = await new Promise<boolean>((resolve) => {
      const c = net.connect(socketPath);
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (alive) throw new Error(`another node is running (admin socket ${socketPath} answers)`);
    unlinkSync(socketPath);
  }
  const server = net.createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > 1_000_000) return sock.destroy();
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let req: AdminRequest;
        try {
          req = JSON.parse(line);
        } catch {
          sock.write(JSON.stringify({ ok: false, error: 'bad request' }) + '\n');
          continue;
        }
        runAdmin(broker, req).then(
          (result) => sock.write(JSON.stringify({ ok: true, result }) + '\n'),
          (err: Error) => sock.write(JSON.stringify({ ok: false, error: err.message }) + '\n'),
        );
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path: socketPath, readableAll: false, writableAll: false }, () => resolve());
  });
  return server;
}

/** Send one request to a running node; undefined when no node listens. */
export function adminRequest(socketPath: string, req: AdminRequest): Promise<AdminResponse | undefined> {
  return new Promise((resolve, reject) => {
    if (!existsSync(socketPath)) return resolve(undefined);
    const sock = net.connect(socketPath);
    let buf = '';
    sock.setEncoding('utf8');
    sock.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(undefined);
      else reject(err);
    });
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl !== -1) {
        sock.end();
        resolve(JSON.parse(buf.slice(0, nl)));
      }
    });
  });
}
