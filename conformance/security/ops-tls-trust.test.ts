// Black-box, issue 20 "Tests": the suite's TLS clients verify the node's
// certificate (chain and name) with the test CA of conformance/test-ca.ts,
// @xmpp/client included, so a certificate problem fails a test; and a node
// with no configured certificate generates a local CA (tls/ca.pem) and a
// certificate it signed for the domain and 127.0.0.1.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  RawConn,
  closeAllRaw,
  otherCa,
  ping,
  startNode,
  stopAllClients,
  uniqueName,
  xmppClient,
  type TestNode,
} from '../helpers.ts';
import { handshake, starttlsHandshake } from './tls-helpers.ts';

const PW = 'tls-pw';

describe('security: the suite verifies certificates (issue 20, Tests)', function () {
  this.timeout(60_000);
  let seeded: TestNode;
  let own: TestNode;
  const bob = uniqueName('tls-bob');

  before(async () => {
    seeded = await startNode();
    own = await startNode({ seedTls: false }); // generates its own CA and certificate
    await Promise.all([seeded.addUser(bob, PW), own.addUser(bob, PW)]);
  });
  after(async () => {
    await stopAllClients();
    closeAllRaw();
    await seeded?.dispose();
    await own?.dispose();
  });

  it('a client trusting another CA fails the handshake: direct TLS, STARTTLS, and the test CA against a node with its own', async () => {
    const other = await otherCa();
    await assert.rejects(
      handshake(seeded.ports.xmpps, { ca: other.cert }),
      (err: NodeJS.ErrnoException) => {
        assert.match(
          String(err.code),
          /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED/,
        );
        return true;
      },
    );
    await assert.rejects(
      starttlsHandshake(seeded.ports.xmpp, { ca: other.cert }),
      /unable to verify|issuer|self.signed/i,
    );
    // The node's own CA is not the suite's: the suite's helpers refuse it too.
    await assert.rejects(handshake(own.ports.xmpps), /unable to verify|issuer|self.signed/i);
    await assert.rejects(
      RawConn.connect(own.ports.xmpps, { directTls: true }),
      /unable to verify|issuer|self.signed/i,
    );
  });

  it("@xmpp/client verifies too: it logs in to a node serving the test CA's certificate and fails against one that is not", async () => {
    const ok = await xmppClient({ port: seeded.ports.xmpp, username: bob, password: PW });
    await ping(ok);
    await assert.rejects(
      xmppClient({ port: own.ports.xmpp, username: bob, password: PW }),
      /unable to verify|issuer|self.signed/i,
    );
    await assert.rejects(
      xmppClient({ port: own.ports.xmpps, directTls: true, username: bob, password: PW }),
      /unable to verify|issuer|self.signed/i,
    );
  });

  it('a certificate for another name fails: the name is checked, not only the signature', async () => {
    await assert.rejects(
      handshake(seeded.ports.xmpps, { servername: 'evil.example' }),
      (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
        return true;
      },
    );
  });

  it("a generated certificate is signed by the node's CA (tls/ca.pem) for the domain and 127.0.0.1", async () => {
    const ca = readFileSync(path.join(own.dataDir, 'tls', 'ca.pem'), 'utf8');
    await handshake(own.ports.xmpps, { ca }); // servername localhost
    await handshake(own.ports.xmpps, { ca, servername: undefined }); // checked against IP 127.0.0.1
    await starttlsHandshake(own.ports.xmpp, { ca });
    const leaf = new X509Certificate(
      readFileSync(path.join(own.dataDir, 'tls', 'cert.pem'), 'utf8'),
    );
    assert.ok(leaf.checkIssued(new X509Certificate(ca)));
    assert.equal(leaf.ca, false);
  });
});
