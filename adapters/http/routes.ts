import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { escapeXML } from '@xmpp/xml';
import type { Broker, MetricsReport } from '../../broker/index.ts';
import { isSecure, type Listener, type RouteHandler, type WebServer } from './server.ts';

/** Paths the XMPP endpoints live at; announced by host-meta [XEP-0156]. */
export const WS_PATH = '/xmpp-websocket';
export const BOSH_PATH = '/http-bind';

function endpoints(req: http.IncomingMessage, url: URL): { ws: string; bosh: string } {
  const host = url.host; // the checked Host header (server.ts requestUrl)
  const secure = isSecure(req); // the socket's, never the request's scheme
  return {
    ws: `${secure ? 'wss' : 'ws'}://${host}${WS_PATH}`,
    bosh: `${secure ? 'https' : 'http'}://${host}${BOSH_PATH}`,
  };
}

/** SHA-256 of a token, so that comparing two never depends on their lengths or contents' timing. */
const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** `Authorization: Bearer <token>` [RFC6750 2.1] equal to `token`, compared in constant time. */
function bearerOk(req: http.IncomingMessage, token: string): boolean {
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(req.headers.authorization ?? '');
  return m !== null && timingSafeEqual(digest(m[1]), digest(token));
}

/** /healthz, /readyz, /metrics and XEP-0156 host-meta. */
export function installBasicRoutes(
  web: WebServer,
  broker: Broker,
  metrics: MetricsReport | undefined,
): void {
  // Health goes with /metrics when that has a listener of its own, for probes that only reach it.
  const both = (prefix: string, handler: RouteHandler) => {
    web.route(prefix, handler);
    if (web.opts.metrics) web.route(prefix, handler, 'metrics');
  };
  // Process up: for liveness probes.
  both('/healthz', (_req, res) => {
    res
      .writeHead(200, { 'content-type': 'text/plain', 'x-parley-version': broker.version })
      .end('ok\n');
  });
  // Store (and cluster) reachable: for load balancers.
  both('/readyz', async (_req, res) => {
    let store = false;
    try {
      store = await broker.storage.ping();
    } catch {
      store = false;
    }
    let cluster = false;
    try {
      // A draining node is not ready: the load balancer sends it nothing new (docs/cluster.md).
      cluster =
        !broker.cluster.bus.draining &&
        (await broker.cluster.bus.members()).includes(broker.cluster.bus.nodeId);
    } catch {
      cluster = false;
    }
    const ok = store && cluster;
    res
      .writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
      .end(JSON.stringify({ ready: ok, store, cluster }) + '\n');
  });
  if (metrics) {
    const token = web.opts.metricsToken;
    const where: Listener = web.opts.metrics ? 'metrics' : 'main';
    web.route(
      '/metrics',
      async (req, res) => {
        if (token !== undefined && !bearerOk(req, token)) {
          // [RFC6750 3] no or wrong token
          res
            .writeHead(401, {
              'content-type': 'text/plain',
              'www-authenticate': 'Bearer realm="parley metrics"',
              'cache-control': 'no-store',
            })
            .end('bearer token required\n');
          return;
        }
        const { contentType, body } = await metrics.render();
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' }).end(body);
      },
      where,
    );
  }
  // [XEP-0156 3] connection discovery, XRD and JSON
  web.route('/.well-known/host-meta', (req, res, url) => {
    const e = endpoints(req, url);
    res
      .writeHead(200, { 'content-type': 'application/xrd+xml', 'access-control-allow-origin': '*' })
      .end(
        `<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n` +
          `  <Link rel='urn:xmpp:alt-connections:websocket' href='${escapeXML(e.ws)}'/>\n` +
          `  <Link rel='urn:xmpp:alt-connections:xbosh' href='${escapeXML(e.bosh)}'/>\n</XRD>\n`,
      );
  });
  web.route('/.well-known/host-meta.json', (req, res, url) => {
    const e = endpoints(req, url);
    res
      .writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': '*' })
      .end(
        JSON.stringify({
          links: [
            { rel: 'urn:xmpp:alt-connections:websocket', href: e.ws },
            { rel: 'urn:xmpp:alt-connections:xbosh', href: e.bosh },
          ],
        }),
      );
  });
}
