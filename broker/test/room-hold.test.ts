/**
 * A room's requests held while its home cannot be reached (broker/room-hold.ts,
 * docs/cluster.md, "Rooms"): in order, each run at most once, bounded in time
 * and count; a device told the room went away waits for its rejoin.
 */
import assert from 'node:assert/strict';
import { RoomHold, type Held } from '../room-hold.ts';

const gone = Object.assign(new Error('nobody listens'), { undelivered: true });
const maybe = new Error('connection lost on the way'); // may have reached the home: never sent twice

describe('RoomHold (room requests while the home is unreachable)', () => {
  let home = 'n2';
  /** what reached a home: "home:device:name" */
  let ran: string[];
  let failed: string[];
  /** what the home does with the next send */
  let answer: () => Promise<void>;
  let evictedFrom: string[];
  let hold: RoomHold;
  let now: number;

  const req = (device: string, name: string, join = false, room = 'r'): Held => ({
    room,
    device,
    join,
    seq: hold.seq(),
    expires: now + 1000,
    dispatch: () => {
      const p = answer();
      return p.then(() => void ran.push(`${home}:${device}:${name}`));
    },
    fail: (condition) => void failed.push(`${device}:${name}:${condition}`),
  });
  const settle = () => new Promise((r) => setTimeout(r, 5));

  beforeEach(() => {
    home = 'n2';
    ran = [];
    failed = [];
    evictedFrom = [];
    now = Date.now();
    answer = () => Promise.reject(gone);
    hold = new RoomHold(
      1000,
      5,
      () => home,
      (room, from) => evictedFrom.push(`${room}@${from}`),
    );
  });

  it('holds what reached nobody and everything after it for the room, in order; runs it once at the next home', async () => {
    assert.equal(hold.add(req('a', 'm1')), false, 'nothing held yet: sent as usual');
    assert.equal(hold.add(req('a', 'm1'), 'n2'), true, 'its send reached nobody: held');
    assert.ok(hold.holds('r'));
    for (const m of ['m2', 'm3']) hold.add(req('a', m));
    hold.add(req('b', 'x1'));
    hold.retry();
    await settle();
    assert.deepEqual(ran, [], 'the home still unreachable: held again');
    assert.equal(hold.size, 4);
    home = 'n3';
    answer = () => Promise.resolve();
    hold.retry();
    await settle();
    assert.deepEqual(ran, ['n3:a:m1', 'n3:a:m2', 'n3:a:m3', 'n3:b:x1']);
    assert.deepEqual(evictedFrom, ['r@n2'], 'the home moved: its devices told first');
    assert.equal(hold.holds('r'), false);
    hold.retry();
    await settle();
    assert.equal(ran.length, 4, 'nothing twice');
  });

  it('sends that failed out of order are held in the order their requests came', async () => {
    const m1 = req('a', 'm1');
    const m2 = req('a', 'm2');
    hold.add(m2, 'n2');
    hold.add(m1, 'n2');
    answer = () => Promise.resolve();
    hold.retry();
    await settle();
    assert.deepEqual(ran, ['n2:a:m1', 'n2:a:m2']);
    assert.deepEqual(evictedFrom, [], 'the same home: nobody told anything');
  });

  it('a send that may have reached the home is not sent again: its sender gets service-unavailable', async () => {
    hold.add(req('a', 'm1'), 'n2');
    answer = () => Promise.reject(maybe);
    hold.retry();
    await settle();
    assert.deepEqual(failed, ['a:m1:service-unavailable']);
    assert.equal(hold.size, 0);
  });

  it('past max: resource-constraint [RFC6120 8.3.3.18]; past the hold time: service-unavailable, as without the hold', () => {
    hold.add(req('a', 'm0'), 'n2');
    for (let i = 1; i < 7; i++) hold.add(req('a', `m${i}`));
    assert.deepEqual(failed, ['a:m5:resource-constraint', 'a:m6:resource-constraint']);
    hold.expire(now + 999);
    assert.equal(failed.length, 2);
    hold.expire(now + 1000);
    assert.equal(failed.filter((f) => f.endsWith('service-unavailable')).length, 5);
    assert.equal(hold.size, 0);
    assert.equal(hold.holds('r'), false);
  });

  it("a device told the room went away (332) waits for its rejoin: the join first, then its held messages; others' go at once", async () => {
    hold.add(req('a', 'm1'), 'n2');
    hold.add(req('b', 'x1'));
    hold.add(req('a', 'm2'));
    hold.evicted('r', 'a');
    hold.evicted('r', 'c'); // nothing held of c: it does not wait
    home = 'n3';
    answer = () => Promise.resolve();
    hold.retry();
    await settle();
    assert.deepEqual(ran, ['n3:b:x1']);
    assert.ok(hold.holds('r'));
    hold.add(req('c', 'y1'));
    await settle();
    assert.deepEqual(ran, ['n3:b:x1', 'n3:c:y1'], 'a device that does not wait is not held up');
    hold.add(req('a', 'join', true));
    await settle();
    assert.deepEqual(ran.slice(2), ['n3:a:join', 'n3:a:m1', 'n3:a:m2']);
    assert.equal(hold.holds('r'), false);
  });

  it('a session that ends drops its held requests; holding off (0 s): nothing held', () => {
    hold.add(req('a', 'm1'), 'n2');
    hold.forget('a');
    assert.equal(hold.size, 0);
    assert.equal(hold.holds('r'), false);
    const off = new RoomHold(
      0,
      5,
      () => home,
      () => {},
    );
    assert.equal(off.add(req('a', 'm1'), 'n2'), false);
  });
});
