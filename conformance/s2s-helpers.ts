// Federation tests: in-process nodes for domains other than the suite's, each
// with a certificate from the per-run test CA for its own domain, and an s2s
// listener on loopback. Peers reach each other through static routes
// (`s2s.routes`), so no DNS is involved; certificates are checked for the
// domain as in production.
import { Broker } from '../broker/broker.ts';
import offline from '../broker/modules/offline.ts';
import { LocalBus, LocalRegistry } from '../cluster/local.ts';
import { MemoryStorage } from '../storage/memory.ts';
import {
  xmppModules,
  XmppServer,
  S2sService,
  type S2sOptions,
  type XmppOptions,
} from '../adapters/xmpp/index.ts';
import { silentLogger } from '../broker/index.ts';
import { issueLeaf, testPki } from './test-ca.ts';
import { xmppClient, type TestClient } from './helpers.ts';

export interface FederatedNode {
  domain: string;
  broker: Broker;
  xmpp: XmppServer;
  s2s: S2sService;
  /** the c2s STARTTLS port */
  port: number;
  /** the s2s listener's port */
  s2sPort: number;
  login(username: string, resource?: string): Promise<TestClient>;
  stop(): Promise<void>;
}

/** A node for `domain` with users (password "pw"), s2s on; `routes` can be filled in later. */
export async function startFederatedNode(
  domain: string,
  users: string[],
  s2s: Partial<S2sOptions> = {},
  xmppOptions: Partial<XmppOptions> = {},
): Promise<FederatedNode> {
  const { ca } = await testPki();
  const leaf = await issueLeaf(ca, domain);
  const broker = new Broker({
    domain,
    storage: new MemoryStorage(),
    cluster: { bus: new LocalBus(`node-${domain}`), registry: new LocalRegistry() },
    modules: [
      { def: offline },
      ...xmppModules.filter((def) => def.enabledByDefault !== false).map((def) => ({ def })),
    ],
    limits: { scramIterations: 64, authFreeFailures: 1000 },
    log: process.env.S2S_DEBUG ? undefined : silentLogger,
  });
  await broker.start();
  for (const u of users) await broker.accounts.create(u, 'pw');
  const xmpp = new XmppServer(broker, {
    tcp: { host: '127.0.0.1', port: 0 },
    directTls: null,
    tls: { cert: leaf.cert, key: leaf.key },
    keepaliveIntervalMs: 0,
    ...xmppOptions,
  });
  await xmpp.start();
  const service = new S2sService(
    broker,
    { enabled: true, listen: { host: '127.0.0.1', port: 0 }, ca: ca.cert, routes: {}, ...s2s },
    xmpp.opts,
    () => xmpp.opts.tls,
  );
  await service.start();
  return {
    domain,
    broker,
    xmpp,
    s2s: service,
    port: xmpp.ports.tcp!,
    s2sPort: service.port!,
    login: (username, resource) =>
      xmppClient({ port: xmpp.ports.tcp!, username, password: 'pw', domain, resource }),
    async stop() {
      await service.stop();
      await xmpp.stop();
      await broker.stop();
    },
  };
}

/** Each node routes the other's domain to its s2s listener. */
export function link(a: FederatedNode, b: FederatedNode): void {
  a.s2s.opts.routes[b.domain] = `127.0.0.1:${b.s2sPort}`;
  b.s2s.opts.routes[a.domain] = `127.0.0.1:${a.s2sPort}`;
}
