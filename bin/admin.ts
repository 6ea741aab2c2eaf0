import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { z } from 'zod';
import { envelopeXml } from '../adapters/xmpp/index.ts';
import {
  Address,
  adminOps,
  BrokerError,
  roomCluster,
  roomService,
  roomSummary,
  type Affiliation,
  type Broker,
} from '../broker/index.ts';
import { backupStore, mqttBackupOf } from './backup.ts';
import { clusterDrain, clusterStatus } from './cluster-admin.ts';

/** Requests the admin socket understands (one JSON object per line). */
export type AdminRequest =
  | { cmd: 'user.add'; username: string; password: string }
  | { cmd: 'user.remove'; username: string }
  | { cmd: 'user.passwd'; username: string; password: string }
  | { cmd: 'user.list' }
  /** an account's roster [XEP-0133 4.8] */
  | { cmd: 'user.roster'; username: string }
  | { cmd: 'status' }
  /** a running node only (bin/reload.ts): read the config file again, apply what can be applied live */
  | { cmd: 'reload' }
  /** a running node only (bin/node.ts): serve the certificate files again */
  | { cmd: 'tls.reload' }
  /** rooms (a running node with groupchat on; docs/groupchat.md) */
  | { cmd: 'room.list' }
  | { cmd: 'room.info'; room: string }
  | {
      cmd: 'room.create';
      room: string;
      owner?: string;
      persistent?: boolean;
      membersOnly?: boolean;
      public?: boolean;
      name?: string;
      description?: string;
    }
  | { cmd: 'room.destroy'; room: string; reason?: string; alternate?: string }
  | {
      cmd: 'room.set-affiliation';
      room: string;
      jid: string;
      affiliation: Affiliation;
      reason?: string;
    }
  | { cmd: 'room.kick'; room: string; nick: string; reason?: string }
  /** the cluster (docs/cluster.md): nodes, sessions, Redis health; drain a node (this one without `node`) */
  | { cmd: 'cluster.status' }
  | { cmd: 'cluster.drain'; node?: string }
  /** is a node answering (the CLI's first question) */
  | { cmd: 'ping' }
  | { cmd: 'user.info'; username: string }
  | { cmd: 'session.list'; user?: string }
  | { cmd: 'session.kick'; jid: string; reason?: string }
  | { cmd: 'announce'; text: string; subject?: string; allUsers?: boolean }
  | { cmd: 'offline.show'; username: string; limit?: number }
  | { cmd: 'archive.purge'; before: number; user?: string }
  /** the retention policy (modules.archive.maxAgeDays / maxPerUser) applied now */
  | { cmd: 'archive.retain'; maxAgeDays: number; maxPerUser: number }
  | { cmd: 'archive.export'; username: string; after?: string; max?: number }
  /** uploaded files: with neither field, what the expiry rule picks; else every file (and slot) matching both */
  | { cmd: 'upload.purge'; before?: number; user?: string }
  /** a consistent copy of the embedded store into a new directory (bin/backup.ts) */
  | { cmd: 'backup'; dir: string };

/** `code`: what went wrong, for programs; `error`: for people. */
export type AdminResponse =
  { ok: true; result?: unknown } | { ok: false; error: string; code?: AdminErrorCode };

/** bad-json: not a JSON object; unknown-command: no such `cmd`; bad-request: a field missing or of the wrong type; too-large: line over the bound; otherwise the broker's condition (conflict, item-not-found…) or internal-error */
export type AdminErrorCode =
  'bad-json' | 'unknown-command' | 'bad-request' | 'too-large' | 'internal-error' | string;

const username = z.string().min(1).max(1023);
const password = z.string().min(1).max(4096);
/** The requests, checked before anything runs: a wrong shape is a typed error, never a TypeError from inside. */
const adminRequestSchema = z.discriminatedUnion('cmd', [
  z.object({ cmd: z.literal('user.add'), username, password }),
  z.object({ cmd: z.literal('user.remove'), username }),
  z.object({ cmd: z.literal('user.passwd'), username, password }),
  z.object({ cmd: z.literal('user.list') }),
  z.object({ cmd: z.literal('user.roster'), username }),
  z.object({ cmd: z.literal('status') }),
  z.object({ cmd: z.literal('reload') }),
  z.object({ cmd: z.literal('tls.reload') }),
  z.object({ cmd: z.literal('room.list') }),
  z.object({ cmd: z.literal('room.info'), room: username }),
  z.object({
    cmd: z.literal('room.create'),
    room: username,
    owner: username.optional(),
    persistent: z.boolean().optional(),
    membersOnly: z.boolean().optional(),
    public: z.boolean().optional(),
    name: z.string().max(4096).optional(),
    description: z.string().max(65536).optional(),
  }),
  z.object({
    cmd: z.literal('room.destroy'),
    room: username,
    reason: z.string().max(4096).optional(),
    alternate: username.optional(),
  }),
  z.object({
    cmd: z.literal('room.set-affiliation'),
    room: username,
    jid: username,
    affiliation: z.enum(['owner', 'admin', 'member', 'outcast', 'none']),
    reason: z.string().max(4096).optional(),
  }),
  z.object({
    cmd: z.literal('room.kick'),
    room: username,
    nick: z.string().min(1).max(1023),
    reason: z.string().max(4096).optional(),
  }),
  z.object({ cmd: z.literal('ping') }),
  z.object({ cmd: z.literal('user.info'), username }),
  z.object({ cmd: z.literal('session.list'), user: username.optional() }),
  z.object({
    cmd: z.literal('session.kick'),
    jid: z.string().min(1).max(3071),
    reason: z.string().max(1024).optional(),
  }),
  z.object({
    cmd: z.literal('announce'),
    text: z
      .string()
      .min(1)
      .max(64 * 1024),
    subject: z.string().max(1024).optional(),
    allUsers: z.boolean().optional(),
  }),
  z.object({
    cmd: z.literal('offline.show'),
    username,
    limit: z.number().int().min(1).max(10_000).optional(),
  }),
  z.object({
    cmd: z.literal('archive.purge'),
    before: z.number().int().min(0),
    user: username.optional(),
  }),
  z.object({
    cmd: z.literal('archive.retain'),
    maxAgeDays: z.number().min(0),
    maxPerUser: z.number().int().min(0),
  }),
  z.object({
    cmd: z.literal('archive.export'),
    username,
    after: z.string().max(64).optional(),
    max: z.number().int().min(1).max(1000).optional(),
  }),
  z.object({
    cmd: z.literal('upload.purge'),
    before: z.number().int().min(0).optional(),
    user: username.optional(),
  }),
  z.object({ cmd: z.literal('backup'), dir: z.string().min(1).max(4096) }),
  z.object({ cmd: z.literal('cluster.status') }),
  z.object({
    cmd: z.literal('cluster.drain'),
    node: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, 'a node id')
      .optional(),
  }),
]);
const COMMANDS = new Set([
  'user.add',
  'user.remove',
  'user.passwd',
  'user.list',
  'user.roster',
  'status',
  'reload',
  'tls.reload',
  'room.list',
  'room.info',
  'room.create',
  'room.destroy',
  'room.set-affiliation',
  'room.kick',
  'ping',
  'user.info',
  'session.list',
  'session.kick',
  'announce',
  'offline.show',
  'archive.purge',
  'archive.retain',
  'archive.export',
  'upload.purge',
  'backup',
  'cluster.status',
  'cluster.drain',
]);

/** Default bound on one request line of the admin socket (config `admin.maxRequestBytes`). */
export const DEFAULT_ADMIN_MAX_REQUEST_BYTES = 64 * 1024;

/** Check one request line: the request, or the error to answer. */
export function parseAdminRequest(
  line: string,
): { ok: true; req: AdminRequest } | { ok: false; error: string; code: AdminErrorCode } {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { ok: false, code: 'bad-json', error: 'bad request: not a JSON object' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return { ok: false, code: 'bad-json', error: 'bad request: not a JSON object' };
  const cmd = (v as { cmd?: unknown }).cmd;
  if (typeof cmd !== 'string' || !COMMANDS.has(cmd)) {
    return {
      ok: false,
      code: 'unknown-command',
      error: `unknown command ${JSON.stringify(String(cmd ?? '')).slice(0, 80)}; known: ${[...COMMANDS].join(', ')}`,
    };
  }
  const r = adminRequestSchema.safeParse(v);
  if (!r.success) {
    const issue = r.error.issues[0];
    return {
      ok: false,
      code: 'bad-request',
      error: `bad request: ${cmd}: ${issue.path.join('.') || '(request)'}: ${issue.message}`,
    };
  }
  return { ok: true, req: r.data };
}

/** Run one admin command against a broker (running node or an opened store); the operations are broker/admin.ts's. */
export async function runAdmin(broker: Broker, req: AdminRequest): Promise<unknown> {
  switch (req.cmd) {
    case 'user.add':
      await adminOps.addUser(broker, req.username, req.password);
      return undefined;
    case 'user.remove':
      await adminOps.removeUser(broker, req.username);
      return undefined;
    case 'user.passwd':
      await adminOps.setPassword(broker, req.username, req.password);
      return undefined;
    case 'user.list':
      return adminOps.listUsers(broker);
    case 'user.roster':
      return adminOps.userRoster(broker, req.username);
    case 'status':
      return adminOps.nodeStatus(broker);
    case 'tls.reload':
    case 'reload':
      throw new BrokerError(
        'service-unavailable',
        'no node is running (the configuration is read at start)',
      );
    case 'cluster.status':
      return clusterStatus(broker);
    case 'cluster.drain':
      return clusterDrain(broker, req.node, undefined);
    case 'ping':
      return { version: broker.version };
    case 'user.info':
      return adminOps.userInfo(broker, req.username);
    case 'session.list':
      return adminOps.listSessions(broker, req.user);
    case 'session.kick':
      return adminOps.kick(broker, req.jid, req.reason);
    case 'announce':
      return adminOps.announce(broker, req.text, req.subject, req.allUsers === true);
    case 'offline.show':
      return adminOps.offlineShow(broker, req.username, req.limit);
    case 'archive.purge':
      return adminOps.purgeArchive(broker, req.before, req.user);
    case 'archive.retain':
      return adminOps.applyRetention(broker, {
        maxAgeDays: req.maxAgeDays,
        maxPerUser: req.maxPerUser,
      });
    case 'archive.export': {
      const user = await adminOps.existingUser(broker, req.username);
      const page = await broker.archive.queryUser(user, {
        ...(req.after !== undefined && { after: req.after }),
        max: req.max ?? 100,
      });
      return {
        user: user.toString(),
        count: page.count,
        complete: page.complete,
        // `id`: the archive id (XEP-0359 stanza-id, what `after` pages by); the client's own id stays in `xml`
        messages: page.messages.map((m) => ({
          ...adminOps.messageView(m.env),
          id: m.id,
          stamp: m.stamp,
          xml: envelopeXml(m.env, m.env.to),
        })),
      };
    }
    case 'upload.purge':
      return adminOps.purgeUploadFiles(broker, req.before, req.user);
    case 'backup': {
      const storage = broker.storage as { backup?: (dir: string) => Promise<{ records: number }> };
      if (!storage.backup)
        throw new BrokerError(
          'feature-not-implemented',
          `the ${broker.storage.name} store has no backup here; use the database's own tools (mongodump)`,
        );
      return backupStore(
        storage.backup.bind(storage),
        req.dir,
        { domain: broker.domain, version: broker.version },
        mqttBackupOf(broker),
      );
    }
    case 'room.list':
    case 'room.info':
    case 'room.create':
    case 'room.destroy':
    case 'room.set-affiliation':
    case 'room.kick':
      return runRoomAdmin(broker, req);
  }
}

/** Room commands, as the operator (who acts with an owner's rights in every room). */
async function runRoomAdmin(
  broker: Broker,
  req: Extract<AdminRequest, { cmd: `room.${string}` }>,
): Promise<unknown> {
  const svc = roomService(broker);
  if (!svc)
    throw new BrokerError(
      'service-unavailable',
      'room commands need a running node with groupchat on (modules.rooms.host)',
    );
  // the whole cluster's rooms, each as its home sees it (docs/cluster.md, "Rooms")
  if (req.cmd === 'room.list')
    return (
      (await roomCluster(broker)?.directory.list(true)) ?? svc.list().map((r) => roomSummary(r))
    );
  const local = svc.roomLocal(req.room.includes('@') ? Address.parse(req.room).local : req.room);
  const bare = (j: string) =>
    (j.includes('@') ? Address.parse(j) : Address.of(j, broker.domain)).bare().toString();
  if (req.cmd === 'room.create') {
    const config: Record<string, unknown> = {};
    for (const k of ['persistent', 'membersOnly', 'public', 'name', 'description'] as const)
      if (req[k] !== undefined) config[k] = req[k];
    return roomSummary(await svc.create(local, req.owner ? bare(req.owner) : '', config));
  }
  const room = svc.get(local);
  if (!room) throw new BrokerError('item-not-found', `no room ${local}@${svc.host}`);
  switch (req.cmd) {
    case 'room.info':
      return {
        ...roomSummary(room),
        config: { ...room.config, password: room.config.password ? '(set)' : '' },
        subject: room.subject,
        affiliations: Object.fromEntries(room.affiliations),
        occupants: [...room.occupants.values()].map((o) => ({
          nick: o.nick,
          user: o.user,
          role: o.role,
          devices: [...o.devices.keys()],
        })),
      };
    case 'room.destroy':
      await svc.destroy(room, 'operator', req.reason, req.alternate);
      return undefined;
    case 'room.set-affiliation':
      await svc.setAffiliation(room, 'operator', bare(req.jid), req.affiliation, req.reason);
      return undefined;
    case 'room.kick':
      svc.setRole(room, 'operator', req.nick, 'none', req.reason);
      return undefined;
  }
}

/** What only a running node can do, beyond the broker's operations (bin/node.ts). */
export interface NodeControl {
  /** serve the certificate files again */
  reloadTls?: () => Promise<unknown>;
  /** read the configuration again and apply what can be applied live (bin/reload.ts) */
  reload?: () => Promise<unknown>;
  /** start draining this node (`parley cluster drain`, bin/node.ts) */
  drain?: () => void;
  maxRequestBytes?: number;
}

/**
 * One checked request → its answer: the dispatch the admin socket and the
 * admin page (`POST /admin/api/command`) share, so both speak the same API
 * with the same errors.
 */
export function adminDispatcher(
  broker: Broker,
  node: NodeControl = {},
): (req: AdminRequest) => Promise<AdminResponse> {
  return async (req) => {
    const special =
      req.cmd === 'tls.reload' ? node.reloadTls : req.cmd === 'reload' ? node.reload : undefined;
    try {
      if (req.cmd === 'cluster.drain')
        return { ok: true, result: await clusterDrain(broker, req.node, node.drain) };
      return { ok: true, result: await (special ? special() : runAdmin(broker, req)) };
    } catch (err) {
      if (err instanceof BrokerError) return { ok: false, error: err.message, code: err.condition };
      // A certificate or a config that does not load is the operator's to read; the old one stays in use.
      if (special)
        return {
          ok: false,
          error: (err as Error)?.message ?? String(err),
          code: req.cmd === 'reload' ? 'reload-failed' : 'tls-reload-failed',
        };
      broker.log.error({ err, cmd: req.cmd }, 'admin command failed');
      return { ok: false, error: `internal error running ${req.cmd}`, code: 'internal-error' };
    }
  };
}

/**
 * What the admin page may run (`POST /admin/api/command`): accounts,
 * sessions, announcements, offline queues, status and rooms. Not what reaches
 * the file system or the whole configuration (backup, restore, archive export
 * and purge, reload): an admin account is an XMPP account, not the node's
 * operating-system user, and those stay with whoever can reach the socket.
 */
export const WEB_COMMANDS: ReadonlySet<AdminRequest['cmd']> = new Set([
  'user.add',
  'user.remove',
  'user.passwd',
  'user.list',
  'user.info',
  'user.roster',
  'session.list',
  'session.kick',
  'announce',
  'offline.show',
  'status',
  'room.list',
  'room.info',
] as const);

/** The admin page's API: one request line, the socket's parsing and dispatch, the page's commands only. */
export function webAdminCommand(
  broker: Broker,
  node: NodeControl = {},
): (body: string) => Promise<AdminResponse> {
  const dispatch = adminDispatcher(broker, node);
  return async (body) => {
    const parsed = parseAdminRequest(body);
    if (!parsed.ok) return { ok: false, error: parsed.error, code: parsed.code };
    if (!WEB_COMMANDS.has(parsed.req.cmd))
      return {
        ok: false,
        code: 'forbidden',
        error: `${parsed.req.cmd} is not offered on the admin page; use the parley command on the server`,
      };
    return dispatch(parsed.req);
  };
}

/**
 * The admin socket: a Unix socket only the node's user can reach. The CLI
 * talks to a running node through it, so the store is never opened twice.
 */
export async function startAdminServer(
  broker: Broker,
  socketPath: string,
  node: NodeControl = {},
): Promise<net.Server> {
  const maxRequestBytes = node.maxRequestBytes ?? DEFAULT_ADMIN_MAX_REQUEST_BYTES;
  const dispatch = adminDispatcher(broker, node);
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
    let closing = false;
    const answer = (res: AdminResponse) => {
      if (!sock.destroyed) sock.write(JSON.stringify(res) + '\n');
    };
    const tooLarge = () => {
      closing = true;
      sock.end(
        JSON.stringify({
          ok: false,
          code: 'too-large',
          error: `request longer than ${maxRequestBytes} bytes`,
        }) + '\n',
      );
    };
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      if (closing) return;
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (Buffer.byteLength(line) > maxRequestBytes) return tooLarge();
        const parsed = parseAdminRequest(line);
        if (!parsed.ok) {
          answer({ ok: false, error: parsed.error, code: parsed.code });
          continue;
        }
        void dispatch(parsed.req).then(answer);
      }
      // A line still unfinished past the bound: answer and close rather than buffer on.
      if (Buffer.byteLength(buf) > maxRequestBytes) tooLarge();
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path: socketPath, readableAll: false, writableAll: false }, () => resolve());
  });
  // Whoever can connect can add users and reset passwords: owner only, whatever the umask was.
  chmodSync(socketPath, 0o600);
  return server;
}

/** Send one request to a running node; undefined when no node listens. */
export function adminRequest(
  socketPath: string,
  req: AdminRequest,
): Promise<AdminResponse | undefined> {
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
        try {
          resolve(JSON.parse(buf.slice(0, nl)));
        } catch {
          reject(new Error('the node answered something that is not JSON'));
        }
      }
    });
  });
}
