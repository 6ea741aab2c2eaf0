/**
 * The room core (broker/rooms.ts) without any protocol: fan-out order and
 * slicing, temporary and persistent rooms, moderation rules, limits.
 */
import assert from 'node:assert/strict';
import { LocalBus, LocalRegistry } from '../../cluster/local.ts';
import { MemoryStorage } from '../../storage/memory.ts';
import { Address } from '../address.ts';
import { Broker } from '../broker.ts';
import { BrokerError } from '../errors.ts';
import rooms from '../modules/rooms.ts';
import { roomService, type Device, type RoomEvent, type RoomService } from '../rooms.ts';
import type { Session } from '../session.ts';
import { FakeSession } from './helpers.ts';

const DOMAIN = 'localhost';

async function start(
  storage = new MemoryStorage(),
  options: Record<string, unknown> = {},
): Promise<{ broker: Broker; svc: RoomService; got: Map<string, RoomEvent[]> }> {
  const broker = new Broker({
    domain: DOMAIN,
    storage,
    cluster: { bus: new LocalBus('n1'), registry: new LocalRegistry() },
    modules: [{ def: rooms, options }],
    limits: { scramIterations: 16 },
  });
  await broker.start();
  const svc = roomService(broker)!;
  const got = new Map<string, RoomEvent[]>();
  svc.setRenderer('xmpp', (s: Session, d: Device, ev: RoomEvent) => {
    const list = got.get(d.key) ?? [];
    list.push(ev);
    got.set(d.key, list);
  });
  return { broker, svc, got };
}

async function device(broker: Broker, user: string, resource: string): Promise<Address> {
  const a = Address.of(user, DOMAIN, resource);
  await broker.sessions.bind(new FakeSession(a));
  return a;
}

function code(fn: () => unknown): Promise<string> {
  return Promise.resolve()
    .then(fn)
    .then(
      () => 'ok',
      (e) => (e instanceof BrokerError ? e.condition : String(e)),
    );
}

describe('rooms core', function () {
  this.timeout(30_000);

  it('1 sender → 2,000 devices: every device gets every message in room order, in slices that yield the loop', async () => {
    // Messages are what this measures: no presence broadcast, so the 2,000 joins are not 2 M presence deliveries
    const { broker, svc, got } = await start(new MemoryStorage(), {
      fanoutSlice: 100,
      defaultPresenceBroadcast: [],
    });
    const sender = await device(broker, 'u0', 'r');
    const { room } = await svc.join('big', { device: sender, nick: 'u0' });
    const devs: Address[] = [];
    for (let i = 1; i < 2000; i++) {
      const d = await device(broker, `u${i}`, 'r');
      devs.push(d);
      await svc.join('big', { device: d, nick: `u${i}` });
    }
    await svc.drained(room);
    got.clear();
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    for (let i = 0; i < 5; i++) await svc.post(room, sender.toString(), { body: `m${i}` });
    await svc.drained(room);
    clearInterval(ticker);
    for (const d of [sender, ...devs]) {
      const msgs = (got.get(d.toString()) ?? [])
        .filter((e) => e.kind === 'message')
        .map((e) => (e.kind === 'message' ? e.msg.body : ''));
      assert.deepEqual(msgs, ['m0', 'm1', 'm2', 'm3', 'm4'], d.toString());
    }
    // 10,000 deliveries at 100 per slice: the event loop ran timers in between.
    assert.ok(turns > 0, 'fan-out never yielded');
    const seqs = (got.get(sender.toString()) ?? []).flatMap((e) =>
      e.kind === 'message' ? [e.msg.seq] : [],
    );
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => seqs[0] + i),
    );
    await broker.stop();
  });

  it('a temporary room goes away with its last occupant; a new room of the same name does not see the old timeline', async () => {
    const { broker, svc } = await start();
    const a = await device(broker, 'alice', 'r');
    const { room, created } = await svc.join('tmp', { device: a, nick: 'alice' });
    assert.equal(created, true);
    await svc.post(room, a.toString(), { body: 'old' });
    svc.leave(room, a.toString());
    assert.equal(svc.get('tmp'), undefined);
    const again = await svc.join('tmp', { device: a, nick: 'alice' });
    assert.equal(again.created, true);
    assert.deepEqual(await svc.history(again.room, {}), []);
    await broker.stop();
  });

  it('a persistent room keeps config, affiliations and subject across a restart', async () => {
    const storage = new MemoryStorage();
    let { broker, svc } = await start(storage);
    const a = await device(broker, 'alice', 'r');
    const { room } = await svc.join('keep', { device: a, nick: 'alice' });
    await svc.configure(
      room,
      { user: 'alice@localhost' },
      { persistent: true, description: 'remark', membersOnly: true },
    );
    await svc.setAffiliation(room, { user: 'alice@localhost' }, 'bob@localhost', 'member');
    await svc.post(room, a.toString(), { subject: 'announcement' });
    await svc.post(room, a.toString(), { body: 'hello' });
    await broker.stop();
    ({ broker, svc } = await start(storage));
    const r = svc.get('keep')!;
    assert.equal(r.config.description, 'remark');
    assert.equal(r.affiliation('bob@localhost'), 'member');
    assert.equal(r.affiliation('alice@localhost'), 'owner');
    assert.equal(r.subject?.text, 'announcement');
    assert.deepEqual(
      (await svc.history(r, {})).map((m) => m.body ?? m.subject),
      ['announcement', 'hello'],
    );
    await broker.stop();
  });

  it('moderation rules: participants may not kick (forbidden), members may not change affiliations (forbidden), admins may not touch owners (not-allowed), the last owner stays (conflict)', async () => {
    const { broker, svc } = await start();
    const a = await device(broker, 'alice', 'r');
    const b = await device(broker, 'bob', 'r');
    const { room } = await svc.join('mod', { device: a, nick: 'alice' });
    await svc.join('mod', { device: b, nick: 'bob' });
    assert.equal(
      await code(() => svc.setRole(room, { user: 'bob@localhost' }, 'alice', 'none')),
      'forbidden',
    );
    await svc.setAffiliation(room, { user: 'alice@localhost' }, 'bob@localhost', 'member');
    assert.equal(
      await code(() =>
        svc.setAffiliation(room, { user: 'bob@localhost' }, 'carol@localhost', 'member'),
      ),
      'forbidden',
    );
    await svc.setAffiliation(room, { user: 'alice@localhost' }, 'bob@localhost', 'admin');
    assert.equal(
      await code(() =>
        svc.setAffiliation(room, { user: 'bob@localhost' }, 'alice@localhost', 'none'),
      ),
      'not-allowed',
    );
    assert.equal(
      await code(() =>
        svc.setAffiliation(room, { user: 'alice@localhost' }, 'alice@localhost', 'admin'),
      ),
      'conflict',
    );
    assert.equal(
      await code(() => svc.join('mod', { device: a, nick: 'x'.repeat(1024) })),
      'not-acceptable',
    );
    await broker.stop();
  });

  it('[XEP-0045 15.5.3] presence broadcast [moderator]: 2,000 participants join and no presence event is built or sent about one of them to anyone but itself', async () => {
    const { broker, svc, got } = await start(new MemoryStorage(), {
      defaultPresenceBroadcast: ['moderator'],
    });
    const owner = await device(broker, 'u0', 'r');
    const { room } = await svc.join('quiet', { device: owner, nick: 'u0' });
    assert.deepEqual(room.config.presenceBroadcast, ['moderator']);
    let built = 0;
    const presenceEvent = svc.presenceEvent.bind(svc);
    svc.presenceEvent = (...args) => {
      built++;
      return presenceEvent(...args);
    };
    const devs: Address[] = [];
    for (let i = 1; i <= 2000; i++) {
      const d = await device(broker, `u${i}`, 'r');
      devs.push(d);
      await svc.join('quiet', { device: d, nick: `u${i}`, history: { maxstanzas: 0 } });
    }
    await svc.drained(room);
    // each join: its own presence, and the one moderator's for the newcomer
    assert.equal(built, 2 * 2000);
    const presenceFrom = (d: Address) =>
      (got.get(d.toString()) ?? []).flatMap((e) => (e.kind === 'presence' ? [e.nick] : []));
    assert.deepEqual(presenceFrom(owner), ['u0']);
    for (const [i, d] of devs.entries()) assert.deepEqual(presenceFrom(d), ['u0', `u${i + 1}`]);
    // A participant made moderator enters the others' view; one made visitor again leaves it
    got.clear();
    await svc.setAffiliation(room, 'operator', 'u1@localhost', 'admin');
    await svc.drained(room);
    const seen = (d: Address) =>
      (got.get(d.toString()) ?? []).flatMap((e) =>
        e.kind === 'presence' ? [`${e.nick} ${e.available ? e.role : 'gone'}`] : [],
      );
    assert.deepEqual(seen(devs[1]), ['u1 moderator']);
    assert.deepEqual(seen(devs[0]), ['u1 moderator']);
    got.clear();
    await svc.setAffiliation(room, 'operator', 'u1@localhost', 'none');
    await svc.drained(room);
    assert.deepEqual(seen(devs[1]), ['u1 gone']);
    assert.deepEqual(seen(devs[0]), ['u1 participant']);
    // Leaves of participants are not told to the others either
    got.clear();
    svc.leave(room, devs[5].toString());
    await svc.drained(room);
    assert.deepEqual(seen(devs[5]), ['u6 gone']);
    assert.deepEqual(seen(owner), []);
    await broker.stop();
  });

  it('maxRoomsPerUser and maxOccupants are enforced', async () => {
    const { broker, svc } = await start(new MemoryStorage(), {
      maxRoomsPerUser: 1,
      maxOccupants: 1,
    });
    const a = await device(broker, 'alice', 'r');
    const b = await device(broker, 'bob', 'r');
    await svc.join('one', { device: a, nick: 'alice' });
    assert.equal(
      await code(() => svc.join('two', { device: a, nick: 'alice' })),
      'resource-constraint',
    );
    assert.equal(
      await code(() => svc.join('one', { device: b, nick: 'bob' })),
      'service-unavailable',
    );
    await broker.stop();
  });
});
