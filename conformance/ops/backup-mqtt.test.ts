// MQTT state in `parley backup` / `parley restore` (issue 25): retained
// messages, persistent sessions and their queued QoS 1 messages, copied from
// the running node's MQTT database (its snapshot, while clients publish) and
// from a stopped node's files, restored into a fresh data directory; the
// restored node serves them to real `mqtt` clients [MQTT-3.3.1-6] [MQTT-3.1.2-4].
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { uniqueName } from '../helpers.ts';
import {
  addUsers,
  collect,
  endAllMqtt,
  mqttConnect,
  nextMessage,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';
import { cliJson } from './cli-json.ts';

const ACL = `  acl:
    - { effect: allow, topic: 'public/#', access: readwrite }
`;
const Backup = z.object({
  dir: z.string(),
  records: z.number().int(),
  mqttRecords: z.number().int().min(1),
});
const Restore = z.object({
  manifest: z.object({ records: z.number().int(), mqttRecords: z.number().int() }),
  replaced: z.string().optional(),
  mqttReplaced: z.string().optional(),
});

describe('parley backup/restore: MQTT retained messages and persistent sessions', function () {
  this.timeout(120_000);
  let node: MqttTestNode;
  let tmp: string;
  const pub = uniqueName('mpub');
  const sub = uniqueName('msub');
  const PW = 'mqtt-backup-pw';
  const json = <T extends z.ZodType>(schema: T, args: string[], dataDir: string) =>
    cliJson(schema, dataDir, args);
  /** The state to keep: a retained message, and a persistent session with two QoS 1 messages queued while it is away. */
  const seed = async (port: number, tag: string) => {
    const p = await mqttConnect(port, { username: pub, password: PW, clientId: `p-${tag}` });
    await p.publishAsync(`public/${tag}/status`, `retained ${tag}`, { qos: 1, retain: true });
    const s = await mqttConnect(port, {
      username: sub,
      password: PW,
      clientId: `s-${tag}`,
      clean: false,
    });
    await s.subscribeAsync(`public/${tag}/inbox`, { qos: 1 });
    await s.endAsync();
    await p.publishAsync(`public/${tag}/inbox`, `queued ${tag} 1`, { qos: 1 });
    await p.publishAsync(`public/${tag}/inbox`, `queued ${tag} 2`, { qos: 1 });
    await p.endAsync();
  };
  /** What a node restored from the backup must serve: the retained message to a new subscriber, the queue to the returning session. */
  const check = async (port: number, tag: string) => {
    const r = await mqttConnect(port, { username: pub, password: PW, clientId: `r-${tag}` });
    const retained = nextMessage(r, `public/${tag}/status`, 5000);
    await r.subscribeAsync(`public/${tag}/status`, { qos: 1 });
    const m = await retained;
    assert.equal(m.payload, `retained ${tag}`);
    assert.equal(m.retain, true);
    const s = await mqttConnect(port, {
      username: sub,
      password: PW,
      clientId: `s-${tag}`,
      clean: false,
    });
    assert.equal(
      (s as unknown as { connackPacket?: { sessionPresent?: boolean } }).connackPacket
        ?.sessionPresent,
      true,
    );
    const got = collect(s, `public/${tag}/inbox`);
    for (let i = 0; i < 100 && got.length < 2; i++) await sleepMs(50);
    assert.deepEqual(got, [`queued ${tag} 1`, `queued ${tag} 2`]);
  };

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'parley-mqtt-backup-'));
    node = await startMqttNode(ACL);
    await addUsers(node, { [pub]: PW, [sub]: PW });
  });
  afterEach(() => endAllMqtt());
  after(async () => {
    await node?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('backup of a running node holds the MQTT state; restored into a fresh data directory, the node serves it', async () => {
    await seed(node.mqttPorts().mqtt, 'live');
    // publishing goes on while the backup is taken
    const busy = await mqttConnect(node.mqttPorts().mqtt, {
      username: pub,
      password: PW,
      clientId: 'busy',
    });
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++)
        await busy.publishAsync('public/busy', `n ${i}`, { qos: 1, retain: true });
    })();
    const dir = path.join(tmp, 'live');
    const bk = await json(Backup, ['backup', dir], node.dataDir);
    writing = false;
    await writer;
    assert.ok(bk.mqttRecords > 0);
    const fresh = path.join(tmp, 'fresh-live');
    const r = await json(Restore, ['restore', dir], fresh);
    assert.equal(r.manifest.mqttRecords, bk.mqttRecords);
    const node2 = await startMqttNode(ACL, { dataDir: fresh });
    try {
      await check(node2.mqttPorts().mqtt, 'live');
    } finally {
      await endAllMqtt();
      await node2.stop();
    }
  });

  it('backup with the node stopped copies the MQTT files; restore keeps the MQTT state it replaces beside it', async () => {
    await seed(node.mqttPorts().mqtt, 'cold');
    await endAllMqtt();
    await node.stop();
    const dir = path.join(tmp, 'cold');
    const bk = await json(Backup, ['backup', dir], node.dataDir);
    assert.ok(bk.mqttRecords > 0);
    const r = await json(Restore, ['restore', dir], node.dataDir);
    assert.match(r.mqttReplaced ?? '', /mqtt\.before-restore-/);
    await node.restart();
    await check(node.mqttPorts().mqtt, 'cold');
  });
});
