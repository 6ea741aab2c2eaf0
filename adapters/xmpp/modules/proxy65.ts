import { createHash } from 'node:crypto';
import { escapeXML } from '@xmpp/xml';
import { Address, BrokerError, defineModule } from '../../../broker/index.ts';
import { NS_BYTESTREAMS } from '../ns.ts';
import { iqKey, serveDomain } from '../service-host.ts';
import { Socks5Proxy } from '../socks5-proxy.ts';

/**
 * XEP-0065 SOCKS5 Bytestreams proxy (docs/calls.md): the `proxy.{domain}`
 * service hands out its stream host and activates streams; the relay is
 * socks5-proxy.ts. Off by default: it opens a listener of its own.
 */
export default defineModule({
  name: 'proxy65',
  description:
    'SOCKS5 Bytestreams proxy (XEP-0065): proxy.{domain} relays file transfers between clients that cannot reach each other',
  enabledByDefault: false,
  options: {
    host: {
      type: 'string',
      default: 'proxy.{domain}',
      nullable: true,
      doc: 'domain of the proxy service; `null` turns it off',
    },
    listenHost: {
      type: 'string',
      default: '127.0.0.1',
      doc: 'address the SOCKS5 listener binds (`0.0.0.0` for every interface)',
    },
    port: {
      type: 'number',
      default: 7777,
      min: 0,
      max: 65535,
      doc: 'port of the SOCKS5 listener (0 = any free port)',
    },
    publicHost: {
      type: 'string',
      default: '',
      doc: 'host name or address clients connect to, given in the streamhost answer; empty: the domain',
    },
    publicPort: {
      type: 'number',
      default: 0,
      min: 0,
      max: 65535,
      doc: 'port given in the streamhost answer (behind NAT or a port forward); 0: the listening port',
    },
    handshakeTimeoutSeconds: {
      type: 'number',
      default: 10,
      min: 1,
      doc: 'a connection must finish the SOCKS5 greeting and CONNECT within this',
    },
    activationTimeoutSeconds: {
      type: 'number',
      default: 30,
      min: 1,
      doc: 'a connected stream must be activated within this',
    },
    idleTimeoutSeconds: {
      type: 'number',
      default: 300,
      min: 0,
      doc: 'an activated stream with no byte either way for this long is closed (0 = never)',
    },
    maxConnectionsPerIp: {
      type: 'number',
      default: 20,
      min: 1,
      doc: 'open SOCKS5 connections from one IP address; more are closed at accept',
    },
    maxPending: {
      type: 'number',
      default: 200,
      min: 2,
      doc: 'connections not yet activated, all addresses; more are closed at accept',
    },
    maxStreamsPerUser: {
      type: 'number',
      default: 5,
      min: 1,
      doc: 'activated streams one account may have at once; more: resource-constraint',
    },
    maxBytesPerStream: {
      type: 'number',
      default: 1073741824,
      min: 0,
      doc: 'bytes one stream may relay, both directions (0 = unlimited); past it both sides are closed',
    },
    bandwidthPerUser: {
      type: 'number',
      default: 10485760,
      min: 0,
      doc: "bytes per second one account's streams relay together (0 = unlimited); faster senders are paused",
    },
  },
  specs: [
    {
      spec: 'XEP-0065',
      section: '6 (mediated connection: the proxy)',
      status: 'partial',
      note: 'streamhost query, CONNECT with the SHA-1 hash, activation, bidirectional TCP relay with limits (docs/calls.md); no UDP mode; one proxy per node',
    },
  ],
  async setup(ctx) {
    const { broker, options: o } = ctx;
    if (o.host === null) return;
    const host = o.host.replace('{domain}', broker.domain);
    const proxy = new Socks5Proxy(
      {
        handshakeTimeoutMs: o.handshakeTimeoutSeconds * 1000,
        activationTimeoutMs: o.activationTimeoutSeconds * 1000,
        idleTimeoutMs: o.idleTimeoutSeconds * 1000,
        maxConnectionsPerIp: o.maxConnectionsPerIp,
        maxPending: o.maxPending,
        maxStreamsPerUser: o.maxStreamsPerUser,
        maxBytesPerStream: o.maxBytesPerStream,
        bandwidthPerUser: o.bandwidthPerUser,
      },
      {
        // parley_connections{protocol="socks5"} and parley_connections_closed_total{protocol="socks5",reason}
        opened: () => broker.metrics.connection('socks5', 'tcp', 1),
        closed: (reason) => {
          if (reason !== 'refused') broker.metrics.connection('socks5', 'tcp', -1);
          broker.metrics.closed('socks5', reason);
        },
      },
    );
    let port: number;
    try {
      port = await proxy.listen(o.listenHost, o.port);
    } catch (err) {
      throw new Error(
        `modules.${ctx.name}: cannot listen on ${o.listenHost}:${o.port} for SOCKS5 bytestreams: ${(err as Error).message}; set modules.${ctx.name}.port (0 = any free port)`,
      );
    }
    ctx.onUnload(() => proxy.close());
    ctx.log.info({ host, listen: `${o.listenHost}:${port}` }, 'SOCKS5 bytestreams proxy listening');
    const streamhost = `<streamhost jid='${escapeXML(host)}' host='${escapeXML(o.publicHost || broker.domain)}' port='${o.publicPort || port}'/>`;

    ctx.onUnload(
      serveDomain(broker, {
        owner: ctx.name,
        host,
        name: 'SOCKS5 Bytestreams',
        identity: { category: 'proxy', type: 'bytestreams' }, // [XEP-0065 6]
        features: [NS_BYTESTREAMS],
        handlers: {
          // [XEP-0065 6] the requester asks the proxy for its network address
          [iqKey('get', NS_BYTESTREAMS, 'query')]: () =>
            `<query xmlns='${NS_BYTESTREAMS}'>${streamhost}</query>`,
          // [XEP-0065 6] activation by the requester, after the target said which stream host it used
          [iqKey('set', NS_BYTESTREAMS, 'query')]: (child, env) => {
            const sid = child.attrs.sid as string | undefined;
            const target = child.getChildText('activate')?.trim();
            if (!sid || sid.length > 1024 || !target)
              throw new BrokerError('bad-request', 'a sid and an <activate/> JID');
            let targetJid: string;
            try {
              targetJid = Address.parse(target).toString();
            } catch {
              throw new BrokerError('jid-malformed', 'the <activate/> JID');
            }
            // DST.ADDR = SHA-1(sid + requester full JID + target full JID), hex [XEP-0065 5.3.2]
            const hash = createHash('sha1')
              .update(`${sid}${env.from.toString()}${targetJid}`)
              .digest('hex');
            switch (proxy.activate(hash, env.from.bare().toString())) {
              case 'ok':
                return undefined;
              case 'not-found':
                // no connection with that hash (sid, requester and target as given): what Prosody answers
                throw new BrokerError(
                  'item-not-found',
                  'no such stream: the target and the requester must both be connected to the proxy',
                );
              case 'one-side':
                throw new BrokerError('not-allowed', 'only one party is connected to the proxy');
              case 'too-many-streams':
                throw new BrokerError(
                  'resource-constraint',
                  `at most ${o.maxStreamsPerUser} streams at once`,
                  'wait',
                );
            }
          },
        },
      }),
    );
  },
});
