// Black-box: an MQTT device fetches what it missed from its user's archive
// (history/request/{me} → history/response/{me}, docs/mqtt-mapping.md
// "History"), from the same archive and ids as XEP-0313 MAM, under the same
// ACL: a device may only ever read its own user's history.
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import {
  nextId,
  ping,
  presence,
  stopAllClients,
  uniqueName,
  xml,
  xmppClient,
  type TestClient,
} from '../helpers.ts';
import {
  addUsers,
  collect,
  endAllMqtt,
  grantedQos,
  mqttConnect,
  nextMessage,
  sleepMs,
  startMqttNode,
  type MqttTestNode,
} from '../mqtt-helpers.ts';

const PW = 'hist-pw';
const N = 120;

interface HistoryPage {
  id?: string;
  messages: {
    from: string;
    to: string;
    body: string;
    archiveId: string;
    id: string;
    timestamp: number;
    seq?: number;
  }[];
  complete: boolean;
  first?: string;
  last?: string;
  count?: number;
  error?: { condition: string; text?: string };
}

describe("MQTT history: a device fetches its user's archive", function () {
  this.timeout(60_000);
  let node: MqttTestNode;
  const dev = uniqueName('hdev');
  const human = uniqueName('hman');
  const mallory = uniqueName('hmal');
  const at = (u: string) => `${u}@localhost`;
  let h: TestClient;
  let device: MqttClient;

  /** One request on the device's own topic and the answer on its response topic. */
  async function ask(
    c: MqttClient,
    user: string,
    req: Record<string, unknown>,
  ): Promise<HistoryPage> {
    const got = nextMessage(c, `history/response/${user}`, 5000);
    await c.publishAsync(`history/request/${user}`, JSON.stringify(req), { qos: 1 });
    return JSON.parse((await got).payload) as HistoryPage;
  }

  before(async function () {
    this.timeout(120_000);
    node = await startMqttNode();
    await addUsers(node, { [dev]: PW, [human]: PW, [mallory]: PW });
    h = await xmppClient({
      port: node.ports.xmpp,
      username: human,
      password: PW,
      resource: 'desk',
    });
    await h.send(presence());
    // The device is away while the human writes: it fetches the history afterwards.
    for (let i = 0; i < N; i++)
      void h.send(
        xml('message', { to: at(dev), type: 'chat', id: nextId('h') }, xml('body', {}, `h${i}`)),
      );
    await ping(h);
    device = await mqttConnect(node.mqttPorts().mqtt, {
      username: dev,
      password: PW,
      clientId: 'pump-7',
    });
    await device.subscribeAsync(`history/response/${dev}`, { qos: 1 });
  });
  after(async () => {
    await endAllMqtt();
    await stopAllClients();
    await node?.dispose();
  });

  it('pages forwards with after, 50 at a time, with exact counts and complete on the last page', async () => {
    const seen: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 3; page++) {
      const p = await ask(device, dev, {
        id: `r${page}`,
        with: human,
        max: 50,
        ...(after ? { after } : {}),
      });
      assert.equal(p.id, `r${page}`);
      assert.equal(p.count, N);
      assert.equal(p.messages.length, page < 2 ? 50 : N - 100);
      assert.equal(p.complete, page === 2);
      assert.deepEqual(
        [p.first, p.last],
        [p.messages[0].archiveId, p.messages[p.messages.length - 1].archiveId],
      );
      for (const m of p.messages) {
        assert.equal(m.from, at(human));
        assert.equal(m.to, at(dev));
        assert.equal(typeof m.timestamp, 'number');
      }
      seen.push(...p.messages.map((m) => m.body));
      after = p.last;
    }
    assert.deepEqual(
      seen,
      Array.from({ length: N }, (_, i) => `h${i}`),
    );
  });

  it('with a device ("user/resource") matches only that device, without count [XEP-0313 4.1.1]', async () => {
    const desk = await ask(device, dev, { with: `${human}/desk`, max: 50 });
    assert.deepEqual([desk.messages.length, desk.complete, desk.count], [50, false, undefined]);
    assert.equal(desk.messages[0].body, 'h0');
    const full = await ask(device, dev, { with: `${at(human)}/desk`, max: 50, before: '' });
    assert.equal(full.messages.at(-1)?.body, `h${N - 1}`);
    const other = await ask(device, dev, { with: `${human}/phone` });
    assert.deepEqual([other.messages, other.complete, other.error], [[], true, undefined]);
  });

  it('before "" is the last page, oldest first; before an id pages backwards', async () => {
    const last = await ask(device, dev, { before: '', max: 10 });
    assert.deepEqual(
      last.messages.map((m) => m.body),
      Array.from({ length: 10 }, (_, i) => `h${N - 10 + i}`),
    );
    assert.equal(last.complete, false);
    const earlier = await ask(device, dev, { before: last.first, max: 10 });
    assert.deepEqual(
      earlier.messages.map((m) => m.body),
      Array.from({ length: 10 }, (_, i) => `h${N - 20 + i}`),
    );
  });

  it('the ids are the MAM ids of the same archive, and a live chat/ delivery carries its archiveId to resume from', async () => {
    const x = await xmppClient({
      port: node.ports.xmpp,
      username: dev,
      password: PW,
      resource: 'laptop',
    });
    const qid = nextId('q');
    const fin = await x.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'query',
          { xmlns: 'urn:xmpp:mam:2', queryid: qid },
          xml('set', { xmlns: 'http://jabber.org/protocol/rsm' }, xml('max', {}, '5')),
        ),
      ),
      10_000,
    );
    assert.equal(fin.attrs.type, 'result');
    const mamIds = x.received
      .filter((e) => e.getChild('result', 'urn:xmpp:mam:2')?.attrs.queryid === qid)
      .map((e) => e.getChild('result', 'urn:xmpp:mam:2')?.attrs.id);
    const first = await ask(device, dev, { max: 5 });
    assert.deepEqual(
      first.messages.map((m) => m.archiveId),
      mamIds,
    );
    // Live: the device subscribed to its chat topic gets the id; asking after it returns what came next.
    // (Subscribing also flushes the offline queue of the 120 to it first.)
    const chats = collect(device, `chat/${dev}`);
    await device.subscribeAsync(`chat/${dev}`, { qos: 1 });
    await h.send(xml('message', { to: at(dev), type: 'chat' }, xml('body', {}, 'live one')));
    let json: { archiveId: string; body: string } | undefined;
    for (let i = 0; i < 100 && !json; i++) {
      json = chats
        .map((p) => JSON.parse(p) as { archiveId: string; body: string })
        .find((m) => m.body === 'live one');
      if (!json) await sleepMs(50);
    }
    assert.ok(json, 'the live message reached chat/{me}');
    assert.ok(/^\d+$/.test(json.archiveId));
    await h.send(xml('message', { to: at(dev), type: 'chat' }, xml('body', {}, 'missed one')));
    await ping(h);
    const next = await ask(device, dev, { after: json.archiveId });
    assert.deepEqual(
      [next.messages.map((m) => m.body), next.complete, next.count],
      [['missed one'], true, N + 2],
    );
    // start/end: the same archive times MAM filters on.
    const t = next.messages[0].timestamp;
    const byTime = await ask(device, dev, { start: t, end: new Date(t).toISOString() });
    assert.ok(byTime.messages.some((m) => m.body === 'missed one'));
  });

  it("a device asking another user's history gets nothing: its request is refused and the response topic cannot be subscribed", async () => {
    const mal = await mqttConnect(node.mqttPorts().mqtt, {
      username: mallory,
      password: PW,
      clientId: 'm-1',
    });
    assert.deepEqual(await grantedQos(mal, [`history/response/${dev}`], 1), [0x80]);
    assert.deepEqual(await grantedQos(mal, [`history/response/${mallory}`], 1), [1]);
    const toVictim = collect(device, `history/response/${dev}`);
    const toMallory = collect(mal, `history/response/${mallory}`);
    // Acknowledged and dropped (mqtt.deniedPublish: drop), never answered [MQTT-3.3.5-2].
    await mal.publishAsync(`history/request/${dev}`, JSON.stringify({ max: 5 }), { qos: 1 });
    // Nor can anyone forge a response into another device's topic.
    await mal.publishAsync(
      `history/response/${dev}`,
      JSON.stringify({ messages: [{ body: 'forged' }], complete: true, count: 1 }),
      { qos: 1 },
    );
    await sleepMs(500);
    assert.deepEqual([toVictim, toMallory], [[], []]);
    // Mallory's own history has nothing of the others' conversation.
    const own = await ask(mal, mallory, { max: 50 });
    assert.deepEqual([own.messages, own.count, own.complete], [[], 0, true]);
  });

  it('an unknown id is item-not-found and a malformed request bad-request, as errors on the response topic', async () => {
    const missing = await ask(device, dev, { id: 'x1', after: '424242' });
    assert.deepEqual([missing.id, missing.error?.condition], ['x1', 'item-not-found']);
    const got = nextMessage(device, `history/response/${dev}`, 5000);
    await device.publishAsync(`history/request/${dev}`, 'not json', { qos: 1 });
    assert.equal((JSON.parse((await got).payload) as HistoryPage).error?.condition, 'bad-request');
    const unknown = await ask(device, dev, { id: 'x2', limit: 5 });
    assert.deepEqual([unknown.id, unknown.error?.condition], ['x2', 'bad-request']);
  });
});
