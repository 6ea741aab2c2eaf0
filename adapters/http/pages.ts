import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Broker } from '../../broker/index.ts';
import { WS_PATH } from './routes.ts';
import type { WebServer } from './server.ts';

const STATIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'static');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
};

/**
 * Headers for every page: no framing, no sniffing, scripts only from this
 * origin (no inline script, so injected markup cannot run), WebSockets to
 * this host only.
 */
export function pageHeaders(type: string): http.OutgoingHttpHeaders {
  return {
    'content-type': type,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'content-security-policy':
      "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  };
}

/** A file of adapters/http/static, read once. */
export function staticFile(name: string): { type: string; body: Buffer } {
  return {
    type: TYPES[path.extname(name)] ?? 'application/octet-stream',
    body: readFileSync(path.join(STATIC_DIR, name)),
  };
}

/**
 * Serve `files` (URL name → contents) under `prefix`; `prefix` itself
 * redirects to `prefix/` so that the pages' relative URLs resolve, and
 * `prefix/` serves `index`. Returns false for any other path (404).
 */
export function serveFiles(
  prefix: string,
  index: string,
  files: Record<string, { type: string; body: Buffer }>,
): (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => boolean {
  return (req, res, url) => {
    if (url.pathname === prefix) {
      res.writeHead(301, { location: `${prefix}/${url.search}` }).end();
      return true;
    }
    const name = url.pathname.slice(prefix.length + 1) || index;
    const f = Object.hasOwn(files, name) ? files[name] : undefined;
    if (!f) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res
        .writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' })
        .end('method not allowed\n');
      return true;
    }
    res.writeHead(200, { ...pageHeaders(f.type), 'content-length': f.body.length });
    res.end(req.method === 'HEAD' ? undefined : f.body);
    return true;
  };
}

/** The browser bundle of @xmpp/client, resolved where npm installed it (never copied into the repo). */
function xmppBundle(): Buffer | undefined {
  try {
    return readFileSync(createRequire(import.meta.url).resolve('@xmpp/client/dist/xmpp.min.js'));
  } catch {
    return undefined;
  }
}

/**
 * `/chat/`: a minimal web chat that logs in over XMPP-over-WebSocket
 * [RFC7395] with the real @xmpp/client browser bundle and sends and receives
 * one-to-one messages. The broker's domain completes a bare user name typed
 * in the form.
 */
export function installChatPage(web: WebServer, broker: Broker): void {
  const bundle = xmppBundle();
  if (!bundle) broker.log.warn('@xmpp/client is not installed: the chat page cannot log in');
  const config = Buffer.from(JSON.stringify({ domain: broker.domain, websocketPath: WS_PATH }));
  const files: Record<string, { type: string; body: Buffer }> = {
    'index.html': staticFile('chat.html'),
    'chat.js': staticFile('chat.js'),
    'config.json': { type: TYPES['.json'], body: config },
  };
  // Without the bundle the page still loads and says why it cannot log in.
  if (bundle) files['xmpp.min.js'] = { type: TYPES['.js'], body: bundle };
  web.route('/chat', serveFiles('/chat', 'index.html', files));
}
