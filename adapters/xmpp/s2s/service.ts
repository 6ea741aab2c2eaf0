import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { Element } from '@xmpp/xml';
import {
  Address,
  type Broker,
  type BrokerError,
  type Envelope,
  type ErrorCondition,
  type RemoteRoute,
} from '../../../broker/index.ts';
import { listen } from '../../listen.ts';
import { NS_SERVER } from '../ns.ts';
import type { XmppOptions } from '../options.ts';
import { envelopeXml } from '../stanza.ts';
import { InboundStream, type InboundHost } from './inbound.ts';
import { defaultS2sOptions, type S2sOptions, type S2sStreamLimits } from './options.ts';
import { OutboundStream } from './outbound.ts';
import { resolveTargets } from './resolve.ts';

/** One remote domain: its stream (when connected or connecting) and what waits for it. */
interface Link {
  stream?: OutboundStream;
  connecting: boolean;
  queue: Envelope[];
  /** db:verify answers we wait for, by "stream-id receiving-domain" */
  verifies: Map<string, (valid: boolean) => void>;
  /** db:verify requests made while the TCP connection is being set up: stream id, key, our receiving domain */
  pendingVerify: [string, string, string][];
}

/**
 * Server-to-server federation (docs/federation.md): the s2s listener, one
 * outbound stream per remote domain, and the core's route for remote
 * domains (broker/remote.ts). Stanzas for a domain queue (bounded) while its
 * stream is set up and bounce with remote-server-not-found or
 * remote-server-timeout when it cannot be [RFC6120 8.3.3.16, 8.3.3.17].
 */
export class S2sService implements RemoteRoute, InboundHost {
  readonly opts: S2sOptions;
  readonly secret: string;
  private readonly broker: Broker;
  private readonly limits: S2sStreamLimits;
  private readonly tlsOptions: () => tls.SecureContextOptions | null;
  private ctx?: { for: tls.SecureContextOptions; ctx: tls.SecureContext };
  private readonly links = new Map<string, Link>();
  private readonly inbound = new Set<InboundStream>();
  private readonly perIp = new Map<string, number>();
  private server?: net.Server;
  private unregister?: () => void;
  port?: number;

  constructor(
    broker: Broker,
    opts: Partial<S2sOptions>,
    xmpp: Pick<
      XmppOptions,
      | 'maxStanzaSize'
      | 'maxDepth'
      | 'maxInboundStanzas'
      | 'tlsHandshakeTimeoutMs'
      | 'inboundBytesPerSecond'
      | 'inboundStanzasPerSecond'
      | 'inboundBurstSeconds'
      | 'inboundThrottleLimitMs'
    >,
    tlsOptions: () => tls.SecureContextOptions | null,
  ) {
    this.broker = broker;
    this.opts = { ...defaultS2sOptions, ...opts };
    this.secret = this.opts.secret ?? randomBytes(32).toString('hex');
    this.limits = xmpp; // the listener's own object: limits changed by a reload apply to s2s as well
    this.tlsOptions = tlsOptions;
  }

  async start(): Promise<void> {
    this.unregister = this.broker.remote.register(this);
    const l = this.opts.listen;
    if (!l) return;
    this.server = net.createServer((sock) => this.accept(sock));
    this.port = await listen(this.server, l.host, l.port, (err) =>
      this.broker.log.error({ err }, 's2s accept failed'),
    );
  }

  async stop(): Promise<void> {
    this.unregister?.();
    for (const s of this.inbound) s.fail('system-shutdown');
    for (const link of this.links.values()) link.stream?.fail('system-shutdown');
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
  }

  // ---- InboundHost ----

  isLocal(domain: string): boolean {
    return domain === this.broker.domain || this.broker.hosts.get(domain) !== undefined;
  }

  tlsServer(): tls.SecureContext | undefined {
    const o = this.tlsOptions();
    if (!o) return undefined;
    if (this.ctx?.for !== o) this.ctx = { for: o, ctx: tls.createSecureContext(o) }; // a reloaded certificate: the next handshakes
    return this.ctx.ctx;
  }

  verify(originating: string, receiving: string, streamId: string, key: string): Promise<boolean> {
    const link = this.link(originating);
    const slot = `${streamId} ${receiving}`;
    if (link.verifies.has(slot)) return Promise.resolve(false); // one check per claim at a time
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        link.verifies.delete(slot);
        reject(new Error('no db:verify answer'));
      }, this.opts.authTimeoutMs);
      timer.unref();
      link.verifies.set(slot, (valid) => {
        clearTimeout(timer);
        link.verifies.delete(slot);
        resolve(valid);
      });
      const stream = this.connect(originating, link);
      if (stream) stream.sendVerify(streamId, key, receiving);
      else link.pendingVerify.push([streamId, key, receiving]);
    });
  }

  route(env: Envelope): Promise<void> {
    return this.broker.router
      .route(env)
      .catch((err: unknown) => this.broker.log.error({ err }, 's2s inbound stanza not routed'));
  }

  reject(_env: Envelope | undefined, el: Element, err: BrokerError): void {
    const from = Address.tryParse(el.attrs.to ?? '');
    const to = Address.tryParse(el.attrs.from ?? '');
    if (!from || !to || el.attrs.type === 'error') return;
    this.send({
      kind: el.name as Envelope['kind'],
      type: 'error',
      from,
      to,
      id: el.attrs.id,
      extensions: [],
      error: { condition: err.condition, type: err.type, text: err.text },
    });
  }

  // ---- RemoteRoute ----

  send(env: Envelope): void {
    // Our archive's id is ours to say to our users only [XEP-0359 4]: not on a stanza to another server.
    if (env.archive) env = { ...env, archive: undefined };
    const domain = env.to.domain;
    const link = this.link(domain);
    if (link.stream?.ready && !link.stream.closed)
      return link.stream.sendStanza(envelopeXml(env, env.to, NS_SERVER));
    if (link.queue.length >= this.opts.maxQueue) return this.bounce(env, 'resource-constraint'); // [RFC6120 8.3.3.18]
    link.queue.push(env);
    this.connect(domain, link);
  }

  // ---- internals ----

  private link(domain: string): Link {
    let link = this.links.get(domain);
    if (!link) {
      link = { connecting: false, queue: [], verifies: new Map(), pendingVerify: [] };
      this.links.set(domain, link);
    }
    return link;
  }

  /** The domain's stream, or start one (undefined while the TCP connection is being made). */
  private connect(domain: string, link: Link): OutboundStream | undefined {
    if (link.stream && !link.stream.closed) return link.stream;
    if (link.connecting) return undefined;
    link.connecting = true;
    void this.dial(domain).then(
      (sock) => {
        link.connecting = false;
        const stream = new OutboundStream(
          sock,
          {
            local: this.broker.domain,
            remote: domain,
            secret: this.secret,
            tlsClient: this.tlsClient(domain),
          },
          {
            ready: () => {
              for (const env of link.queue.splice(0))
                stream.sendStanza(envelopeXml(env, env.to, NS_SERVER));
            },
            verified: (id, receiving, valid) => link.verifies.get(`${id} ${receiving}`)?.(valid),
            ended: (reason, why) => {
              if (link.stream === stream) link.stream = undefined;
              this.failLink(domain, link, reason, why);
            },
          },
          this.opts,
          this.limits,
          this.broker.log,
        );
        link.stream = stream;
        for (const [id, key, receiving] of link.pendingVerify.splice(0))
          stream.sendVerify(id, key, receiving);
      },
      (err: Error) => {
        link.connecting = false;
        const timeout = /timed out/.test(err.message);
        this.failLink(
          domain,
          link,
          timeout ? 'remote-server-timeout' : 'remote-server-not-found',
          err.message,
        );
      },
    );
    return undefined;
  }

  private failLink(domain: string, link: Link, reason: ErrorCondition, why: string): void {
    this.broker.log.info({ domain, why }, 's2s: no stream to the domain');
    const queued = link.queue.splice(0);
    for (const env of queued) this.bounce(env, reason, why);
    for (const resolve of [...link.verifies.values()]) resolve(false);
    link.verifies.clear();
    link.pendingVerify.length = 0;
    if (!link.stream && !link.connecting) this.links.delete(domain);
  }

  /** TCP to the first target that answers [RFC6120 3.2.1]. */
  private async dial(domain: string): Promise<net.Socket> {
    if (!Address.tryParse(domain)?.isDomain) throw new Error('not a domain');
    const targets = await resolveTargets(domain, this.opts.routes);
    let last = 'no s2s service';
    for (const t of targets) {
      try {
        return await new Promise<net.Socket>((resolve, reject) => {
          const sock = net.connect({ host: t.host, port: t.port });
          const timer = setTimeout(() => {
            sock.destroy();
            reject(new Error(`connect to ${t.host}:${t.port} timed out`));
          }, this.opts.connectTimeoutMs);
          sock.once('connect', () => {
            clearTimeout(timer);
            sock.removeAllListeners('error');
            resolve(sock);
          });
          sock.once('error', (err) => {
            clearTimeout(timer);
            reject(err);
          });
        });
      } catch (err) {
        last = (err as Error).message;
      }
    }
    throw new Error(last);
  }

  /** The peer's certificate must be valid for its domain, from the configured CA or the system's [RFC6120 13.7.2]. */
  private tlsClient(domain: string): tls.ConnectionOptions {
    const own = this.tlsOptions();
    return {
      servername: domain,
      ...(this.opts.ca ? { ca: this.opts.ca } : {}),
      ...(own?.cert && own.key ? { cert: own.cert, key: own.key } : {}),
      rejectUnauthorized: true,
    };
  }

  /** An error back to the local sender, through the router so modules see it (push answers) [RFC6120 8.3.1]. */
  private bounce(env: Envelope, condition: ErrorCondition, text?: string): void {
    const reply = this.broker.router.errorFor(env, condition, text);
    if (!reply || reply.to.domain !== this.broker.domain) return;
    this.broker.router
      .route(reply)
      .catch((err: unknown) => this.broker.log.error({ err }, 's2s bounce not routed'));
  }

  private accept(sock: net.Socket): void {
    const ip = sock.remoteAddress ?? 'unknown';
    const n = (this.perIp.get(ip) ?? 0) + 1;
    this.perIp.set(ip, n);
    sock.once('close', () => {
      const m = (this.perIp.get(ip) ?? 1) - 1;
      if (m <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, m);
    });
    const stream = new InboundStream(sock, this, this.opts, this.limits, this.broker.log);
    this.inbound.add(stream);
    sock.once('close', () => this.inbound.delete(stream));
    if (n > this.opts.maxConnectionsPerIp || this.inbound.size > this.opts.maxConnections)
      stream.fail('policy-violation', 'too many connections'); // limits maxConnectionsPerIp, maxConnections
  }
}
