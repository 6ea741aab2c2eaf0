/**
 * RosterService: the subscription state machine of RFC 6121 §3 and Appendix A
 * on the stored items (the "Pending In" half lives in the PresenceService).
 * Notation as in Appendix A: None, To, From, Both; "+ask" = Pending Out;
 * "+approved" = pre-approved [RFC6121 3.4].
 */
import assert from 'node:assert/strict';
import { MemoryStorage } from '../../storage/memory.ts';
import { BrokerError } from '../errors.ts';
import { RosterService, type RosterItem } from '../roster.ts';

const U = 'user@example.com';
const C = 'contact@example.com';

interface Push {
  user: string;
  item: RosterItem;
  ver: string;
}

function setup(maxItems = 100): { roster: RosterService; pushes: Push[] } {
  const pushes: Push[] = [];
  const storage = new MemoryStorage();
  const roster = new RosterService(storage.kv('roster'), { maxItems }, (user, item, ver) =>
    pushes.push({ user, item, ver }),
  );
  return { roster, pushes };
}

type State = 'none' | 'none+ask' | 'to' | 'from' | 'from+ask' | 'both' | 'none+approved';

/** Bring user's item for contact to a state using only the public transitions. */
async function bring(r: RosterService, state: State): Promise<void> {
  switch (state) {
    case 'none':
      await r.set(U, C, undefined, []);
      return;
    case 'none+ask':
      return r.outboundSubscribe(U, C);
    case 'to':
      await r.outboundSubscribe(U, C);
      await r.inboundSubscribed(U, C);
      return;
    case 'from':
      await r.outboundSubscribed(U, C, true);
      return;
    case 'from+ask':
      await r.outboundSubscribed(U, C, true);
      await r.outboundSubscribe(U, C);
      return;
    case 'both':
      await r.outboundSubscribed(U, C, true);
      await r.outboundSubscribe(U, C);
      await r.inboundSubscribed(U, C);
      return;
    case 'none+approved':
      await r.outboundSubscribed(U, C, false);
      return;
  }
}

/** The item's state in Appendix A notation. */
async function state(r: RosterService): Promise<string | undefined> {
  const it = await r.item(U, C);
  if (!it) return undefined;
  return it.subscription + (it.ask ? '+ask' : '') + (it.approved ? '+approved' : '');
}

/**
 * Apply `op` in state `from`; assert the resulting state, and that a roster
 * push (with a higher version) went out exactly when the state changed.
 */
async function transition(
  from: State,
  op: (r: RosterService) => Promise<unknown>,
  to: string,
): Promise<void> {
  const { roster, pushes } = setup();
  await bring(roster, from);
  assert.equal(await state(roster), from, 'precondition');
  const before = await roster.get(U);
  const n = pushes.length;
  await op(roster);
  assert.equal(await state(roster), to);
  const after = await roster.get(U);
  if (to === from) {
    assert.equal(
      pushes.length,
      n,
      `no roster push without a state change (got ${JSON.stringify(pushes.slice(n))})`,
    );
    assert.equal(after.ver, before.ver, 'version unchanged without a change');
  } else {
    assert.equal(pushes.length, n + 1, 'one roster push [RFC6121 2.1.6]');
    const p = pushes[n];
    assert.equal(p.user, U);
    assert.equal(p.item.jid, C);
    assert.equal(p.ver, after.ver, 'the push carries the new version [RFC6121 2.6]');
    assert.ok(Number(after.ver) > Number(before.ver), 'version increased');
  }
}

describe('RosterService', function () {
  describe('subscription state machine [RFC6121 Appendix A]', function () {
    /** Each operation, with the section of RFC 6121 that defines it. */
    const ops: Record<string, [string, (r: RosterService) => Promise<unknown>]> = {
      'outbound subscribe': ['A.2.1, 3.1.2', (r) => r.outboundSubscribe(U, C)],
      'inbound subscribed': ['A.3.2, 3.1.6', (r) => r.inboundSubscribed(U, C)],
      'outbound subscribed, request pending': [
        'A.2.2, 3.1.5',
        (r) => r.outboundSubscribed(U, C, true),
      ],
      'outbound subscribed, no request (pre-approval)': [
        '3.4',
        (r) => r.outboundSubscribed(U, C, false),
      ],
      'outbound unsubscribe': ['A.2.3, 3.3.2', (r) => r.outboundUnsubscribe(U, C)],
      'inbound unsubscribe': ['A.3.3, 3.3.3', (r) => r.inboundUnsubscribe(U, C)],
      'outbound unsubscribed': ['A.2.4, 3.2.2', (r) => r.outboundUnsubscribed(U, C)],
      'inbound unsubscribed': ['A.3.4, 3.2.3', (r) => r.inboundUnsubscribed(U, C)],
    };
    // prettier-ignore
    const table: [string, State, string][] = [
      ['outbound subscribe', 'none', 'none+ask'],
      ['outbound subscribe', 'none+ask', 'none+ask'],
      ['outbound subscribe', 'to', 'to'],
      ['outbound subscribe', 'from', 'from+ask'],
      ['outbound subscribe', 'from+ask', 'from+ask'],
      ['outbound subscribe', 'both', 'both'],
      ['inbound subscribed', 'none', 'none'],
      ['inbound subscribed', 'none+ask', 'to'],
      ['inbound subscribed', 'to', 'to'],
      ['inbound subscribed', 'from', 'from'],
      ['inbound subscribed', 'from+ask', 'both'],
      ['inbound subscribed', 'both', 'both'],
      ['outbound subscribed, request pending', 'none', 'from'],
      ['outbound subscribed, request pending', 'none+ask', 'from+ask'],
      ['outbound subscribed, request pending', 'to', 'both'],
      ['outbound subscribed, request pending', 'none+approved', 'from'],
      ['outbound subscribed, request pending', 'from', 'from'],
      ['outbound subscribed, no request (pre-approval)', 'none', 'none+approved'],
      ['outbound subscribed, no request (pre-approval)', 'to', 'to+approved'],
      ['outbound subscribed, no request (pre-approval)', 'none+approved', 'none+approved'],
      ['outbound subscribed, no request (pre-approval)', 'both', 'both'],
      ['outbound unsubscribe', 'none', 'none'],
      ['outbound unsubscribe', 'none+ask', 'none'],
      ['outbound unsubscribe', 'to', 'none'],
      ['outbound unsubscribe', 'from', 'from'],
      ['outbound unsubscribe', 'from+ask', 'from'],
      ['outbound unsubscribe', 'both', 'from'],
      ['inbound unsubscribe', 'none', 'none'],
      ['inbound unsubscribe', 'none+ask', 'none+ask'],
      ['inbound unsubscribe', 'to', 'to'],
      ['inbound unsubscribe', 'from', 'none'],
      ['inbound unsubscribe', 'from+ask', 'none+ask'],
      ['inbound unsubscribe', 'both', 'to'],
      ['inbound unsubscribe', 'none+approved', 'none'], // the pre-approval is cancelled too [3.4]
      ['outbound unsubscribed', 'none', 'none'],
      ['outbound unsubscribed', 'to', 'to'],
      ['outbound unsubscribed', 'from', 'none'],
      ['outbound unsubscribed', 'from+ask', 'none+ask'],
      ['outbound unsubscribed', 'both', 'to'],
      ['outbound unsubscribed', 'none+approved', 'none'], // cancels a pre-approval [3.4]
      ['inbound unsubscribed', 'none', 'none'],
      ['inbound unsubscribed', 'none+ask', 'none'],
      ['inbound unsubscribed', 'to', 'none'],
      ['inbound unsubscribed', 'from', 'from'],
      ['inbound unsubscribed', 'from+ask', 'from'],
      ['inbound unsubscribed', 'both', 'from'],
    ];
    for (const [op, from, to] of table) {
      const [section, fn] = ops[op];
      const same = from === to ? ' (no change, no push)' : '';
      it(`${op} [RFC6121 ${section}]: ${from} → ${to}${same}`, () => transition(from, fn, to));
    }

    it('outbound subscribe to a contact not in the roster creates it as None + ask, with a push [RFC6121 3.1.2]', async () => {
      const { roster, pushes } = setup();
      await roster.outboundSubscribe(U, C);
      assert.deepEqual(await roster.item(U, C), {
        jid: C,
        groups: [],
        subscription: 'none',
        ask: true,
      });
      assert.deepEqual(pushes, [
        { user: U, item: { jid: C, groups: [], subscription: 'none', ask: true }, ver: '1' },
      ]);
    });

    it('inbound stanzas for a contact not in the roster create nothing [RFC6121 3.1.6, 3.2.3, 3.3.3]', async () => {
      const { roster, pushes } = setup();
      assert.equal(await roster.inboundSubscribed(U, C), false);
      assert.equal(await roster.inboundUnsubscribe(U, C), false);
      assert.equal(await roster.inboundUnsubscribed(U, C), false);
      assert.equal(await roster.item(U, C), undefined);
      assert.deepEqual(pushes, []);
      assert.equal((await roster.get(U)).ver, '0');
    });

    it('outboundSubscribed reports approved / preapproved / noop', async () => {
      const { roster } = setup();
      assert.equal(await roster.outboundSubscribed(U, C, false), 'preapproved');
      assert.equal(await roster.outboundSubscribed(U, C, true), 'approved');
      assert.equal(await roster.outboundSubscribed(U, C, true), 'noop');
    });

    it('inboundSubscribeApproved: true for From, Both and a pre-approval; false otherwise [RFC6121 3.1.3, 3.4]', async () => {
      for (const [s, expected] of [
        ['none', false],
        ['none+ask', false],
        ['to', false],
        ['from', true],
        ['both', true],
        ['none+approved', true],
      ] as [State, boolean][]) {
        const { roster } = setup();
        await bring(roster, s);
        assert.equal(await roster.inboundSubscribeApproved(U, C), expected, s);
      }
      assert.equal(await setup().roster.inboundSubscribeApproved(U, C), false, 'no item');
    });

    it('the transitions that report a change return true exactly when the state changed', async () => {
      const { roster } = setup();
      await bring(roster, 'to');
      assert.equal(await roster.outboundUnsubscribe(U, C), true);
      assert.equal(await roster.outboundUnsubscribe(U, C), false);
    });
  });

  describe('items and versions [RFC6121 2]', function () {
    it('set adds name and groups, keeps the subscription, and pushes [RFC6121 2.3]', async () => {
      const { roster, pushes } = setup();
      await bring(roster, 'both');
      await roster.set(U, C, 'Contact', ['Friends', 'Work']);
      assert.deepEqual(await roster.item(U, C), {
        jid: C,
        name: 'Contact',
        groups: ['Friends', 'Work'],
        subscription: 'both',
      });
      assert.deepEqual(pushes.at(-1)?.item, {
        jid: C,
        name: 'Contact',
        groups: ['Friends', 'Work'],
        subscription: 'both',
      });
    });

    it('set with a duplicate group → bad-request; with an empty group → not-acceptable [RFC6121 2.3.3]', async () => {
      const { roster } = setup();
      await assert.rejects(
        roster.set(U, C, undefined, ['a', 'a']),
        (e: BrokerError) => e.condition === 'bad-request',
      );
      await assert.rejects(
        roster.set(U, C, undefined, ['']),
        (e: BrokerError) => e.condition === 'not-acceptable',
      );
    });

    it('adding oneself → not-allowed', async () => {
      const { roster } = setup();
      await assert.rejects(
        roster.set(U, U, undefined, []),
        (e: BrokerError) => e.condition === 'not-allowed',
      );
    });

    it('the roster size limit refuses new items but not updates of existing ones [RFC6121 2.3.3]', async () => {
      const { roster } = setup(2);
      await roster.set(U, 'a@example.com', undefined, []);
      await roster.set(U, 'b@example.com', undefined, []);
      await assert.rejects(
        roster.set(U, 'c@example.com', undefined, []),
        (e: BrokerError) => e.condition === 'not-allowed',
      );
      await roster.set(U, 'a@example.com', 'renamed', []);
      assert.equal((await roster.item(U, 'a@example.com'))?.name, 'renamed');
    });

    it('remove returns the item as it was, deletes it and pushes subscription=remove [RFC6121 2.5]', async () => {
      const { roster, pushes } = setup();
      await bring(roster, 'both');
      const before = await roster.remove(U, C);
      assert.equal(before.subscription, 'both');
      assert.equal(await roster.item(U, C), undefined);
      assert.deepEqual(pushes.at(-1)?.item, {
        jid: C,
        groups: [],
        subscription: 'none',
        removed: true,
      });
    });

    it('remove of a missing item → item-not-found, no push [RFC6121 2.5.3]', async () => {
      const { roster, pushes } = setup();
      await assert.rejects(
        roster.remove(U, C),
        (e: BrokerError) => e.condition === 'item-not-found',
      );
      assert.deepEqual(pushes, []);
    });

    it('versions start at 0 and strictly increase with every change; each push carries the new one [RFC6121 2.6]', async () => {
      const { roster, pushes } = setup();
      assert.deepEqual(await roster.get(U), { ver: '0', items: [] });
      await roster.set(U, 'a@example.com', undefined, []);
      await roster.outboundSubscribe(U, 'a@example.com');
      await roster.set(U, 'b@example.com', 'B', []);
      await roster.remove(U, 'b@example.com');
      assert.deepEqual(
        pushes.map((p) => p.ver),
        ['1', '2', '3', '4'],
      );
      assert.equal((await roster.get(U)).ver, '4');
    });

    it('rosters of different users are independent', async () => {
      const { roster } = setup();
      await roster.set(U, C, undefined, []);
      assert.deepEqual(await roster.get(C), { ver: '0', items: [] });
    });

    it('concurrent changes to one roster are serialised: none is lost', async () => {
      const { roster, pushes } = setup();
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => roster.set(U, `c${i}@example.com`, undefined, [])),
      );
      const { ver, items } = await roster.get(U);
      assert.equal(items.length, 50);
      assert.equal(ver, '50');
      assert.deepEqual(
        pushes.map((p) => Number(p.ver)),
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
    });

    it('a failing change does not block later changes to the same roster', async () => {
      const { roster } = setup(1);
      await roster.set(U, 'a@example.com', undefined, []);
      const results = await Promise.allSettled([
        roster.set(U, 'b@example.com', undefined, []),
        roster.set(U, 'a@example.com', 'A', []),
      ]);
      assert.equal(results[0].status, 'rejected');
      assert.equal(results[1].status, 'fulfilled');
      assert.equal((await roster.item(U, 'a@example.com'))?.name, 'A');
    });

    it("contacts(user, 'to' | 'from') lists the JIDs by subscription direction", async () => {
      const { roster } = setup();
      await roster.outboundSubscribe(U, 'to@example.com');
      await roster.inboundSubscribed(U, 'to@example.com');
      await roster.outboundSubscribed(U, 'from@example.com', true);
      await roster.outboundSubscribed(U, 'both@example.com', true);
      await roster.outboundSubscribe(U, 'both@example.com');
      await roster.inboundSubscribed(U, 'both@example.com');
      await roster.outboundSubscribe(U, 'asked@example.com');
      assert.deepEqual((await roster.contacts(U, 'to')).sort(), [
        'both@example.com',
        'to@example.com',
      ]);
      assert.deepEqual((await roster.contacts(U, 'from')).sort(), [
        'both@example.com',
        'from@example.com',
      ]);
    });

    it('drop deletes the whole roster', async () => {
      const { roster } = setup();
      await roster.set(U, C, undefined, []);
      await roster.drop(U);
      assert.deepEqual((await roster.get(U)).items, []);
    });
  });

  describe('storage cost and limits (issue 20 item 11)', () => {
    it('a change writes one item and the version record, whatever the size of the roster', async () => {
      const storage = new MemoryStorage();
      const kv = storage.kv<unknown>('roster');
      let written = 0;
      const counting = {
        get: (k: string) => kv.get(k),
        keys: (p?: string) => kv.keys(p),
        entries: (p: string) => kv.entries(p),
        delete: (k: string) => kv.delete(k),
        put: (k: string, v: unknown) => ((written += JSON.stringify(v).length), kv.put(k, v)),
        batch: (ops: Parameters<typeof kv.batch>[0]) => {
          for (const op of ops) if (op.type === 'put') written += JSON.stringify(op.value).length;
          return kv.batch(ops);
        },
      };
      const roster = new RosterService(counting as never, { maxItems: 5000 }, () => {});
      for (let i = 0; i < 2000; i++)
        await roster.set(U, `c${i}@example.com`, `Contact ${i}`, ['Friends']);
      written = 0;
      await roster.set(U, 'one-more@example.com', 'One more', ['Friends']);
      assert.ok(written < 300, `one roster set on a roster of 2,000 items wrote ${written} bytes`);
      const { ver, items } = await roster.get(U);
      assert.equal(items.length, 2001);
      assert.equal(ver, '2001');
      assert.equal(await roster.count(U), 2001);
    });

    it('the size limit holds on every path that creates an item: set, subscribe, pre-approval, approval [RFC6121 2.3.3]', async () => {
      const { roster } = setup(2);
      await roster.set(U, 'a@example.com', undefined, []);
      await roster.outboundSubscribe(U, 'b@example.com');
      const full = (e: unknown) => e instanceof BrokerError && e.condition === 'not-allowed';
      await assert.rejects(roster.set(U, 'c@example.com', undefined, []), full);
      await assert.rejects(roster.outboundSubscribe(U, 'c@example.com'), full);
      await assert.rejects(roster.outboundSubscribed(U, 'c@example.com', false), full);
      await assert.rejects(roster.outboundSubscribed(U, 'c@example.com', true), full);
      // changing an existing item is not creating one
      await roster.set(U, 'a@example.com', 'A', []);
      await roster.remove(U, 'a@example.com');
      await roster.set(U, 'c@example.com', undefined, []);
      assert.deepEqual((await roster.get(U)).items.map((i) => i.jid).sort(), [
        'b@example.com',
        'c@example.com',
      ]);
    });

    it('keys named like Object.prototype members are ordinary contacts, and listedBy finds every roster of a contact', async () => {
      const { roster } = setup();
      for (const c of ['constructor', '__proto__', 'toString', 'hasOwnProperty'])
        await roster.set(U, c, undefined, []);
      assert.equal((await roster.get(U)).items.length, 4);
      assert.equal(await roster.item(U, 'valueOf'), undefined);
      await roster.set('other@example.com', 'constructor', undefined, []);
      assert.deepEqual((await roster.listedBy('constructor')).sort(), ['other@example.com', U]);
      await roster.drop(U);
      assert.deepEqual(await roster.listedBy('constructor'), ['other@example.com']);
    });
  });
});
