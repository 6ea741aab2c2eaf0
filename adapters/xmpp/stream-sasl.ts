import { escapeXMLText, type Element } from '@xmpp/xml';
import { Address, type Broker } from '../../broker/index.ts';
import { NS_SASL } from './ns.ts';
import { createMechanism, offeredMechanisms, type SaslMechanism, type SaslStep } from './sasl.ts';

/** What the stream does after one SASL element: send `xml`; on failure maybe close; on success restart as `username`. */
export type SaslOutcome =
  | { kind: 'challenge'; xml: string }
  | { kind: 'failure'; xml: string; tooMany: boolean }
  | { kind: 'success'; xml: string; username: string };

/**
 * The SASL negotiation of one stream [RFC6120 6]: the mechanism in
 * progress and the failures so far. It answers each `<auth/>`,
 * `<response/>` and `<abort/>`; the stream (connection.ts) sends what it
 * returns and changes phase.
 */
export class SaslNegotiation {
  private readonly broker: Broker;
  private readonly maxAttempts: number;
  private mechanism?: SaslMechanism;
  private failures = 0;

  constructor(broker: Broker, maxAttempts: number) {
    this.broker = broker;
    this.maxAttempts = maxAttempts;
  }

  /** A failure answer; `tooMany` once the stream has used up its attempts [RFC6120 6.4.5]. */
  failure(condition: string, text?: string): SaslOutcome {
    const t = text ? `<text xml:lang='en'>${escapeXMLText(text)}</text>` : '';
    const tooMany = condition !== 'aborted' && ++this.failures >= this.maxAttempts;
    return {
      kind: 'failure',
      xml: `<failure xmlns='${NS_SASL}'><${condition}/>${t}</failure>`,
      tooMany,
    };
  }

  async handle(
    el: Element,
    transport: { secure: boolean; remoteAddress: string },
  ): Promise<SaslOutcome> {
    const text = el.getText().trim();
    if (el.name === 'abort') {
      this.mechanism = undefined;
      return this.failure('aborted'); // [RFC6120 6.4.4]
    }
    let data: Buffer | null = null;
    if (text && text !== '=') {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0)
        return this.failure('incorrect-encoding'); // [RFC6120 6.5.5]
      data = Buffer.from(text, 'base64');
    } else if (text === '=') data = Buffer.alloc(0); // [RFC6120 6.4.2] empty initial response
    let step: SaslStep;
    if (el.name === 'auth') {
      const mech = el.attrs.mechanism ?? '';
      if (!offeredMechanisms(transport.secure).includes(mech)) {
        const plainNoTls = mech === 'PLAIN' && !transport.secure;
        return this.failure(plainNoTls ? 'encryption-required' : 'invalid-mechanism'); // [RFC6120 6.5.4, 6.5.7]
      }
      this.mechanism = createMechanism(
        mech,
        this.broker,
        (authzid) => {
          const a = Address.tryParse(authzid);
          return a && a.domain === this.broker.domain && a.isBare ? a.local : undefined;
        },
        transport.remoteAddress,
      );
      step = await this.mechanism!.step(data);
    } else if (el.name === 'response' && this.mechanism) {
      step = await this.mechanism.step(data ?? Buffer.alloc(0));
    } else {
      return this.failure('malformed-request');
    }
    if (step.kind === 'challenge') {
      return {
        kind: 'challenge',
        xml: `<challenge xmlns='${NS_SASL}'>${step.data.length ? step.data.toString('base64') : '='}</challenge>`,
      };
    }
    this.mechanism = undefined;
    // The login throttle is applied by the mechanism, around the password check (sasl.ts).
    if (step.kind === 'failure') {
      this.broker.metrics.login('xmpp', false);
      return this.failure(step.condition, step.text);
    }
    this.broker.metrics.login('xmpp', true);
    return {
      kind: 'success',
      xml: `<success xmlns='${NS_SASL}'>${step.data ? step.data.toString('base64') : ''}</success>`,
      username: this.broker.accounts.address(step.username).local,
    };
  }
}
