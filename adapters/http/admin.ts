import type http from 'node:http';
import {
  adminOps,
  isAdmin,
  setAdmins,
  type Broker,
  type MetricsReport,
  type RateSample,
  type RateSource,
} from '../../broker/index.ts';
import { serveFiles, staticFile } from './pages.ts';
import { isSecure, type WebServer } from './server.ts';

export interface AdminOptions {
  /** accounts allowed on the admin page: `alice` or `alice@domain`; absent: the broker's list (config `admins`, bin/node.ts setAdmins) */
  admins?: string[];
  /**
   * The admin API (`POST /admin/api/command`): one request of the admin
   * socket's protocol as JSON text → its answer. bin/ passes the socket's own
   * dispatch, limited to the commands the page may run (docs/web.md).
   */
  command?: (
    body: string,
  ) => Promise<{ ok: boolean; error?: string; code?: string; result?: unknown }>;
  /** the longest command body read (config admin.maxRequestBytes) */
  maxCommandBytes?: number;
}

/** One second of `RateSampler` data, as the page charts it. */
/** What `/admin/api/stats` answers; admin.js draws it. */
export interface AdminStats {
  node: { domain: string; startedAt: number; now: number };
  /** open connections by protocol, and by protocol and transport (parley_connections) */
  connections: {
    total: number;
    byProtocol: Record<string, number>;
    byTransport: { protocol: string; transport: string; count: number }[];
  };
  sessions: number;
  /** bare JIDs with at least one session on this node, sorted */
  users: string[];
  /** one sample per second, oldest first: messages, stanzas in/out per second, connections */
  rates: { intervalMs: number; samples: RateSample[] };
  /** newest first */
  errors: MetricsReport['recentErrors'];
}

const REALM = 'Basic realm="Parley admin", charset="UTF-8"';

const isLoopback = (ip: string) => ip === '::1' || /^(::ffff:)?127\./.test(ip);

const localpart = adminOps.accountLocalpart;

/** `Authorization: Basic base64(user:password)` [RFC7617 2]; undefined when absent or malformed. */
function basicCredentials(
  req: http.IncomingMessage,
): { user: string; password: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!m) return undefined;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':'); // the user-id cannot contain a colon; the password can
  if (colon <= 0) return undefined;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

function deny(res: http.ServerResponse, status: 401 | 403 | 503, text: string): void {
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
  };
  if (status === 401) headers['www-authenticate'] = REALM;
  res.writeHead(status, headers).end(`${text}\n`);
}

/**
 * Admin login: HTTP Basic with the account's own password, for accounts
 * listed in `admins`. Wrong credentials count against the address in the
 * shared login throttle, like a failed SASL or MQTT login. Over plain HTTP
 * only loopback clients are asked for a password (no password in clear
 * across a network; the same rule as PLAIN only over TLS).
 */
async function authorize(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  broker: Broker,
): Promise<boolean> {
  const ip = req.socket.remoteAddress ?? 'unknown';
  // TLS is the socket's: an `https://` request target on the plain port is still plain [RFC9112 3.2.2]
  if (!isSecure(req) && !isLoopback(ip)) {
    deny(res, 403, 'the admin page needs HTTPS from this address');
    return false;
  }
  const cred = basicCredentials(req);
  if (!cred) {
    deny(res, 401, 'admin login required');
    return false;
  }
  const local = localpart(broker, cred.user);
  // The shared login throttle: a slot per address and account, or 503 unchecked when too many checks are in flight.
  const attempt = broker.throttle.begin(ip, local ?? cred.user);
  if (!attempt) {
    deny(res, 503, 'too many login attempts in progress');
    return false;
  }
  let ok: boolean;
  try {
    ok = local !== undefined && (await broker.accounts.verifyPassword(local, cred.password));
  } catch (err) {
    attempt.cancel();
    throw err;
  }
  if (!ok || local === undefined) {
    broker.log.info({ ip, user: cred.user.slice(0, 64) }, 'admin login failed');
    broker.metrics.error('admin', 'failed login');
    await attempt.fail(); // answered more and more slowly, the slot held meanwhile
    deny(res, 401, 'wrong user name or password');
    return false;
  }
  attempt.succeed();
  if (!isAdmin(broker, local)) {
    deny(
      res,
      403,
      adminOps.adminCount(broker)
        ? `${local} is not an admin`
        : 'no admin accounts are configured (config key admins)',
    );
    return false;
  }
  return true;
}

/**
 * `/admin/`: a page for people (live connections, message rates over the
 * last ten minutes, users online, recent errors) and `/admin/api/stats`, the
 * JSON it polls. Everything under /admin needs an admin login. The numbers
 * come from the registry /metrics renders, sampled once a second.
 */
export function installAdminRoutes(
  web: WebServer,
  broker: Broker,
  metrics: MetricsReport,
  opts: AdminOptions = {},
): RateSource {
  if (opts.admins) setAdmins(broker, opts.admins);
  const sampler = metrics.rateSource();
  sampler.start();
  web.onStop(() => sampler.stop());

  const page = serveFiles('/admin', 'index.html', {
    'index.html': staticFile('admin.html'),
    'admin.js': staticFile('admin.js'),
  });
  web.route('/admin', async (req, res, url) => {
    // `/admin` only redirects to `/admin/`, so that the login is asked for there.
    if (url.pathname !== '/admin' && !(await authorize(req, res, broker))) return true;
    if (url.pathname === '/admin/api/stats') {
      const body = JSON.stringify(await stats(broker, metrics, sampler));
      res
        .writeHead(200, {
          'content-type': 'application/json',
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
        })
        .end(body);
      return true;
    }
    if (url.pathname === '/admin/api/command') {
      await command(req, res, url, opts);
      return true;
    }
    return page(req, res, url);
  });
  return sampler;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res
    .writeHead(status, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    })
    .end(JSON.stringify(body));
}

/** The host[:port] of an Origin header; undefined for `null` or anything that is not a URL. */
function originHost(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

/** HTTP status of an admin API error code; the body says the rest (`{ok:false, code, error}`). */
const STATUS: Record<string, number> = {
  'bad-json': 400,
  'bad-request': 400,
  'jid-malformed': 400,
  'not-acceptable': 400,
  'unknown-command': 400,
  'too-large': 413,
  forbidden: 403,
  'not-allowed': 403,
  'item-not-found': 404,
  conflict: 409,
  'service-unavailable': 503,
};

/**
 * `POST /admin/api/command`: the admin socket's request as JSON. Only JSON
 * (a cross-site form cannot send it without a preflight this server never
 * allows) and, when the browser says where it comes from, only from this
 * origin [RFC6454 7.3]: an admin's browser cannot be made to run a command
 * by another site.
 */
async function command(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  opts: AdminOptions,
): Promise<void> {
  if (!opts.command)
    return json(res, 404, {
      ok: false,
      code: 'unknown-command',
      error: 'no admin API on this listener',
    });
  if (req.method !== 'POST') {
    res.setHeader('allow', 'POST');
    return json(res, 405, { ok: false, code: 'bad-request', error: 'POST a JSON command' });
  }
  if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? ''))
    return json(res, 415, {
      ok: false,
      code: 'bad-request',
      error: 'content-type must be application/json',
    });
  // The host only, not the scheme: behind a proxy that ends TLS the page is https:// and this socket plain.
  const origin = req.headers.origin;
  if (origin !== undefined && originHost(origin) !== url.host)
    return json(res, 403, { ok: false, code: 'forbidden', error: 'cross-origin command refused' });
  const max = opts.maxCommandBytes ?? 64 * 1024;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > max)
      return json(res, 413, {
        ok: false,
        code: 'too-large',
        error: `request longer than ${max} bytes`,
      });
    chunks.push(c);
  }
  const answer = await opts.command(Buffer.concat(chunks).toString('utf8'));
  json(res, answer.ok ? 200 : (STATUS[answer.code ?? ''] ?? 500), answer);
}

async function stats(
  broker: Broker,
  metrics: MetricsReport,
  sampler: RateSource,
): Promise<AdminStats> {
  const byTransport = await metrics.connectionsByTransport();
  const byProtocol = metrics.connectionsByProtocol();
  return {
    node: { domain: broker.domain, startedAt: broker.startedAt, now: Date.now() },
    connections: {
      total: Object.values(byProtocol).reduce((a, b) => a + b, 0),
      byProtocol,
      byTransport,
    },
    sessions: broker.sessions.count(),
    users: broker.sessions.users().sort(),
    rates: { intervalMs: 1000, samples: sampler.samples() },
    errors: [...metrics.recentErrors].reverse(),
  };
}
