import type { Element } from '@xmpp/xml';
import {
  HookBus,
  type Address,
  type Broker,
  type HookSignatures,
  type Logger,
} from '../../broker/index.ts';
import type { XmppConnection } from './connection.ts';

/** An IQ get/set a client sent, addressed to the server, its own account or another account's bare JID. */
export interface IqRequest {
  conn: XmppConnection;
  stanza: Element;
  /** the single payload child */
  child: Element;
  type: 'get' | 'set';
  from: Address;
  /** resolved target: the domain, or a bare account JID (the sender's own when 'to' was absent) */
  to: Address;
}

/** An IQ get/set to the server on a stream that has not authenticated yet (XEP-0077 registration). */
export interface PreAuthIqRequest {
  conn: XmppConnection;
  stanza: Element;
  child: Element;
  type: 'get' | 'set';
}

/** A payload element for the result, or 'empty' for an empty result. Throw BrokerError for an error. */
export type IqAnswer = Element | 'empty';

export interface DiscoInfo {
  identities: { category: string; type: string; name?: string }[];
  features: string[];
  /** XEP-0128 extended information: data forms of type result, one per FORM_TYPE (XEP-0157 serverinfo) */
  forms?: Element[];
}

/** Hooks of the XMPP adapter, typed like the core's. */
export interface XmppHooks extends HookSignatures {
  /** fold: disco#info of the domain or of an account's bare JID [XEP-0030] */
  'disco:info': [[info: DiscoInfo, target: Address, requester: Address], DiscoInfo];
  /** fold: disco#items of the domain (service domains such as conference.{domain}) [XEP-0030 4] */
  'disco:items': [
    [items: { jid: string; name?: string }[], target: Address, requester: Address],
    { jid: string; name?: string }[],
  ];
  /**
   * fold: disco#items of a node of the domain or an account [XEP-0030 4.2]
   * (`http://jabber.org/protocol/commands`, XEP-0050 2.2); undefined when no
   * module knows the node (item-not-found).
   */
  'disco:node-items': [
    [
      items: { jid: string; node?: string; name?: string }[] | undefined,
      target: Address,
      requester: Address,
      node: string,
    ],
    { jid: string; node?: string; name?: string }[] | undefined,
  ];
  /** fold: disco#info of a node [XEP-0030 3.2] (an ad-hoc command, XEP-0050 2.3); undefined: item-not-found */
  'disco:node-info': [
    [info: DiscoInfo | undefined, target: Address, requester: Address, node: string],
    DiscoInfo | undefined,
  ];
  /**
   * A session's entity capabilities became known or changed [XEP-0115]:
   * `features` is what its client supports now, `previous` what was known
   * before (undefined at first). PEP sends last items and notifications by it.
   */
  'caps:changed': [
    [
      conn: XmppConnection,
      features: ReadonlySet<string>,
      previous: ReadonlySet<string> | undefined,
    ],
    void,
  ];
  /** fold: extra stream features after authentication, as XML strings */
  'stream:features': [[features: string[], conn: XmppConnection], string[]];
  /** fold: extra stream features before authentication, next to SASL (XEP-0077 `<register/>`) */
  'stream:features:unauthenticated': [[features: string[], conn: XmppConnection], string[]];
}

const buses = new WeakMap<Broker, HookBus<XmppHooks>>();

/** The XMPP hook bus of a broker; XMPP modules register here. */
export function xmppHooks(broker: Broker, log?: Logger): HookBus<XmppHooks> {
  let bus = buses.get(broker);
  if (!bus) buses.set(broker, (bus = new HookBus<XmppHooks>(log ?? broker.log)));
  return bus;
}
