// Black-box XEP-0077 in-band registration of new accounts: raw streams
// before authentication (no client library registers), then the new account
// logs in with @xmpp/client. Per-address limits use other loopback sources
// (127.0.0.2…) on the same node.
import assert from 'node:assert/strict';
import { NS_FRAMING, parseFrame, RawWs } from '../web/web-helpers.ts';
import {
  closeAllRaw,
  DOMAIN,
  rawUnauthenticated as unauthenticated,
  startNode,
  stanzaError,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type Element,
  type TestNode,
} from '../helpers.ts';

const NS_REGISTER = 'jabber:iq:register';
const FEATURE = /<register xmlns=['"]http:\/\/jabber.org\/features\/iq-register['"]\/>/;

const fields = (user: string, password: string) =>
  `<query xmlns='${NS_REGISTER}'><username>${user}</username><password>${password}</password></query>`;

/** Register over a fresh stream from `from`; the answer. */
async function register(
  port: number,
  user: string,
  password: string,
  from?: string,
): Promise<Element> {
  const { c } = await unauthenticated(port, from);
  try {
    return await c.iq('set', fields(user, password));
  } finally {
    c.destroy();
  }
}

describe('XEP-0077 in-band registration of new accounts', function () {
  this.timeout(30_000);
  let node: TestNode;
  const PW = 'a-good-password';

  before(async function () {
    this.timeout(60_000);
    node = await startNode({
      config:
        'modules:\n  register:\n    allowRegistration: true\n    allowFrom: ["127.0.0.0/30", "::1"]\n    minSecondsBetweenRegistrations: 600\n    maxFailedRegistrations: 3\n',
    });
  });
  afterEach(async () => {
    closeAllRaw();
    await stopAllClients();
  });
  after(async () => node?.dispose());

  it('the stream feature and the form (fields and XEP-0004) before authentication; a registered account logs in [XEP-0077 3.1, 3.1.1, 4]', async () => {
    const { c, features } = await unauthenticated(node.ports.xmpp);
    assert.match(features, FEATURE);
    const form = await c.iq('get', `<query xmlns='${NS_REGISTER}'/>`);
    assert.equal(form.attrs.type, 'result', form.toString());
    assert.equal(form.attrs.to, undefined, 'no address to answer to before authentication');
    const q = form.getChild('query', NS_REGISTER)!;
    assert.ok(q.getChild('username') && q.getChild('password'), q.toString());
    const x = q.getChild('x', 'jabber:x:data')!;
    assert.deepEqual(
      x.getChildren('field').map((f) => f.attrs.var),
      ['FORM_TYPE', 'username', 'password'],
    );
    const user = uniqueName('Newbie');
    const done = await c.iq('set', fields(user, PW));
    assert.equal(done.attrs.type, 'result', done.toString());
    // [XEP-0077 3.1] the client then authenticates, on the same stream
    const { outcome } = await c.auth('SCRAM-SHA-1', user.toLowerCase(), PW);
    assert.match(outcome, /<success/);
    const client = await xmppClient({
      port: node.ports.xmpp,
      username: user.toLowerCase(),
      password: PW,
      resource: 'x',
    });
    assert.equal(client.bare, `${user.toLowerCase()}@${DOMAIN}`);
  });

  it('a second registration from the same address, on a new connection, waits: resource-constraint [XEP-0077 3.1]', async () => {
    // the first test registered from 127.0.0.1
    const again = await register(node.ports.xmpp, uniqueName('second'), PW);
    assert.deepEqual(stanzaError(again), { type: 'wait', condition: 'resource-constraint' });
  });

  it('refused attempts: weak password, bad or reserved name (not-acceptable); past maxFailedRegistrations the address is throttled, across connections [XEP-0077 3.1]', async () => {
    const from = '127.0.0.2';
    const { c, features } = await unauthenticated(node.ports.xmpp, from);
    assert.match(features, FEATURE);
    const weak = await c.iq('set', fields(uniqueName('weak'), 'short'));
    assert.equal(stanzaError(weak).condition, 'not-acceptable');
    const bad = await c.iq('set', fields('bad@name', PW));
    assert.equal(stanzaError(bad).condition, 'not-acceptable');
    const reserved = await c.iq('set', fields('Admin', PW));
    assert.equal(stanzaError(reserved).condition, 'not-acceptable');
    // three refusals with maxFailedRegistrations 3: the next is refused before it is looked at
    const taken = await c.iq('set', fields('admin-free-' + uniqueName('x'), PW));
    assert.deepEqual(stanzaError(taken), { type: 'wait', condition: 'resource-constraint' });
    c.destroy();
    const reconnect = await register(node.ports.xmpp, uniqueName('fresh'), PW, from);
    assert.equal(
      stanzaError(reconnect).condition,
      'resource-constraint',
      'reconnecting does not reset the count',
    );
  });

  it('a taken name is conflict, a too long one not-acceptable, the XEP-0004 form registers, <remove/> before login is registration-required [XEP-0077 3.1, 3.2, 4]', async () => {
    const { c } = await unauthenticated(node.ports.xmpp, '127.0.0.3');
    const existing = uniqueName('exists');
    await node.addUser(existing, PW);
    const conflict = await c.iq('set', fields(existing.toUpperCase(), PW));
    assert.equal(stanzaError(conflict).condition, 'conflict');
    const long = await c.iq('set', fields('a'.repeat(65), PW)); // maxUsernameLength 64
    assert.equal(stanzaError(long).condition, 'not-acceptable');
    const remove = await c.iq('set', `<query xmlns='${NS_REGISTER}'><remove/></query>`);
    assert.equal(stanzaError(remove).condition, 'registration-required');
    const user = uniqueName('formuser');
    const form = await c.iq(
      'set',
      `<query xmlns='${NS_REGISTER}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>${NS_REGISTER}</value></field>` +
        `<field var='username'><value>${user}</value></field><field var='password'><value>${PW}</value></field></x></query>`,
    );
    assert.equal(form.attrs.type, 'result', form.toString());
    await xmppClient({ port: node.ports.xmpp, username: user, password: PW, resource: 'f' });
  });

  it('an address outside allowFrom is not offered registration and gets not-allowed; other stanzas before login still end the stream [XEP-0077 3.1, RFC6120 4.9.3.12]', async () => {
    const { c, features } = await unauthenticated(node.ports.xmpp, '127.0.0.5');
    assert.doesNotMatch(features, FEATURE);
    const form = await c.iq('get', `<query xmlns='${NS_REGISTER}'/>`);
    assert.equal(stanzaError(form).condition, 'not-allowed');
    const set = await c.iq('set', fields(uniqueName('outsider'), PW));
    assert.equal(stanzaError(set).condition, 'not-allowed');
    c.send(`<iq type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>`);
    await c.waitFor(/not-authorized/);
    await c.waitClosed();
  });

  it('not over an unencrypted stream: no feature on plain WebSocket, and policy-violation [XEP-0077 3.1]', async () => {
    const r = await RawWs.connect(`ws://127.0.0.1:${node.ports.http}/xmpp-websocket`);
    try {
      r.send(`<open xmlns='${NS_FRAMING}' to='${DOMAIN}' version='1.0'/>`);
      assert.equal(parseFrame(await r.next()).name, 'open');
      assert.doesNotMatch(await r.next(), FEATURE);
      r.send(
        `<iq xmlns='jabber:client' type='set' id='w1'>${fields(uniqueName('cleartext'), PW)}</iq>`,
      );
      const answer = await r.next();
      assert.match(answer, /type=['"]error['"]/);
      assert.match(answer, /<policy-violation /);
    } finally {
      r.terminate();
    }
  });

  it('a logged-in user changes the password only to one the policy accepts [XEP-0077 3.3]', async () => {
    const user = uniqueName('changer');
    await node.addUser(user, PW);
    const a = await xmppClient({
      port: node.ports.xmpp,
      username: user,
      password: PW,
      resource: 'p',
    });
    const weak = await a.request(
      xml(
        'iq',
        { type: 'set', to: DOMAIN },
        xml('query', { xmlns: NS_REGISTER }, xml('username', {}, user), xml('password', {}, 'x')),
      ),
    );
    assert.equal(stanzaError(weak).condition, 'not-acceptable');
  });
});
