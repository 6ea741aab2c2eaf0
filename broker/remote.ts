import type { Envelope } from './envelope.ts';

/**
 * Where stanzas to other domains go (federation). The core knows no wire
 * format: an adapter that can reach other servers (the XMPP adapter's
 * server-to-server connections, docs/federation.md) registers itself here,
 * and the router hands it every envelope for a domain that is neither this
 * node's nor one of its service domains. The adapter answers failures itself
 * (it routes the error back through the router). Without one, such stanzas
 * get remote-server-not-found [RFC6120 8.3.3.16].
 */
export interface RemoteRoute {
  /** Take an envelope for `env.to.domain`; never throws for a network failure (it bounces). */
  send(env: Envelope): void;
}

export class RemoteDomains {
  private route?: RemoteRoute;

  /** Register the route; returns the remover. One route per node. */
  register(route: RemoteRoute): () => void {
    if (this.route) throw new Error('a remote route is registered already');
    this.route = route;
    return () => {
      if (this.route === route) this.route = undefined;
    };
  }

  /** The route for remote domains, when federation is on. */
  get current(): RemoteRoute | undefined {
    return this.route;
  }
}
