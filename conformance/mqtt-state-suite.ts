// The MQTT state scenarios every shared store must pass (Redis:
// conformance/mqtt/redis-state.test.ts; MongoDB: mongodb-state.test.ts, with
// MONGODB_URL): a persistent session's QoS 1 queue and subscriptions and the
// retained messages survive kill -9 of the node and are served by a node with
// a data directory of its own that shares the store; removing the account
// erases its sessions, queue and will from the store. Call it inside the
// suite's describe, after the hooks that start the store and before the ones
// that stop it (mocha runs `after` hooks in the order they are defined).
import assert from 'node:assert/strict';
import path from 'node:path';
import { runCli, uniqueName } from './helpers.ts';
import {
  addUsers,
  collect,
  endAllMqtt,
  mqttConnect,
  nextMessage,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from './mqtt-helpers.ts';

export interface SharedMqttStore {
  /** top-level YAML putting a node's store (and so its MQTT state) on the shared store */
  storageYaml(): string;
  /** what the store holds for the client ids of `user` (`{user}/…`): empty once erased */
  stateOf(user: string): Promise<string[]>;
}

/** Connect with the suite's password, the real `mqtt` client. */
export const connectAs = (
  node: MqttTestNode,
  username: string,
  password: string,
  clientId: string,
  extra: Record<string, unknown> = {},
) => mqttConnect(node.mqttPorts().mqtt, { username, password, clientId, ...extra });

/** Wait until `got` holds `n` messages (or 5 s passed), then hand it back. */
export async function atLeast(got: string[], n: number): Promise<string[]> {
  for (let i = 0; i < 100 && got.length < n; i++) await sleepMs(50);
  return got;
}

export function sharedMqttStateTests(store: SharedMqttStore): void {
  const nodes: MqttTestNode[] = [];
  const u = uniqueName('ms');
  const v = uniqueName('ms');
  const PW = 'pw-mqtt-state';
  const start = async () => {
    const node = await startMqttNode('', { config: store.storageYaml() });
    nodes.push(node);
    return node;
  };
  const as = (node: MqttTestNode, user: string, id: string, extra?: Record<string, unknown>) =>
    connectAs(node, user, PW, id, extra);

  afterEach(() => endAllMqtt());
  after(async () => {
    for (const n of nodes) await n.dispose();
  });

  it('QoS 1 messages queued for an offline persistent session, its subscription and retained messages survive kill -9, served by a node with a fresh data directory [MQTT-4.1.0-1] [MQTT-3.1.2-4] [MQTT-3.3.1-6]', async () => {
    const first = await start();
    await addUsers(first, { [u]: PW, [v]: PW });
    let keeper = await as(first, u, 'keeper', { clean: false });
    await keeper.subscribeAsync('public/keep', { qos: 1 });
    await keeper.endAsync();
    const pub = await as(first, v, 'publisher');
    // Published with QoS 2: its PUBREC comes once the message is queued and
    // retained [MQTT-4.3.3-2]. (aedes writes a QoS 1 PUBACK before it
    // publishes, so a kill -9 right after a PUBACK can lose the message.)
    await pub.publishAsync('public/keep', 'q1-a', { qos: 2 });
    await pub.publishAsync('public/keep', 'q1-b', { qos: 2 });
    await pub.publishAsync('public/state', 'retained-v1', { qos: 2, retain: true });
    await first.kill9();
    await endAllMqtt();

    const second = await start();
    assert.notEqual(second.dataDir, first.dataDir);
    keeper = await as(second, u, 'keeper', { clean: false });
    assert.deepEqual(await atLeast(collect(keeper, 'public/keep'), 2), ['q1-a', 'q1-b']);
    // The session's subscription came back too (no SUBSCRIBE): a new message reaches it live.
    const live = nextMessage(keeper, 'public/keep', 5000);
    const pub2 = await as(second, v, 'publisher2');
    await pub2.publishAsync('public/keep', 'q1-live', { qos: 1 });
    assert.equal((await live).payload, 'q1-live');

    const fresh = await as(second, v, 'fresh');
    const retained = nextMessage(fresh, 'public/state');
    await fresh.subscribeAsync('public/state', { qos: 1 });
    assert.equal((await retained).payload, 'retained-v1');

    // Reconnecting again delivers none of it twice.
    await keeper.endAsync();
    keeper = await as(second, u, 'keeper', { clean: false });
    const again = collect(keeper, 'public/keep');
    await sleepMs(300);
    assert.deepEqual(again, []);
  });

  it('removing the account erases its sessions, queue and will from the store; the new account of the name starts clean [MQTT-3.2.2-3]', async () => {
    const node = nodes[nodes.length - 1];
    const w = uniqueName('mw');
    await addUsers(node, { [w]: PW });
    const dev = await as(node, w, 'dev', {
      clean: false,
      will: { topic: `wills/${w}`, payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    await dev.subscribeAsync('public/erase', { qos: 1 });
    await dev.endAsync();
    const pub = await as(node, v, 'publisher3');
    await pub.publishAsync('public/erase', 'queued', { qos: 1 });
    assert.ok((await store.stateOf(w)).length > 0, 'the session is in the store');
    const r = await runCli([
      '--data-dir',
      node.dataDir,
      '--config',
      path.join(node.dataDir, 'parley.yaml'),
      'user',
      'remove',
      w,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await store.stateOf(w), []);
    await addUsers(node, { [w]: PW });
    const back = await as(node, w, 'dev', { clean: false });
    const got = collect(back, 'public/erase');
    await sleepMs(300);
    assert.deepEqual(got, [], 'nothing of the old account is delivered');
  });
}
