import type net from 'node:net';

/**
 * Listen and resolve with the bound port (port 0 picks a free one). Shared by
 * every adapter's listeners. Once listening, the server keeps an `error`
 * listener: a failed accept (EMFILE when file descriptors run out) is
 * reported there, and without a listener it would end the process. `onError`
 * logs and counts it; the listener goes on accepting when descriptors free up.
 */
export function listen(
  srv: net.Server,
  host: string,
  port: number,
  onError?: (err: Error) => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, host, () => {
      srv.off('error', reject);
      srv.on('error', (err: Error) => {
        if (onError) onError(err);
        else process.emitWarning(`listener ${host}:${port}: ${err.message}`);
      });
      resolve((srv.address() as net.AddressInfo).port);
    });
  });
}
