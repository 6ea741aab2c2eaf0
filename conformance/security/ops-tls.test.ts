// Black-box, issue 20 "Also" (TLS) and "Tests" (TLS trust): every TLS
// listener (XMPP STARTTLS and direct TLS, MQTT over TLS, HTTPS) offers only
// forward-secret suites by default, the policy is configurable (tls.ciphers,
// tls.minVersion), certificates are reloaded by `parley reload-tls` and
// SIGHUP without dropping connections (trust: ops-tls-trust.test.ts).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import {
  closeAllRaw,
  issueLeaf,
  ping,
  runCli,
  stopAllClients,
  testPki,
  uniqueName,
  xmppClient,
  startNode,
  type TestNode,
} from '../helpers.ts';
import { handshake, starttlsHandshake } from './tls-helpers.ts';
import {
  addUsers,
  endAllMqtt,
  mqttConnect,
  nextMessage,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

const PW = 'tls-pw';

/** Only a static-RSA key exchange, TLS 1.2: what a client without forward secrecy offers. */
const STATIC_RSA: tls.ConnectionOptions = { ciphers: 'AES128-SHA256', maxVersion: 'TLSv1.2' };

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

describe('security: tls.ciphers and tls.minVersion are configurable', function () {
  this.timeout(60_000);
  let node: TestNode;
  after(async () => {
    closeAllRaw();
    await node?.dispose();
  });

  it('tls.minVersion TLSv1.3 refuses a TLS 1.2 client; tls.ciphers may allow a suite the default refuses', async () => {
    node = await startNode({
      config: `tls: { minVersion: TLSv1.3, ciphers: 'TLS_AES_128_GCM_SHA256:AES128-SHA256' }\n`,
    });
    await assert.rejects(
      handshake(node.ports.xmpps, { maxVersion: 'TLSv1.2' }),
      /protocol version|alert/i,
    );
    await assert.rejects(
      starttlsHandshake(node.ports.xmpp, { maxVersion: 'TLSv1.2' }),
      /protocol version|alert/i,
    );
    await handshake(node.ports.xmpps, { minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' });
    await node.dispose();
    node = await startNode({ config: `tls: { ciphers: 'AES128-SHA256' }\n` });
    await handshake(node.ports.xmpps, STATIC_RSA); // the operator's choice, not the default
  });
});

describe('security: TLS policy on every listener, certificates reloaded without dropping connections (issue 20, Also)', function () {
  this.timeout(60_000);
  let node: MqttTestNode;
  const alice = uniqueName('tls-alice');

  before(async () => {
    node = await startMqttNode();
    await addUsers(node, { [alice]: PW });
  });
  after(async () => {
    await stopAllClients();
    await endAllMqtt();
    closeAllRaw();
    await node?.dispose();
  });

  const tlsDir = () => path.join(node.dataDir, 'tls');
  async function replaceCertificate(): Promise<string> {
    const leaf = await issueLeaf((await testPki()).ca);
    writeFileSync(path.join(tlsDir(), 'cert.pem'), leaf.cert);
    writeFileSync(path.join(tlsDir(), 'key.pem'), leaf.key);
    return fingerprint(leaf.cert);
  }
  const allListeners = async () => ({
    directTls: await handshake(node.ports.xmpps),
    starttls: await starttlsHandshake(node.ports.xmpp),
    mqtts: await handshake(node.mqttPorts().mqtts),
    https: await handshake(node.ports.https),
  });
  const all = (fp: string) => ({ directTls: fp, starttls: fp, mqtts: fp, https: fp });

  const listeners = (): [string, number][] => [
    ['XMPP direct TLS [XEP-0368]', node.ports.xmpps],
    ['MQTT over TLS', node.mqttPorts().mqtts],
    ['HTTPS (BOSH, WebSocket)', node.ports.https],
  ];

  it('a client offering only a static-RSA suite (AES128-SHA256, TLS 1.2) is refused on every listener; ECDHE and TLS 1.3 are served [RFC7525 4.2]', async () => {
    for (const [name, port] of listeners()) {
      await assert.rejects(
        handshake(port, STATIC_RSA),
        /handshake failure|no shared cipher|alert/i,
        `${name} accepted static RSA`,
      );
      await handshake(port, { ciphers: 'ECDHE-RSA-AES128-GCM-SHA256', maxVersion: 'TLSv1.2' });
      await handshake(port, { minVersion: 'TLSv1.3' });
    }
    await assert.rejects(
      starttlsHandshake(node.ports.xmpp, STATIC_RSA),
      /handshake failure|alert/i,
      'STARTTLS accepted static RSA',
    );
    await starttlsHandshake(node.ports.xmpp, {
      ciphers: 'ECDHE-RSA-AES256-GCM-SHA384',
      maxVersion: 'TLSv1.2',
    });
  });

  it('TLS 1.1 is refused', async () => {
    await assert.rejects(
      handshake(node.ports.xmpps, {
        minVersion: 'TLSv1',
        maxVersion: 'TLSv1.1',
        ciphers: 'DEFAULT@SECLEVEL=0',
      }),
    );
  });

  it('`parley reload-tls`: new connections on every listener get the new certificate; open XMPP and MQTT sessions keep working', async () => {
    const before = fingerprint(readFileSync(path.join(tlsDir(), 'cert.pem'), 'utf8'));
    assert.deepEqual(await allListeners(), all(before));
    const xmpp = await xmppClient({ port: node.ports.xmpp, username: alice, password: PW }); // STARTTLS before the reload
    const mqtt = await mqttConnect(node.mqttPorts().mqtts, {
      tls: true,
      username: alice,
      password: PW,
      clientId: uniqueName('c'),
    });
    await mqtt.subscribeAsync('tls/reload', { qos: 1 });

    const after = await replaceCertificate();
    assert.notEqual(after, before);
    const r = await runCli(['--data-dir', node.dataDir, 'reload-tls']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(after), `the CLI prints the new fingerprint: ${r.stdout}`);

    assert.deepEqual(await allListeners(), all(after));
    await ping(xmpp); // the session from before the reload
    const got = nextMessage(mqtt, 'tls/reload');
    await mqtt.publishAsync('tls/reload', 'still here', { qos: 1 });
    assert.equal((await got).payload, 'still here');
    const second = await xmppClient({
      port: node.ports.xmpps,
      directTls: true,
      username: alice,
      password: PW,
    });
    await ping(second);
  });

  it('SIGHUP reloads too, and the node keeps running', async () => {
    const next = await replaceCertificate();
    process.kill(node.pid!, 'SIGHUP');
    const deadline = Date.now() + 10_000;
    while ((await handshake(node.ports.xmpps)) !== next) {
      assert.ok(Date.now() < deadline, 'no new certificate 10 s after SIGHUP');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(await allListeners(), all(next));
  });

  it('a certificate that does not match its key is refused: the CLI fails and the old certificate stays', async () => {
    const served = await handshake(node.ports.xmpps);
    const other = await issueLeaf((await testPki()).ca);
    writeFileSync(path.join(tlsDir(), 'cert.pem'), other.cert); // key.pem stays the old one
    const r = await runCli(['--data-dir', node.dataDir, 'reload-tls']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /key values mismatch|private key/i);
    assert.equal(await handshake(node.ports.xmpps), served);
  });
});
