// Black-box: one room, XMPP clients (@xmpp/client) and MQTT devices (mqtt.js)
// in it together: each sees the other's messages, joins and leaves; the
// room's rules (members-only, bans, passwords) hold on MQTT too.
import assert from 'node:assert/strict';
import { stopAllClients, uniqueName, xml, xmppClient, type TestClient } from '../helpers.ts';
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
import {
  MUC,
  NS_MUC_ADMIN,
  fromOccupant,
  isGroupchat,
  join,
  say,
  roomConfig,
} from '../muc-helpers.ts';

const PW = 'rooms-pw';

describe('MQTT rooms/ and XMPP MUC in one room', function () {
  this.timeout(30_000);
  let node: MqttTestNode;
  const human = uniqueName('rh');
  const dev = uniqueName('rd');
  const other = uniqueName('ro');
  let x: TestClient;

  before(async function () {
    this.timeout(60_000);
    node = await startMqttNode();
    await addUsers(node, { [human]: PW, [dev]: PW, [other]: PW });
    x = await xmppClient({ port: node.ports.xmpp, username: human, password: PW, resource: 'pc' });
  });
  after(async () => {
    await endAllMqtt();
    await stopAllClients();
    await node?.dispose();
  });

  const device = (username = dev, clientId = `c-${Math.random().toString(36).slice(2)}`) =>
    mqttConnect(node.mqttPorts().mqtt, { username, password: PW, clientId });

  it('a device subscribes (joins with its user name as nick), XMPP sees it join; messages flow both ways with the room seq; unsubscribe leaves', async () => {
    await join(x, 'mixed', 'human');
    const d = await device();
    const presence = collect(d, 'rooms/mixed/presence');
    assert.deepEqual(await grantedQos(d, ['rooms/mixed/presence', 'rooms/mixed'], 1), [1, 1]);
    const joined = await x.waitFor(fromOccupant('mixed', dev));
    assert.equal(joined.attrs.type, undefined);
    // XMPP → MQTT, with the stanza-id as seq
    const echo = await say(x, 'mixed', 'hello device');
    const got = JSON.parse((await nextMessage(d, 'rooms/mixed')).payload);
    assert.equal(got.body, 'hello device');
    assert.equal(got.nick, 'human');
    assert.equal(String(got.seq), echo.getChild('stanza-id', 'urn:xmpp:sid:0')!.attrs.id);
    // MQTT → XMPP, and the device does not get its own message back
    const own = collect(d, 'rooms/mixed');
    await d.publishAsync('rooms/mixed', JSON.stringify({ body: 'hello human' }), { qos: 1 });
    const m = await x.waitFor(isGroupchat('mixed', 'hello human'));
    assert.equal(m.attrs.from, `mixed@${MUC}/${dev}`);
    assert.ok(m.getChild('stanza-id', 'urn:xmpp:sid:0'));
    await sleepMs(200);
    assert.deepEqual(own, [], 'no echo unless asked');
    // presence of occupants as JSON
    await sleepMs(100);
    const pres = presence.map((p) => JSON.parse(p));
    assert.ok(
      pres.some((p) => p.nick === 'human' && p.available === true),
      JSON.stringify(pres),
    );
    assert.ok(pres.some((p) => p.nick === dev && p.self === true));
    // unsubscribe = leave
    await d.unsubscribeAsync('rooms/mixed');
    const left = await x.waitFor(fromOccupant('mixed', dev, 'unavailable'));
    assert.ok(left);
  });

  it('a nick and echo given on rooms/{room}/join; XMPP leaves show on rooms/{room}/presence; disconnect leaves', async () => {
    await join(x, 'nicked', 'human');
    const d = await device();
    await d.publishAsync('rooms/nicked/join', JSON.stringify({ nick: 'Sensor 7', echo: true }), {
      qos: 1,
    });
    await grantedQos(d, ['rooms/nicked', 'rooms/nicked/presence'], 1);
    await x.waitFor(fromOccupant('nicked', 'Sensor 7'));
    const next = nextMessage(d, 'rooms/nicked'); // delivered before the PUBACK
    await d.publishAsync('rooms/nicked', 'plain text reading 21.5', { qos: 1 });
    const mine = JSON.parse((await next).payload);
    assert.equal(mine.body, 'plain text reading 21.5');
    assert.equal(mine.nick, 'Sensor 7');
    const pres = collect(d, 'rooms/nicked/presence');
    await x.send(xml('presence', { to: `nicked@${MUC}/human`, type: 'unavailable' }));
    await x.waitFor(fromOccupant('nicked', 'human', 'unavailable'));
    await sleepMs(200);
    assert.ok(
      pres.map((p) => JSON.parse(p)).some((p) => p.nick === 'human' && p.available === false),
      pres.join('\n'),
    );
    await join(x, 'nicked', 'human');
    d.end(true);
    await x.waitFor(fromOccupant('nicked', 'Sensor 7', 'unavailable'));
  });

  it('presence broadcast [moderator]: a device sees its own presence and the moderator’s on rooms/{room}/presence, never another participant’s; messages still reach all [XEP-0045 15.5.3]', async () => {
    await join(x, 'hushed', 'human');
    const cfg = await x.request(
      roomConfig('hushed', { 'muc#roomconfig_presencebroadcast': ['moderator'] }),
    );
    assert.equal(cfg.attrs.type, 'result', cfg.toString());
    const d1 = await device();
    const p1 = collect(d1, 'rooms/hushed/presence');
    await grantedQos(d1, ['rooms/hushed/presence', 'rooms/hushed'], 1);
    const d2 = await device(other);
    const p2 = collect(d2, 'rooms/hushed/presence');
    await grantedQos(d2, ['rooms/hushed/presence', 'rooms/hushed'], 1);
    // the room's order: a message after both joins reaches each device after whatever the joins sent it
    const heard = [nextMessage(d1, 'rooms/hushed'), nextMessage(d2, 'rooms/hushed')];
    await say(x, 'hushed', 'after both joined');
    for (const m of await Promise.all(heard))
      assert.equal(JSON.parse(m.payload).body, 'after both joined');
    // who was shown, each once (a SUBSCRIBE no longer races the session's restore into a second join)
    const nicks = (list: string[]) =>
      list.map((p) => JSON.parse(p)).map((p) => `${p.nick}${p.self ? ' (self)' : ''}`);
    assert.deepEqual(nicks(p1), ['human', `${dev} (self)`]);
    assert.deepEqual(nicks(p2), ['human', `${other} (self)`]);
    assert.deepEqual(x.received.filter(fromOccupant('hushed', dev)), []);
    assert.deepEqual(x.received.filter(fromOccupant('hushed', other)), []);
  });

  it('members-only, bans and passwords are enforced on SUBSCRIBE (SUBACK 0x80); the password goes on rooms/{room}/join', async () => {
    await join(x, 'guarded', 'human');
    await x.request(
      roomConfig('guarded', {
        'muc#roomconfig_roomsecret': 'pw1',
        'muc#roomconfig_passwordprotectedroom': '1',
      }),
    );
    const d = await device();
    assert.deepEqual(await grantedQos(d, ['rooms/guarded'], 1), [128], 'no password');
    await d.publishAsync('rooms/guarded/join', JSON.stringify({ password: 'pw1' }), { qos: 1 });
    assert.deepEqual(await grantedQos(d, ['rooms/guarded'], 1), [1], 'with the password');
    await x.waitFor(fromOccupant('guarded', dev));
    // a ban takes the device out and keeps it out
    await x.request(
      xml(
        'iq',
        { type: 'set', to: `guarded@${MUC}` },
        xml(
          'query',
          { xmlns: NS_MUC_ADMIN },
          xml('item', { jid: `${dev}@localhost`, affiliation: 'outcast' }),
        ),
      ),
    );
    await x.waitFor(fromOccupant('guarded', dev, 'unavailable'));
    const d2 = await device();
    await d2.publishAsync('rooms/guarded/join', JSON.stringify({ password: 'pw1' }), { qos: 1 });
    assert.deepEqual(await grantedQos(d2, ['rooms/guarded'], 1), [128], 'banned');
    // members-only: a non-member device can neither join nor read presence
    await join(x, 'members', 'human');
    await x.request(roomConfig('members', { 'muc#roomconfig_membersonly': '1' }));
    const o = await device(other);
    assert.deepEqual(
      await grantedQos(o, ['rooms/members', 'rooms/members/presence', 'rooms/+', 'rooms/#'], 1),
      [128, 128, 128, 128],
    );
    // a message published there by a non-occupant is refused on its chat topic
    await o.subscribeAsync(`chat/${other}`, { qos: 1 });
    const next = nextMessage(o, `chat/${other}`); // answered before the PUBACK
    await o.publishAsync('rooms/members', 'let me in', { qos: 1 });
    const err = JSON.parse((await next).payload);
    assert.equal(err.type, 'error');
    assert.equal(err.error.condition, 'not-acceptable');
    await x.expectNone(isGroupchat('members', 'let me in'), 200);
  });

  it('a persistent session (clean session 0) is back in its rooms at the reconnect without a SUBSCRIBE; a SUBSCRIBE sent again then does not join twice [MQTT-3.1.2-4]', async () => {
    await join(x, 'kept', 'human');
    const clientId = `keep-${Math.random().toString(36).slice(2)}`;
    const opts = { username: other, password: PW, clientId, clean: false };
    const d = await mqttConnect(node.mqttPorts().mqtt, opts);
    assert.deepEqual(await grantedQos(d, ['rooms/kept'], 1), [1]);
    await x.waitFor(fromOccupant('kept', other), 5000, 'the device joins');
    d.end(true);
    await x.waitFor(fromOccupant('kept', other, 'unavailable'), 5000, 'the device leaves');
    const before = x.received.length;
    // back with the session kept, and no SUBSCRIBE: the restored subscription joins it
    const again = await mqttConnect(node.mqttPorts().mqtt, opts);
    await x.waitFor(fromOccupant('kept', other), 5000, 'rejoined by the restore');
    const heard = nextMessage(again, 'rooms/kept');
    await say(x, 'kept', 'welcome back');
    assert.equal(JSON.parse((await heard).payload).body, 'welcome back');
    // the device subscribes again, as many do at every connect: no second join, no presence update
    assert.deepEqual(await grantedQos(again, ['rooms/kept'], 1), [1]);
    const heard2 = nextMessage(again, 'rooms/kept');
    await x.send(
      xml(
        'message',
        { to: `kept@${MUC}`, type: 'groupchat' },
        xml('body', {}, 'after the subscribe'),
      ),
    );
    assert.equal(JSON.parse((await heard2).payload).body, 'after the subscribe');
    await x.waitFor(isGroupchat('kept', 'after the subscribe'), 5000, 'reflection');
    assert.equal(
      x.received.slice(before).filter(fromOccupant('kept', other)).length,
      1,
      'one join presence, not a join and a presence update',
    );
  });
});
