// Minimal typings for the xmpp.js packages we use (they ship none).
declare module '@xmpp/xml' {
  export type Node = Element | string;
  export class Element {
    constructor(name: string, attrs?: Record<string, string | undefined>);
    name: string;
    attrs: Record<string, string>;
    children: Node[];
    parent: Element | null;
    is(name: string, xmlns?: string): boolean;
    getName(): string;
    getNS(): string | undefined;
    getAttr(name: string, xmlns?: string): string | undefined;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getText(): string;
    getChildText(name: string, xmlns?: string): string | null;
    c(name: string, attrs?: Record<string, string | undefined>): Element;
    cnode(child: Element): Element;
    append(...nodes: Node[]): Element;
    t(text: string): Element;
    up(): Element;
    root(): Element;
    attr(name: string, value?: string): string | Element;
    toString(): string;
  }
  export function xml(
    name: string,
    attrs?: Record<string, string | undefined> | null,
    ...children: (Node | Node[] | null | undefined)[]
  ): Element;
  export function escapeXML(s: string): string;
  export function escapeXMLText(s: string): string;
  export function unescapeXML(s: string): string;
  export default xml;
}

declare module '@xmpp/client' {
  import type { Element } from '@xmpp/xml';
  export interface Client {
    on(event: string, fn: (...args: any[]) => void): this;
    once(event: string, fn: (...args: any[]) => void): this;
    start(): Promise<any>;
    stop(): Promise<void>;
    send(el: Element): Promise<void>;
    sendMany(els: Element[]): Promise<void>;
    iqCaller: {
      request(el: Element, timeout?: number): Promise<Element>;
      get(el: Element, to?: string): Promise<Element>;
      set(el: Element, to?: string): Promise<Element>;
    };
    jid: { toString(): string; bare(): { toString(): string }; resource: string } | null;
    status: string;
    reconnect: { stop(): void };
    socket: any;
    streamFrom: any;
    [k: string]: any;
  }
  export function client(opts: Record<string, unknown>): Client;
  export { xml } from '@xmpp/xml';
  export function jid(s: string): any;
}

// The class every TLS socket of @xmpp/client comes from (direct TLS and the
// STARTTLS upgrade); the conformance suite gives it the test CA.
declare module '@xmpp/tls/lib/Socket.js' {
  import type { ConnectionOptions } from 'node:tls';
  export default class Socket {
    connect(options: ConnectionOptions): void;
  }
}
