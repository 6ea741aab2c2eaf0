import type net from 'node:net';

/** Listen and resolve with the bound port (port 0 picks a free one). Shared by every adapter's listeners. */
export function listen(srv: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, host, () => {
      srv.off('error', reject);
      resolve((srv.address() as net.AddressInfo).port);
    });
  });
}
