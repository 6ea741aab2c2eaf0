import assert from 'node:assert/strict';
import { LocalRegistry } from '../../cluster/local.ts';
import { BrokerError, closeReason, type CloseReason } from '../errors.ts';
import { silentLogger } from '../logger.ts';
import type { Session } from '../session.ts';
import { SessionManager } from '../session-manager.ts';
import { FakeSession, jid } from './helpers.ts';

const ALICE = jid('alice@localhost');

function manager(opts: Partial<ConstructorParameters<typeof SessionManager>[2]> = {}) {
  const registry = new LocalRegistry();
  const events: string[] = [];
  const sm = new SessionManager(
    registry,
    'n1',
    { resourceConflict: 'replace', maxSessionsPerUser: 3, ...opts },
    silentLogger,
    {
      bound: (s: Session) => void events.push(`bound ${s.address.toString()}`),
      unbound: (s: Session, r: CloseReason) =>
        void events.push(`unbound ${s.address.toString()} ${r.kind}`),
    },
  );
  return { sm, registry, events };
}

async function bind(sm: SessionManager, resource?: string): Promise<FakeSession> {
  const s = new FakeSession(sm.reserve(ALICE, resource));
  await sm.bind(s);
  return s;
}

describe('SessionManager', function () {
  it('bind makes the session findable locally and in the registry; unbind removes it (idempotent)', async () => {
    const { sm, registry, events } = manager();
    const s = await bind(sm, 'phone');
    assert.equal(sm.get(jid('alice@localhost/phone')), s);
    assert.deepEqual(sm.sessionsOf(ALICE), [s]);
    assert.deepEqual(
      (await registry.lookup('alice@localhost')).map((e) => [e.resource, e.sessionId, e.node]),
      [['phone', s.id, 'n1']],
    );
    assert.deepEqual(
      registry.lookupNow('alice@localhost'),
      await registry.lookup('alice@localhost'),
      'the synchronous answer is the same',
    );
    await sm.unbind(s, closeReason('client-closed'));
    await sm.unbind(s, closeReason('client-closed'));
    assert.equal(sm.get(jid('alice@localhost/phone')), undefined);
    assert.deepEqual(await registry.lookup('alice@localhost'), []);
    assert.deepEqual(registry.lookupNow('alice@localhost'), []);
    assert.deepEqual(events, [
      'bound alice@localhost/phone',
      'unbound alice@localhost/phone client-closed',
    ]);
  });

  it('reserve without a resource generates a fresh one [RFC6120 7.6]', () => {
    const { sm } = manager();
    const a = sm.reserve(ALICE, undefined);
    const b = sm.reserve(ALICE, '');
    assert.ok(a.resource.length > 0 && b.resource.length > 0);
    assert.notEqual(a.resource, b.resource);
  });

  it("resource conflict, 'replace': the old session is unbound and closed with resource-conflict [RFC6120 7.7.2.2]", async () => {
    const { sm, events } = manager();
    const old = await bind(sm, 'phone');
    const fresh = await bind(sm, 'phone');
    assert.equal(old.closedWith?.kind, 'resource-conflict');
    assert.equal(fresh.closedWith, undefined);
    assert.ok(events.includes('unbound alice@localhost/phone resource-conflict'));
  });

  it('after a replacing bind, the new session is the one found for the full JID and the user [RFC6120 7.7.2.2]', async () => {
    const { sm, registry } = manager();
    await bind(sm, 'phone');
    const fresh = await bind(sm, 'phone');
    assert.equal(sm.get(jid('alice@localhost/phone')), fresh);
    assert.deepEqual(sm.sessionsOf(ALICE), [fresh]);
    assert.deepEqual(
      (await registry.lookup('alice@localhost')).map((e) => e.sessionId),
      [fresh.id],
    );
  });

  it("resource conflict, 'reject': the new bind is refused with conflict [RFC6120 7.7.2.2]", async () => {
    const { sm } = manager({ resourceConflict: 'reject' });
    await bind(sm, 'phone');
    assert.throws(
      () => sm.reserve(ALICE, 'phone'),
      (e: BrokerError) => e.condition === 'conflict',
    );
  });

  it('maxSessionsPerUser refuses one more with resource-constraint; replacing an existing resource is allowed', async () => {
    const { sm } = manager({ maxSessionsPerUser: 2 });
    await bind(sm, 'a');
    await bind(sm, 'b');
    assert.throws(
      () => sm.reserve(ALICE, 'c'),
      (e: BrokerError) => e.condition === 'resource-constraint',
    );
    assert.equal(sm.reserve(ALICE, 'a').resource, 'a');
  });

  it('a resource with a control character → jid-malformed', () => {
    const { sm } = manager();
    assert.throws(
      () => sm.reserve(ALICE, 'x\u0001'),
      (e: BrokerError) => e.condition === 'jid-malformed',
    );
  });

  it('update keeps the registry in step with priority and availability, only for bound sessions', async () => {
    const { sm, registry } = manager();
    const s = await bind(sm, 'phone');
    s.priority = 7;
    s.available = true;
    await sm.update(s);
    const [e] = await registry.lookup('alice@localhost');
    assert.deepEqual([e.priority, e.available], [7, true]);
    await sm.unbind(s, closeReason('client-closed'));
    await sm.update(s);
    assert.deepEqual(
      await registry.lookup('alice@localhost'),
      [],
      'an unbound session is not re-added',
    );
  });

  it('count, users and all follow binds and unbinds', async () => {
    const { sm } = manager();
    const a = await bind(sm, 'a');
    await bind(sm, 'b');
    assert.equal(sm.count(), 2);
    assert.deepEqual(sm.users(), ['alice@localhost']);
    await sm.unbind(a, closeReason('client-closed'));
    assert.equal(sm.all().length, 1);
  });
});
