import type { MqttServer } from '../adapters/mqtt/index.ts';
import { installBasicRoutes, PromMetrics, WebServer } from '../adapters/websocket/index.ts';
import type { XmppServer } from '../adapters/xmpp/index.ts';
import type { Broker } from '../broker/index.ts';
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
  tls: { cert: string; key: string },
): Promise<WebServer> {
  const { bosh: _bosh, ...webOpts } = cfg.web;
  const web = new WebServer(broker, { ...webOpts, tls });
  const metrics = broker.metrics instanceof PromMetrics ? broker.metrics : undefined;
  installBasicRoutes(web, broker, metrics);
  web.protocol('xmpp', (ws, info) => xmpp.acceptWebSocket(ws, info)); // [RFC7395]
  if (mqtt) web.protocol('mqtt', (ws, info) => mqtt.acceptWebSocket(ws, info));
  await web.start();
  return web;
}
