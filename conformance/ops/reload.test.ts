// `parley reload` and SIGHUP against a running node (issue 25): the
// configuration file is read again; live keys (log level, limits, admins,
// certificates) take effect on the wire at once, other changed keys are
// reported as needing a restart, and a configuration that does not validate
// changes nothing. Every `--json` answer is checked against a schema.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import {
  closeAllRaw,
  DOMAIN,
  rawLogin,
  runCli,
  startNode,
  uniqueName,
  xml,
  xmppClient,
  type TestNode,
} from '../helpers.ts';
import { cliFailure, Failure } from './cli-json.ts';

const Reload = z.strictObject({
  applied: z.array(z.string()),
  restartNeeded: z.array(z.string()),
  tls: z.strictObject({ fingerprint256: z.string().regex(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/) }),
});

describe('parley reload: the configuration without a restart', function () {
  this.timeout(90_000);
  let node: TestNode;
  const user = uniqueName('rl');
  const boss = uniqueName('boss');
  const PW = 'reload-pw';
  /** The node's config file (startNode passed it with --config), with `log` lines under `log:`. */
  const config = (rest: string, log = '  level: info\n') =>
    writeFileSync(path.join(node.dataDir, 'parley.yaml'), `log:\n${log}${rest}`);
  // The node reads the file it was started with; the CLI only finds its socket (no --config: it does not check the file itself).
  const reload = async () => {
    const r = await runCli(['--data-dir', node.dataDir, '--json', 'reload']);
    return { ...r, json: JSON.parse(r.stdout) as unknown };
  };

  before(async () => {
    // no --log-level flag: the file's log.level is the one in force (flags would win over it)
    node = await startNode({ config: 'log:\n  level: info\n', logLevel: null });
    await node.addUser(user, PW);
    await node.addUser(boss, PW);
  });
  after(async () => {
    closeAllRaw();
    await node?.dispose();
  });

  it('reload --json: live keys applied (limits, admins, XMPP stanza size) and in force on the wire; an MQTT packet size or log format change reported as needing a restart', async () => {
    config(
      `limits:\n  maxSessionsPerUser: 1\nadmins: [${boss}]\nxmpp:\n  maxStanzaSize: 4096\nmqtt:\n  maxPacketSize: 100000\n`,
      '  level: info\n  format: json\n',
    );
    const r = await reload();
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rep = Reload.parse(r.json);
    assert.deepEqual(rep.applied.sort(), [
      'admins',
      'limits.maxSessionsPerUser',
      'xmpp.maxStanzaSize',
    ]);
    assert.deepEqual(rep.restartNeeded.sort(), ['log.format', 'mqtt.maxPacketSize']);
    // the new limit holds at the next bind: a second session is refused [RFC6120 7.6.2.1 resource-constraint]
    const first = await rawLogin(node.ports.xmpp, user, PW, 'SCRAM-SHA-256', 'one');
    const second = await rawLogin(node.ports.xmpp, user, PW, 'SCRAM-SHA-256', 'two');
    assert.match(
      second.text,
      /<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/>/,
    );
    first.send('</stream:stream>');
    second.send('</stream:stream>');
    // the new admin sees the XEP-0133 commands at once [XEP-0050 2.2]
    const c = await xmppClient({
      port: node.ports.xmpp,
      username: boss,
      password: PW,
      resource: 'adm',
    });
    const items = await c.request(
      xml(
        'iq',
        { type: 'get', to: DOMAIN },
        xml('query', {
          xmlns: 'http://jabber.org/protocol/disco#items',
          node: 'http://jabber.org/protocol/commands',
        }),
      ),
    );
    assert.ok(items.getChild('query')!.getChildren('item').length > 0, items.toString());
    await c.stop();
    // the smaller stanza size holds for the next stanza: policy-violation [RFC6120 4.9.3.14]
    const big = await rawLogin(node.ports.xmpp, boss, PW, 'SCRAM-SHA-256', 'big');
    big.send(
      `<message to='${user}@${DOMAIN}' type='chat'><body>${'x'.repeat(8000)}</body></message>`,
    );
    await big.waitFor(/<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/);
    // the same file again: nothing new applied, the restart-only keys still reported (they keep their old value)
    const again = Reload.parse((await reload()).json);
    assert.deepEqual(again.applied, []);
    assert.deepEqual(again.restartNeeded.sort(), ['log.format', 'mqtt.maxPacketSize']);
  });

  it('log.level applies from the next line: debug lines appear after reload', async () => {
    const debugLines = () => node.log.filter((l) => l.includes('"level":20')).length;
    assert.equal(debugLines(), 0);
    config(
      `limits:\n  maxSessionsPerUser: 1\nadmins: [${boss}]\nxmpp:\n  maxStanzaSize: 4096\nmqtt:\n  maxPacketSize: 100000\n`,
      '  level: debug\n  format: json\n',
    );
    const rep = Reload.parse((await reload()).json);
    assert.deepEqual(rep.applied, ['log.level']);
    const c = await rawLogin(node.ports.xmpp, user, PW, 'SCRAM-SHA-256', 'dbg');
    c.send('</stream:stream>');
    for (let i = 0; i < 100 && debugLines() === 0; i++)
      await new Promise((res) => setTimeout(res, 50));
    assert.ok(debugLines() > 0, 'no debug line after the level went to debug');
  });

  it('an invalid configuration changes nothing: reload-failed with the key path, exit 1; the node keeps serving', async () => {
    config('limits:\n  maxSessionsPerUser: zero\n');
    const r = await reload();
    assert.equal(r.code, 1);
    const f = Failure.parse(r.json);
    assert.equal(f.code, 'reload-failed');
    assert.match(f.error, /limits\.maxSessionsPerUser/);
    // still one session at most (the previous reload's value)
    const first = await rawLogin(node.ports.xmpp, user, PW, 'SCRAM-SHA-256', 'a');
    const second = await rawLogin(node.ports.xmpp, user, PW, 'SCRAM-SHA-256', 'b');
    assert.match(second.text, /resource-constraint/);
    first.send('</stream:stream>');
    second.send('</stream:stream>');
  });

  it('SIGHUP reloads the same way (systemctl reload): the limit goes back up', async () => {
    config('limits:\n  maxSessionsPerUser: 5\n');
    const before = node.log.filter((l) => l.includes('configuration reloaded')).length;
    process.kill(node.pid!, 'SIGHUP');
    for (
      let i = 0;
      i < 200 && node.log.filter((l) => l.includes('configuration reloaded')).length === before;
      i++
    )
      await new Promise((res) => setTimeout(res, 50));
    const line = node.log.filter((l) => l.includes('configuration reloaded')).pop()!;
    assert.ok(line, 'no reload logged after SIGHUP');
    assert.ok(JSON.parse(line).applied.includes('limits.maxSessionsPerUser'));
    const first = await rawLogin(node.ports.xmpp, user, PW, 'SCRAM-SHA-256', 'x');
    const second = await rawLogin(node.ports.xmpp, user, PW, 'SCRAM-SHA-256', 'y');
    assert.doesNotMatch(second.text, /resource-constraint/);
    assert.match(second.text, /<jid>/);
    first.send('</stream:stream>');
    second.send('</stream:stream>');
  });

  it('with no node running: no-node', async () => {
    assert.equal(await cliFailure(path.join(node.dataDir, 'nowhere'), ['reload']), 'no-node');
  });
});
