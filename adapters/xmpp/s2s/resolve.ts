import { promises as dns } from 'node:dns';

export interface Target {
  host: string;
  port: number;
}

/** The default s2s port when DNS has no SRV record [RFC6120 3.2.2]. */
export const S2S_PORT = 5269;

/**
 * Where to connect for a domain [RFC6120 3.2]: a static route when the
 * operator set one, else the `_xmpp-server._tcp` SRV records by priority
 * (weight ignored beyond ordering), else the domain itself on 5269. A single
 * SRV target "." means the domain offers no s2s service [RFC2782].
 */
export async function resolveTargets(
  domain: string,
  routes: Record<string, string>,
): Promise<Target[]> {
  const route = routes[domain];
  if (route) {
    const i = route.lastIndexOf(':');
    return [{ host: route.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(route.slice(i + 1)) }];
  }
  try {
    const srv = await dns.resolveSrv(`_xmpp-server._tcp.${domain}`);
    if (srv.length === 1 && srv[0].name === '.') return [];
    if (srv.length > 0)
      return srv
        .sort((a, b) => a.priority - b.priority || b.weight - a.weight)
        .map((r) => ({ host: r.name, port: r.port }));
  } catch {
    // no SRV record (ENOTFOUND, ENODATA): the fallback below [RFC6120 3.2.2]
  }
  return [{ host: domain, port: S2S_PORT }];
}
