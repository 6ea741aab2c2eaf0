import type http from 'node:http';
import { escapeXML } from '@xmpp/xml';
import type { Broker } from '../../broker/index.ts';
import type { PromMetrics } from './metrics.ts';
import type { WebServer } from './server.ts';

/** Paths the XMPP endpoints live at; announced by host-meta [XEP-0156]. */
export const WS_PATH = '/xmpp-websocket';
export const BOSH_PATH = '/http-bind';

function endpoints(req: http.IncomingMessage, url: URL): { ws: string; bosh: string } {
  const host = req.headers.host ?? url.host;
  const secure = url.protocol === 'https:';
  return { ws: `${secure ? 'wss' : 'ws'}://${host}${WS_PATH}`, bosh: `${secure ? 'https' : 'http'}://${host}${BOSH_PATH}` };
}

/** /healthz, /readyz, /metrics and XEP-0156 host-meta. */
export function installBasicRoutes(web: WebServer, broker: Broker, metrics: PromMetrics | undefined): void {
  // Process up: for liveness probes.
  web.route('/healthz', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  });
  // Store (and cluster) reachable: for load balancers.
  web.route('/readyz', async (_req, res) => {
    let store = false;
    try {
      store = await broker.storage.ping();
    } catch {
      store = false;
    }
    let cluster = false;
    try {
      cluster = (await broker.cluster.bus.members()).includes(broker.cluster.bus.nodeId);
    } catch {
      cluster = false;
    }
    const ok = store && cluster;
    res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready: ok, store, cluster }) + '\n');
  });
  if (metrics) {
    web.route('/metrics', async (_req, res) => {
      const { contentType, body } = await metrics.render();
      res.writeHead(200, { 'content-type': contentType }).end(body);
    });
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
    res.writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': '*' }).end(
      JSON.stringify({
        links: [
          { rel: 'urn:xmpp:alt-connections:websocket', href: e.ws },
          { rel: 'urn:xmpp:alt-connections:xbosh', href: e.bosh },
        ],
      }),
    );
  });
}
