import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import type { Broker } from '../../../broker/index.ts';
import { makeBroker } from '../../../broker/test/helpers.ts';
import { installAdminRoutes } from '../admin.ts';
// The real metrics backend, as bin/ hands it to the adapter (a test may compose what bin/ does).
import { PromMetrics } from '../../../metrics/prometheus.ts';
import { WebServer } from '../server.ts';

/** A non-loopback IPv4 address of this machine, if there is one. */
function lanAddress(): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

/** One raw request from `from`; the status line's code. */
function rawStatus(port: number, from: string, bytes: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: from, port, localAddress: from });
    let got = '';
    s.on('connect', () => s.write(bytes));
    s.on('data', (d) => {
      got += d;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) {
        s.destroy();
        resolve(Number(m[1]));
      }
    });
    s.on('error', reject);
  });
}

describe('WebServer: TLS is the socket’s, not the request’s (issue 20 item 4)', () => {
  const ip = lanAddress();
  let broker: Broker;
  let web: WebServer;

  before(async function () {
    if (!ip) this.skip();
    broker = await makeBroker();
    web = new WebServer(broker, { http: { host: ip!, port: 0 }, https: null, tls: null });
    installAdminRoutes(web, broker, new PromMetrics(), { admins: ['alice'] });
    await web.start();
  });
  after(async () => {
    await web?.stop();
    await broker?.stop();
  });

  // The admin page asks for a password over plain HTTP from loopback only; an absolute https:// target must not pass for TLS [RFC9112 3.2.2]
  it('an absolute-form https:// target to the plain port from a non-loopback address is refused 403, like any plain request', async () => {
    const auth = `Authorization: Basic ${Buffer.from('alice:alice-pw').toString('base64')}\r\n`;
    for (const target of ['https://127.0.0.1/admin/api/stats', '/admin/api/stats']) {
      assert.equal(
        await rawStatus(
          web.ports.http!,
          ip!,
          `GET ${target} HTTP/1.1\r\nHost: ${ip}\r\n${auth}\r\n`,
        ),
        403,
        target,
      );
    }
  });
});
