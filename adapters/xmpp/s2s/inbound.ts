import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import type tls from 'node:tls';
import type { Element } from '@xmpp/xml';
import { Address, BrokerError, type Envelope, type Logger } from '../../../broker/index.ts';
import {
  NS_DIALBACK,
  NS_DIALBACK_FEATURE,
  NS_SERVER,
  NS_STANZAS,
  NS_STREAM,
  NS_TLS,
} from '../ns.ts';
import { toEnvelope } from '../stanza.ts';
import { dialbackKey, dialbackName, dialbackXml, keyMatches } from './dialback.ts';
import type { S2sOptions, S2sStreamLimits } from './options.ts';
import { s2sHeader, S2sStream } from './stream.ts';

/** What an inbound stream needs from the service. */
export interface InboundHost {
  /** domains this node answers for: the main one and its service domains */
  isLocal(domain: string): boolean;
  secret: string;
  tlsServer(): tls.SecureContext | undefined;
  /** ask `originating`'s authoritative server whether `key` is its key for our stream `streamId` [XEP-0220 2.3] */
  verify(originating: string, receiving: string, streamId: string, key: string): Promise<boolean>;
  /** a stanza from a verified peer, into the core; settles once routed (never rejects) */
  route(env: Envelope): Promise<void>;
  /** a stanza error for a stanza we could not take, back to the peer */
  reject(env: Envelope | undefined, el: Element, err: BrokerError): void;
}

/**
 * A stream another server opened to us [RFC6120 4.7]: header checks,
 * STARTTLS (required unless requireTls is off), then dialback [XEP-0220]:
 * each `db:result` claims a domain, checked by asking that domain's
 * authoritative server (`db:verify`); stanzas are taken only from the domains
 * verified on this stream and only for ours [RFC6120 13.? / XEP-0220 2.4].
 * Also answers `db:verify` for keys our outbound streams gave.
 */
export class InboundStream extends S2sStream {
  private readonly host: InboundHost;
  /** our domain the peer addressed (the stream header's `to`) */
  private to = '';
  /** verified pairs: "originating receiving" */
  private readonly verified = new Set<string>();
  private pendingDialbacks = 0;
  private claimed = new Set<string>();

  constructor(
    sock: net.Socket,
    host: InboundHost,
    opts: S2sOptions,
    limits: S2sStreamLimits,
    log: Logger,
  ) {
    super(sock, opts, limits, log.child({ s2sin: sock.remoteAddress }));
    this.host = host;
  }

  protected replyHeader(): string {
    return s2sHeader({ from: this.to || 'invalid', id: this.id });
  }

  protected onHeader(name: string, uri: string, attrs: Record<string, string>): void {
    this.to = attrs.to ?? '';
    if (this.secure) this.id = randomBytes(12).toString('hex'); // a new stream after TLS, a new id [RFC6120 4.7.3]
    this.headerSent = true;
    this.write(s2sHeader({ from: this.to || 'invalid', to: attrs.from, id: this.id }));
    // [RFC6120 4.9.3.10] the stream namespace; [4.8.3] jabber:server content
    if (uri !== NS_STREAM || !/^(?:[^:]+:)?stream$/.test(name) || attrs.xmlns !== NS_SERVER)
      return this.fail('invalid-namespace', 'expected a jabber:server stream');
    if (attrs['xmlns:db'] !== NS_DIALBACK)
      return this.fail(
        'invalid-namespace',
        'dialback (jabber:server:dialback) is the only authentication offered',
      );
    if (attrs.version !== '1.0') return this.fail('unsupported-version', 'version 1.0 required'); // [RFC6120 4.9.3.25]
    if (!this.host.isLocal(this.to))
      return this.fail('host-unknown', 'this server does not serve that domain'); // [RFC6120 4.9.3.6]
    const f =
      !this.secure && this.host.tlsServer()
        ? `<starttls xmlns='${NS_TLS}'>${this.opts.requireTls ? '<required/>' : ''}</starttls>`
        : '';
    const dialback =
      this.secure || !this.opts.requireTls
        ? `<dialback xmlns='${NS_DIALBACK_FEATURE}'><errors/></dialback>`
        : '';
    this.write(`<stream:features>${f}${dialback}</stream:features>`);
  }

  protected async onElement(el: Element): Promise<void> {
    if (el.name === 'starttls' && el.attrs.xmlns === NS_TLS) {
      const ctx = this.host.tlsServer();
      if (this.secure || !ctx) {
        this.write(`<failure xmlns='${NS_TLS}'/>`); // [RFC6120 5.4.2.2]
        return this.close();
      }
      this.write(`<proceed xmlns='${NS_TLS}'/>`);
      try {
        await this.startTls({ server: ctx });
      } catch (err) {
        this.log.info({ err: (err as Error).message }, 's2s inbound TLS failed');
        return this.close();
      }
      this.headerSent = false; // [RFC6120 5.4.3.3] the peer opens a new stream
      return;
    }
    if (!this.secure && this.opts.requireTls)
      return this.fail('policy-violation', 'STARTTLS required'); // [RFC6120 5.3.1]
    const db = dialbackName(el);
    if (db === 'verify') return this.answerVerify(el);
    if (db === 'result') return this.checkResult(el);
    if (el.attrs.xmlns !== NS_SERVER || !['message', 'presence', 'iq'].includes(el.name))
      return this.fail('unsupported-stanza-type', `<${el.name}/> is not a stanza`); // [RFC6120 4.9.3.24]
    return this.stanza(el);
  }

  /** [XEP-0220 2.3.2] a server asks whether a key is one of ours: only we can tell. */
  private answerVerify(el: Element): void {
    const { from, to, id } = el.attrs;
    if (!from || !to || !id) return this.fail('invalid-xml', 'db:verify needs from, to and id');
    if (!this.host.isLocal(to)) return this.fail('host-unknown', `${to} is not served here`);
    const ok = keyMatches(el.getText(), dialbackKey(this.host.secret, from, to, id));
    this.write(dialbackXml('verify', { from: to, to: from, id, type: ok ? 'valid' : 'invalid' }));
  }

  /** [XEP-0220 2.2] a peer claims a domain: ask that domain's authoritative server. */
  private async checkResult(el: Element): Promise<void> {
    const { from, to } = el.attrs;
    const key = el.getText();
    const origin = from ? Address.tryParse(from) : undefined;
    if (!origin?.isDomain || !to || !key)
      return this.fail('invalid-xml', 'db:result needs from, to and a key');
    if (!this.host.isLocal(to)) {
      // [XEP-0220 2.4] an error the peer can read, and nothing more on this claim
      return this.write(
        dialbackXml('result', {
          from: to,
          to: from!,
          type: 'error',
          error: `<error type='cancel'><item-not-found xmlns='${NS_STANZAS}'/></error>`,
        }),
      );
    }
    if (this.host.isLocal(from!)) return this.fail('invalid-from', 'that domain is ours');
    if (this.pendingDialbacks >= this.opts.maxPendingDialbacks)
      return this.fail('policy-violation', 'too many dialback requests pending');
    if (!this.claimed.has(from!) && this.claimed.size >= this.opts.maxDomainsPerStream)
      return this.fail('policy-violation', 'too many domains on one stream');
    this.claimed.add(from!);
    this.pendingDialbacks++;
    // Not awaited: other claims and verify requests on this stream go on meanwhile.
    this.host
      .verify(from!, to, this.id, key)
      .then(
        (valid) => {
          if (valid) {
            this.verified.add(`${from} ${to}`);
            this.authenticated();
          }
          this.write(
            dialbackXml('result', { from: to, to: from!, type: valid ? 'valid' : 'invalid' }),
          );
        },
        () =>
          // [XEP-0220 2.4] we could not reach the authoritative server
          this.write(
            dialbackXml('result', {
              from: to,
              to: from!,
              type: 'error',
              error: `<error type='cancel'><remote-server-not-found xmlns='${NS_STANZAS}'/></error>`,
            }),
          ),
      )
      .finally(() => this.pendingDialbacks--);
  }

  /** A stanza from a verified domain for one of ours, into the core. */
  private async stanza(el: Element): Promise<void> {
    const fromAttr = el.attrs.from;
    const toAttr = el.attrs.to;
    // [RFC6120 8.1.1.1, 8.1.2.1] a server's stanzas carry both addresses
    if (!fromAttr || !toAttr) return this.fail('improper-addressing', 'from and to are required');
    const from = Address.tryParse(fromAttr);
    const to = Address.tryParse(toAttr);
    if (!from || !to) return this.fail('improper-addressing', 'malformed address');
    // [RFC6120 4.9.3.9] from a domain this stream has not proved
    if (!this.verified.has(`${from.domain} ${to.domain}`))
      return this.fail(
        'invalid-from',
        `${from.domain} is not authenticated on this stream for ${to.domain}`,
      );
    let env: Envelope;
    try {
      env = toEnvelope(el, from, to);
    } catch (err) {
      if (err instanceof BrokerError) return this.host.reject(undefined, el, err);
      throw err;
    }
    // Awaited: one peer's stanzas are routed in the order sent [RFC6120 10.1], and the backlog bounds them.
    await this.host.route(env);
  }

  protected onEnded(): void {}
}
