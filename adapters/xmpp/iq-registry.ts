import { randomBytes } from 'node:crypto';
import type { Element } from '@xmpp/xml';
import type { Broker } from '../../broker/index.ts';
import type { XmppConnection } from './connection.ts';
import type { IqAnswer, IqRequest, PreAuthIqRequest } from './hooks.ts';
import { Slot } from './session-state.ts';

/** What an IQ handler is registered for: the IQ type and its payload's namespace and name. */
export interface IqKey {
  type: 'get' | 'set';
  ns: string;
  name: string;
}

/**
 * Answers one kind of IQ request: a payload element, 'empty', or undefined
 * for "not for me after all" (then the sender gets service-unavailable).
 * Throw a BrokerError for any other error answer.
 */
export type IqHandler = (req: IqRequest) => IqAnswer | undefined | Promise<IqAnswer | undefined>;

/**
 * Answers an IQ a client sends before authenticating (XEP-0077 in-band
 * registration): same answers as {@link IqHandler}; there is no account yet.
 */
export type PreAuthIqHandler = (req: PreAuthIqRequest) => IqAnswer | Promise<IqAnswer>;

function keyOf(type: string, ns: string | undefined, name: string): string {
  return `${type} {${ns ?? ''}}${name}`;
}

/**
 * Keyed IQ handlers (Prosody's `iq-get/host/<ns>:<name>` events, ejabberd's
 * `gen_iq_handler`): one handler per (type, namespace, name), found with one
 * map lookup instead of every handler looking at every IQ. A second module
 * claiming a key taken by another fails at load with both names.
 */
export class IqRegistry {
  private readonly handlers = new Map<string, { owner: string; handler: IqHandler }>();
  private readonly preAuth = new Map<string, { owner: string; handler: PreAuthIqHandler }>();

  /** Register; returns the remover (for ctx.onUnload). Throws when another module owns the key. */
  register(owner: string, key: IqKey, handler: IqHandler): () => void {
    const k = keyOf(key.type, key.ns, key.name);
    const existing = this.handlers.get(k);
    if (existing) {
      throw new Error(
        `IQ ${key.type} <${key.name} xmlns='${key.ns}'/> is claimed by module '${existing.owner}' and by module '${owner}'; disable one of them`,
      );
    }
    const entry = { owner, handler };
    this.handlers.set(k, entry);
    return () => {
      if (this.handlers.get(k) === entry) this.handlers.delete(k);
    };
  }

  /**
   * Register a handler for IQs sent before SASL succeeds, to the server
   * (XEP-0077 in-band registration). Only keys registered here are taken
   * from an unauthenticated stream; any other stanza there still ends the
   * stream with not-authorized [RFC6120 4.9.3.12]. Returns the remover.
   */
  registerPreAuth(owner: string, key: IqKey, handler: PreAuthIqHandler): () => void {
    const k = keyOf(key.type, key.ns, key.name);
    const existing = this.preAuth.get(k);
    if (existing) {
      throw new Error(
        `pre-authentication IQ ${key.type} <${key.name} xmlns='${key.ns}'/> is claimed by module '${existing.owner}' and by module '${owner}'; disable one of them`,
      );
    }
    const entry = { owner, handler };
    this.preAuth.set(k, entry);
    return () => {
      if (this.preAuth.get(k) === entry) this.preAuth.delete(k);
    };
  }

  /** The pre-authentication handler for a request's type and payload, if any. */
  lookupPreAuth(type: string, payload: Element): PreAuthIqHandler | undefined {
    return this.preAuth.get(keyOf(type, payload.attrs.xmlns, payload.name))?.handler;
  }

  /** The handler for a request's type and payload, if any. */
  lookup(type: string, payload: Element): IqHandler | undefined {
    return this.handlers.get(keyOf(type, payload.attrs.xmlns, payload.name))?.handler;
  }

  /** Who owns what, for diagnostics. */
  owners(): { key: string; owner: string }[] {
    return [...this.handlers].map(([key, e]) => ({ key, owner: e.owner }));
  }
}

const registries = new WeakMap<Broker, IqRegistry>();

/** The IQ registry of a broker; XMPP modules register here. */
export function iqRegistry(broker: Broker): IqRegistry {
  let r = registries.get(broker);
  if (!r) registries.set(broker, (r = new IqRegistry()));
  return r;
}

// ---- requests the server sends to a client (pings) ----

interface Pending {
  resolve(el: Element): void;
  timer: NodeJS.Timeout;
}

const pendingSlot = new Slot<Map<string, Pending>>('iq:pending');

/**
 * Send an IQ get/set to the client and wait for its result or error (the
 * element), or `undefined` after `timeoutMs`. `build` gets the id to use.
 */
export function requestFromClient(
  conn: XmppConnection,
  build: (id: string) => string,
  timeoutMs: number,
): Promise<Element | undefined> {
  const id = `s-${randomBytes(6).toString('hex')}`;
  let pending = conn.state.get(pendingSlot);
  if (!pending) conn.state.set(pendingSlot, (pending = new Map()));
  const map = pending;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      map.delete(id);
      resolve(undefined);
    }, timeoutMs);
    timer.unref();
    map.set(id, { resolve, timer });
    conn.sendStanza(build(id));
  });
}

/** An IQ result/error from the client: true when it answered one of our requests. */
export function answerFromClient(conn: XmppConnection, el: Element): boolean {
  const pending = conn.state.get(pendingSlot);
  const id = el.attrs.id;
  const p = id !== undefined ? pending?.get(id) : undefined;
  if (!p) return false;
  pending!.delete(id);
  clearTimeout(p.timer);
  p.resolve(el);
  return true;
}
