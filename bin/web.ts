import { readFileSync } from 'node:fs';
import type { SecureContextOptions } from 'node:tls';
import type { MqttServer } from '../adapters/mqtt/index.ts';
import {
  BOSH_PATH,
  installAdminRoutes,
  installBasicRoutes,
  installChatPage,
  installUploadRoutes,
  WebServer,
} from '../adapters/http/index.ts';
import { PromMetrics } from '../metrics/prometheus.ts';
import { BoshService, type XmppServer } from '../adapters/xmpp/index.ts';
import type { Broker } from '../broker/index.ts';
import { webAdminCommand, type NodeControl } from './admin.ts';
import type { Config } from './config.ts';

/**
 * The HTTP(S) listener and what it carries: XMPP and MQTT over WebSocket,
 * BOSH, health, metrics, host-meta and the pages. Adapters never import each
 * other; this composition root connects them.
 */
export async function startWeb(
  cfg: Config,
  broker: Broker,
  xmpp: XmppServer,
  mqtt: MqttServer | undefined,
  tls: SecureContextOptions,
  /** what the admin page's API may ask of the node beyond the broker (filled in once the node has it) */
  control: NodeControl = {},
): Promise<WebServer> {
  const { bosh, ...webOpts } = cfg.web;
  const web = new WebServer(broker, { ...webOpts, tls });
  const metrics = broker.metrics instanceof PromMetrics ? broker.metrics : undefined;
  installBasicRoutes(web, broker, metrics);
  // The admins are the broker's (bin/node.ts setAdmins, reloadable); the page's API is the admin socket's dispatch.
  if (metrics)
    installAdminRoutes(web, broker, metrics, {
      command: webAdminCommand(broker, control),
      maxCommandBytes: cfg.admin.maxRequestBytes,
    });
  installChatPage(web, broker);
  installUploadRoutes(web, broker, { allowedOrigins: webOpts.allowedOrigins }); // [XEP-0363]
  web.protocol('xmpp', (ws, info) => xmpp.acceptWebSocket(ws, info)); // [RFC7395]
  if (mqtt) web.protocol('mqtt', (ws, info) => mqtt.acceptWebSocket(ws, info));
  const boshService = new BoshService(
    broker,
    xmpp,
    {
      ...bosh,
      maxBodySize: webOpts.maxBodySize,
      allowedOrigins: webOpts.allowedOrigins,
      bodyTimeoutMs: webOpts.bodyTimeoutMs,
    },
    web,
  );
  web.route(BOSH_PATH, (req, res, url) => boshService.handle(req, res, url)); // [XEP-0206]
  web.onStop(() => boshService.close());
  const files = openFilesLimit();
  if (files !== undefined && webOpts.maxSockets > files / 2) {
    broker.log.warn(
      { maxSockets: webOpts.maxSockets, openFilesLimit: files },
      'web.maxSockets is more than half the open-files limit (ulimit -n): idle HTTP clients could leave no descriptors for XMPP, MQTT and the store',
    );
  }
  await web.start();
  return web;
}

/** The process's soft limit on open files (Linux: /proc/self/limits); undefined when unknown or unlimited. */
function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const n = Number(line?.split(/\s{2,}/)[1]);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
