import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { xml, type Element } from '@xmpp/xml';
import { BrokerError, defineModule } from '../../../broker/index.ts';
import type { IqRequest } from '../hooks.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_EXTDISCO } from '../ns.ts';
import { discoFeature } from './basics.ts';

/**
 * XEP-0215 External Service Discovery (docs/calls.md): the STUN and TURN
 * servers clients need for Jingle audio/video calls through NAT, with
 * time-limited TURN credentials in the scheme coturn checks with
 * `use-auth-secret` (the "TURN REST API"): username `<expiry>:<user>`,
 * password base64(HMAC-SHA1(shared secret, username)). The TURN server
 * needs nothing from Parley but the shared secret.
 */

/** One configured service, parsed from an RFC 7064 / RFC 7065 URI. */
export interface ExternalService {
  type: 'stun' | 'stuns' | 'turn' | 'turns';
  host: string;
  port: number;
  transport?: 'udp' | 'tcp';
}

const DEFAULT_PORT = { stun: 3478, turn: 3478, stuns: 5349, turns: 5349 } as const;

/**
 * `stun:host[:port]`, `turn:host[:port][?transport=udp|tcp]`, `turns:…`,
 * `stuns:…` [RFC7064 3.1, RFC7065 3.1]; host a DNS name, IPv4 or `[IPv6]`.
 */
export function parseServiceUri(uri: string): ExternalService {
  const m =
    /^(stuns?|turns?):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(?::(\d{1,5}))?(?:\?transport=(udp|tcp))?$/.exec(
      uri.trim(),
    );
  if (!m)
    throw new Error(
      `'${uri}': expected stun:host[:port], turn:host[:port][?transport=udp|tcp], turns:… or stuns:…`,
    );
  const type = m[1] as ExternalService['type'];
  const port = m[3] ? Number(m[3]) : DEFAULT_PORT[type];
  if (port < 1 || port > 65535) throw new Error(`'${uri}': port out of range`);
  if (m[4] && type.startsWith('stun'))
    throw new Error(`'${uri}': transport is a TURN parameter [RFC7065 3.1]`);
  const host = m[2].startsWith('[') ? m[2].slice(1, -1) : m[2];
  return {
    type,
    host,
    port,
    transport:
      (m[4] as 'udp' | 'tcp' | undefined) ??
      (type.endsWith('s') ? 'tcp' : type === 'turn' ? 'udp' : undefined),
  };
}

/** coturn `use-auth-secret` credentials for `user`, valid until `expiresAt` (ms). */
export function turnCredentials(
  secret: string,
  user: string,
  expiresAt: number,
): { username: string; password: string } {
  const username = `${Math.floor(expiresAt / 1000)}:${user}`;
  return { username, password: createHmac('sha1', secret).update(username).digest('base64') };
}

export default defineModule({
  name: 'external-services',
  description:
    'External Service Discovery (XEP-0215): STUN/TURN servers with time-limited TURN credentials for calls',
  options: {
    services: {
      type: 'strings',
      default: [],
      doc: 'STUN/TURN services as URIs: `stun:host[:port]`, `turn:host[:port][?transport=udp]` (or `tcp`), `turns:host[:port]`; empty: the feature is not offered',
    },
    secret: {
      type: 'string',
      default: '',
      doc: "coturn's `static-auth-secret`: TURN services get credentials from it (prefer `secretFile`); empty with no `secretFile`: TURN listed without credentials",
    },
    secretFile: {
      type: 'string',
      default: '',
      doc: 'file holding the shared secret (first line), e.g. readable only by the node; wins over `secret`',
    },
    credentialTtlSeconds: {
      type: 'number',
      default: 86400,
      min: 60,
      max: 30 * 86400,
      doc: 'how long TURN credentials are valid (the `expires` attribute)',
    },
  },
  specs: [
    {
      spec: 'XEP-0215',
      status: 'partial',
      note: 'services (with type filter) and credentials queries; TURN credentials in the coturn use-auth-secret scheme, included in the services answer (restricted) as Prosody does; no service pushes (the list changes with the config); docs/calls.md',
    },
  ],
  setup(ctx) {
    const { broker, options: o } = ctx;
    const services = o.services.map((uri, i) => {
      try {
        return parseServiceUri(uri);
      } catch (err) {
        throw new Error(`modules.${ctx.name}.services[${i}]: ${(err as Error).message}`);
      }
    });
    if (!services.length) return;
    const secret = o.secretFile
      ? readFileSync(o.secretFile, 'utf8').split('\n')[0].trim()
      : o.secret;
    if (o.secretFile && !secret)
      throw new Error(`modules.${ctx.name}.secretFile: ${o.secretFile} is empty`);
    const iq = iqRegistry(broker);

    const render = (s: ExternalService, req: IqRequest): Element => {
      const attrs: Record<string, string> = { type: s.type, host: s.host, port: String(s.port) };
      if (s.transport) attrs.transport = s.transport;
      if (secret && s.type.startsWith('turn')) {
        // [XEP-0215] restricted: the service needs credentials, given here with their expiry
        const expires = Date.now() + o.credentialTtlSeconds * 1000;
        const cred = turnCredentials(secret, req.from.bare().toString(), expires);
        Object.assign(attrs, {
          username: cred.username,
          password: cred.password,
          restricted: '1',
          expires: new Date(Math.floor(expires / 1000) * 1000).toISOString().replace('.000Z', 'Z'),
        });
      }
      return xml('service', attrs);
    };
    const local = (req: IqRequest) => {
      if (!req.to.isDomain) return false; // an account's address: not ours to answer
      // only this server's accounts get the list and credentials [XEP-0215]
      if (req.from.domain !== broker.domain || !req.from.local) throw new BrokerError('forbidden');
      return true;
    };

    // [XEP-0215] all services, or those of one type
    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_EXTDISCO, name: 'services' }, (req) => {
        if (!local(req)) return undefined;
        const type = req.child.attrs.type as string | undefined;
        const q = xml('services', { xmlns: NS_EXTDISCO, ...(type ? { type } : {}) });
        for (const s of services) if (!type || s.type === type) q.append(render(s, req));
        return q;
      }),
    );
    // [XEP-0215] credentials for one service (host, type, optional port)
    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_EXTDISCO, name: 'credentials' }, (req) => {
        if (!local(req)) return undefined;
        const want = req.child.getChild('service');
        if (!want?.attrs.host || !want.attrs.type)
          throw new BrokerError('bad-request', 'a <service/> with host and type');
        const s = services.find(
          (x) =>
            x.host === want.attrs.host &&
            x.type === want.attrs.type &&
            (!want.attrs.port || String(x.port) === want.attrs.port),
        );
        if (!s) throw new BrokerError('item-not-found'); // [XEP-0215]
        if (!secret || !s.type.startsWith('turn'))
          throw new BrokerError('item-not-found', 'this service needs no credentials');
        return xml('credentials', { xmlns: NS_EXTDISCO }, render(s, req));
      }),
    );
    discoFeature(ctx, NS_EXTDISCO); // [XEP-0215]
  },
});
