// What a newcomer trips on (issue 25): a listener given in part keeps the
// defaults of the rest, a port in use is one line naming the listener, its
// config key and flag (no stack trace, non-zero exit), and the version the
// node reports comes from package.json.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  assertReportsVersion,
  runCli,
  startNode,
  stopAllClients,
  uniqueName,
  type TestNode,
} from '../helpers.ts';

const PKG = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8'),
) as { version: string };

describe('newcomer trips', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'parley-newcomer-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('a listener given in part merges with its defaults', () => {
    const effective = async (yaml: string, flags: string[] = []) => {
      const f = path.join(dir, `${uniqueName('cfg')}.yaml`);
      writeFileSync(f, yaml);
      const r = await runCli([
        '--config',
        f,
        '--data-dir',
        path.join(dir, 'cfg-data'),
        ...flags,
        'check-config',
      ]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout);
    };

    it('xmpp: {tcp: {port: 5333}} keeps the default host; the other listeners keep theirs', async () => {
      const cfg = await effective('xmpp:\n  tcp: { port: 5333 }\n');
      assert.deepEqual(cfg.xmpp.tcp, { host: '127.0.0.1', port: 5333 });
      assert.deepEqual(cfg.xmpp.directTls, { host: '127.0.0.1', port: 5223 });
    });

    it('every listener: a host alone keeps the default port', async () => {
      const cfg = await effective(
        'xmpp: { directTls: { host: 0.0.0.0 } }\nmqtt: { tcp: { host: 0.0.0.0 }, tls: { port: 8884 } }\nweb: { http: { host: "::1" }, https: { port: 8443 }, metrics: { port: 9464 } }\n',
      );
      assert.deepEqual(cfg.xmpp.directTls, { host: '0.0.0.0', port: 5223 });
      assert.deepEqual(cfg.mqtt.tcp, { host: '0.0.0.0', port: 1883 });
      assert.deepEqual(cfg.mqtt.tls, { host: '127.0.0.1', port: 8884 });
      assert.deepEqual(cfg.web.http, { host: '::1', port: 5280 });
      assert.deepEqual(cfg.web.https, { host: '127.0.0.1', port: 8443 });
      assert.deepEqual(cfg.web.metrics, { host: '127.0.0.1', port: 9464 });
    });

    it('null still disables a listener, and --host alone does not enable it again; a port flag keeps the configured host', async () => {
      const cfg = await effective(
        'xmpp: { tcp: null, directTls: { host: 10.0.0.1, port: 6000 } }\nmqtt: { tls: null }\n',
        ['--host', '127.0.0.2'],
      );
      assert.equal(cfg.xmpp.tcp, null);
      assert.equal(cfg.mqtt.tls, null);
      assert.deepEqual(cfg.xmpp.directTls, { host: '127.0.0.2', port: 6000 });
      const cfg2 = await effective('xmpp: { directTls: { host: 10.0.0.1, port: 6000 } }\n', [
        '--xmpps-port',
        '6001',
      ]);
      assert.deepEqual(cfg2.xmpp.directTls, { host: '10.0.0.1', port: 6001 });
    });

    it('a bad field of a partial listener still fails with its exact path', async () => {
      const f = path.join(dir, 'bad.yaml');
      writeFileSync(f, 'mqtt:\n  tcp: { prt: 1 }\n');
      const r = await runCli(['--config', f, 'check-config']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /mqtt\.tcp: Unrecognized key: "prt"/);
    });
  });

  describe('a port in use', () => {
    let blocker: net.Server;
    let taken: number;
    before(async () => {
      blocker = net.createServer();
      await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
      taken = (blocker.address() as net.AddressInfo).port;
    });
    after(() => new Promise<void>((r) => blocker.close(() => r())));

    const ports = {
      '--xmpp-port': '0',
      '--xmpps-port': '0',
      '--mqtt-port': '0',
      '--mqtts-port': '0',
      '--http-port': '0',
      '--https-port': '0',
    };
    const startWith = (flag: keyof typeof ports) => {
      const d = path.join(dir, uniqueName('busy'));
      mkdirSync(d, { mode: 0o700 });
      const args = Object.entries({ ...ports, [flag]: String(taken) }).flat();
      return runCli(['--data-dir', d, '--host', '127.0.0.1', ...args, 'start'], 40_000);
    };

    for (const [flag, name, key] of [
      ['--xmpp-port', 'XMPP c2s', 'xmpp.tcp.port'],
      ['--mqtt-port', 'MQTT', 'mqtt.tcp.port'],
      ['--https-port', 'HTTPS', 'web.https.port'],
    ] as const) {
      it(`${flag}: one line naming the ${name} listener, ${key} and ${flag}; exit 1, no stack trace`, async () => {
        const r = await startWith(flag);
        assert.equal(r.code, 1, r.stdout + r.stderr);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.ok(lines[0].includes(`127.0.0.1:${taken}`), lines[0]);
        assert.ok(lines[0].includes(`the ${name}`), lines[0]);
        assert.ok(lines[0].includes(key), lines[0]);
        assert.ok(lines[0].includes(flag), lines[0]);
        assert.match(lines[0], /in use/);
        assert.doesNotMatch(r.stdout + r.stderr, /\n\s+at /, 'a stack trace');
      });
    }
  });

  describe('the reported version comes from package.json', () => {
    let node: TestNode;
    before(async () => {
      node = await startNode();
    });
    after(async () => {
      await stopAllClients();
      await node.dispose();
    });

    it(`XEP-0092 answer, /healthz header and the start log say ${PKG.version} [XEP-0092]`, async () => {
      const h = await assertReportsVersion(node, PKG.version, 'v');
      assert.equal(h.status, 200);
      const ready = node.log
        .map((l) => {
          try {
            return JSON.parse(l);
          } catch {
            return undefined;
          }
        })
        .find((l) => l?.msg === 'parley node ready');
      assert.equal(ready?.version, PKG.version);
    });
  });
});
