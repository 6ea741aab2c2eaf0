import assert from 'node:assert/strict';
import { validateConfig } from '../config.ts';
import { changedKeys, isLive, planReload } from '../reload.ts';

describe('reload planning (bin/reload.ts)', () => {
  const base = validateConfig({ dataDir: '/tmp/x', admins: ['alice'] });

  it('changedKeys: dotted leaf paths; a list compares as a whole; a listener set to null is one key', () => {
    const next = validateConfig({
      dataDir: '/tmp/x',
      admins: ['alice', 'bob'],
      limits: { maxSessionsPerUser: 3 },
      xmpp: { tcp: null },
    });
    assert.deepEqual(changedKeys(base, next), ['admins', 'limits.maxSessionsPerUser', 'xmpp.tcp']);
    assert.deepEqual(changedKeys(base, structuredClone(base)), []);
  });

  it('live keys are applied into the effective config; the others keep their running value and are reported', () => {
    const next = validateConfig({
      dataDir: '/tmp/x',
      log: { level: 'debug' },
      tls: { minVersion: 'TLSv1.3' },
      domain: 'other.example',
      xmpp: { tcp: { port: 5333 } },
      modules: { mam: { enabled: false } },
    });
    const plan = planReload(base, next);
    assert.deepEqual(plan.applied, ['admins', 'log.level', 'tls.minVersion']);
    assert.deepEqual(plan.restartNeeded, ['domain', 'modules.mam', 'xmpp.tcp.port']);
    assert.equal(plan.effective.log.level, 'debug');
    assert.deepEqual(plan.effective.admins, []);
    assert.equal(plan.effective.domain, base.domain);
    assert.equal(plan.effective.xmpp.tcp?.port, 5222);
    // the running config is not changed in place
    assert.equal(base.log.level, 'info');
    // a second reload of the same file reports the restart keys again, nothing applied
    const again = planReload(plan.effective, next);
    assert.deepEqual(again.applied, []);
    assert.deepEqual(again.restartNeeded, plan.restartNeeded);
  });

  it('isLive: prefixes match whole segments only', () => {
    assert.ok(isLive('limits.rosterMaxItems'));
    assert.ok(isLive('memory'));
    assert.ok(!isLive('log.format'));
    assert.ok(!isLive('limitsX'));
    assert.ok(!isLive('tlsFoo'));
  });
});
