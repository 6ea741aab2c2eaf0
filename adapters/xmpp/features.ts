import type { Element } from '@xmpp/xml';
import type { Broker } from '../../broker/index.ts';
import type { XmppConnection } from './connection.ts';
import { xmppHooks } from './hooks.ts';

/**
 * Stream features after authentication are a fold (the `stream:features`
 * hook) that modules add to, each next to the handler of what it offers:
 * `<bind/>` is the stream code's own; rosterver, the legacy session, stream
 * management and CSI come from their modules. STARTTLS and SASL, offered
 * before authentication, stay in the stream code; a module may add a feature
 * there too (`phase: 'unauthenticated'`, XEP-0077 `<register/>`), offered
 * only once STARTTLS is not required any more.
 */
export function addStreamFeature(
  broker: Broker,
  feature: (conn: XmppConnection) => string | undefined,
  phase: 'authenticated' | 'unauthenticated' = 'authenticated',
): () => void {
  return xmppHooks(broker).on(
    phase === 'authenticated' ? 'stream:features' : 'stream:features:unauthenticated',
    (features, conn) => {
      const f = feature(conn);
      return f === undefined ? undefined : [...features, f];
    },
  );
}

/** The stream-level elements a stream accepts: after SASL before binding ('bind') and on a bound stream ('bound'). */
export type NonzaPhase = 'bind' | 'bound';

export interface NonzaKey {
  ns: string;
  name: string;
  phases: NonzaPhase[];
  /**
   * On a bound stream a nonza waits, like an IQ or a presence, until the messages before it are
   * handled (stored, routed) [RFC6120 10.1]. true: it runs as soon as the steps before it have
   * run, while their messages are still being stored (XEP-0198 `<r/>` and `<a/>`, which wait for
   * what they need themselves).
   */
  beside?: boolean;
}

/** Handles one top-level non-stanza element (XEP-0198 `<r/>`, XEP-0352 `<active/>`, …). Runs in stream order. */
export type NonzaHandler = (conn: XmppConnection, el: Element) => void | Promise<void>;

/**
 * Keyed handlers for top-level elements that are not stanzas ("nonzas"):
 * without one, such an element closes the stream with
 * unsupported-stanza-type [RFC6120 4.9.3.24], as before. One owner per
 * element; a second claim fails at module load.
 */
export class NonzaRegistry {
  private readonly handlers = new Map<
    string,
    { owner: string; phases: NonzaPhase[]; handler: NonzaHandler; beside: boolean }
  >();

  register(owner: string, key: NonzaKey, handler: NonzaHandler): () => void {
    const k = `{${key.ns}}${key.name}`;
    const existing = this.handlers.get(k);
    if (existing)
      throw new Error(
        `<${key.name} xmlns='${key.ns}'/> is claimed by module '${existing.owner}' and by module '${owner}'; disable one of them`,
      );
    const entry = { owner, phases: key.phases, handler, beside: key.beside ?? false };
    this.handlers.set(k, entry);
    return () => {
      if (this.handlers.get(k) === entry) this.handlers.delete(k);
    };
  }

  lookup(phase: NonzaPhase, el: Element): NonzaHandler | undefined {
    return this.entry(phase, el)?.handler;
  }

  /** The handler and whether it runs beside the messages in flight ({@link NonzaKey.beside}). */
  entry(phase: NonzaPhase, el: Element): { handler: NonzaHandler; beside: boolean } | undefined {
    const e = this.handlers.get(`{${el.attrs.xmlns ?? ''}}${el.name}`);
    return e && e.phases.includes(phase) ? e : undefined;
  }
}

const registries = new WeakMap<Broker, NonzaRegistry>();

export function nonzaRegistry(broker: Broker): NonzaRegistry {
  let r = registries.get(broker);
  if (!r) registries.set(broker, (r = new NonzaRegistry()));
  return r;
}
