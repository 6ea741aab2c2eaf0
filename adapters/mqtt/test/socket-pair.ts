import net from 'node:net';
import { once } from 'node:events';

/**
 * A connected loopback TCP pair for socket-level tests: the server side as
 * the listener accepted it (or as `adopt` turns it), and the client side.
 */
export async function socketPair(
  opts: { pauseOnConnect?: boolean; adopt?: (s: net.Socket) => net.Socket } = {},
): Promise<{ server: net.Socket; client: net.Socket; close: () => void }> {
  const srv = net.createServer({ pauseOnConnect: opts.pauseOnConnect ?? false });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as net.AddressInfo;
  const accepted = once(srv, 'connection');
  const client = net.connect(port, '127.0.0.1');
  const [raw] = (await accepted) as [net.Socket];
  await once(client, 'connect');
  const server = opts.adopt ? opts.adopt(raw) : raw;
  return {
    server,
    client,
    close: () => {
      client.destroy();
      server.destroy();
      srv.close();
    },
  };
}
