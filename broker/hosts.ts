import type { Envelope } from './envelope.ts';
import type { Session } from './session.ts';

/**
 * Handles every stanza routed to one service domain (a component in
 * Prosody's terms: `Component "conference.example.org" "muc"`). Called in
 * the origin's order; answers and errors go out through the router.
 */
export type HostHandler = (env: Envelope, origin: Session | undefined) => void | Promise<void>;

/**
 * Service domains served inside the node besides the main one
 * (`conference.{domain}`, later `upload.{domain}`…). The router hands a
 * stanza to a domain's handler instead of answering remote-server-not-found
 * [RFC6120 8.3.3.16]; one owner per domain, a second claim fails at load.
 */
export class HostRegistry {
  private readonly hosts = new Map<string, { owner: string; handler: HostHandler }>();
  private readonly mainDomain: string;

  constructor(mainDomain: string) {
    this.mainDomain = mainDomain;
  }

  /** Register a domain; returns the remover (for ctx.onUnload). */
  register(owner: string, domain: string, handler: HostHandler): () => void {
    if (domain === this.mainDomain)
      throw new Error(`module '${owner}' cannot serve the main domain ${domain} as a host`);
    const existing = this.hosts.get(domain);
    if (existing)
      throw new Error(
        `host ${domain} is claimed by module '${existing.owner}' and by module '${owner}'`,
      );
    const entry = { owner, handler };
    this.hosts.set(domain, entry);
    return () => {
      if (this.hosts.get(domain) === entry) this.hosts.delete(domain);
    };
  }

  get(domain: string): HostHandler | undefined {
    return this.hosts.get(domain)?.handler;
  }

  /** Served domains (for the server's disco#items). */
  domains(): string[] {
    return [...this.hosts.keys()];
  }
}
