/**
 * The cluster's configuration: `cluster.redis` turns it on, only on a shared
 * store (docs/cluster.md "Configuration"), and only bin/ builds the backend.
 */
import assert from 'node:assert/strict';
import { LocalBus } from '../../cluster/local.ts';
import { RedisBus } from '../../cluster/redis/index.ts';
import { silentLogger } from '../../broker/logger.ts';
import { ConfigError, envOverrides, merge, validateConfig } from '../config.ts';
import { advertised, makeCluster } from '../node.ts';

describe('cluster configuration', () => {
  const redis = { redis: 'redis://127.0.0.1:6379' };

  it('refuses a cluster on the embedded store, naming the key and the way out', () => {
    assert.throws(
      () => validateConfig({ cluster: redis }),
      (err: Error) =>
        err instanceof ConfigError &&
        /cluster: a cluster needs a shared store; set storage.backend to redis or mongodb/.test(
          err.message,
        ),
    );
  });

  it('takes a cluster on a shared store, with the documented defaults', () => {
    const cfg = validateConfig({
      cluster: redis,
      storage: { backend: 'redis', url: 'redis://127.0.0.1:6379' },
    });
    assert.deepEqual(cfg.cluster, {
      redis: redis.redis,
      prefix: 'parley',
      heartbeatMs: 5000,
      missedBeats: 3,
      registryCacheUsers: 100_000,
      deathReplaySeconds: 10,
      deathReplayMax: 20_000,
      roomHoldSeconds: 10,
      roomHoldMax: 10_000,
      drainGraceMs: 2000,
    });
  });

  it('checks the node id and the prefix, which end up in Redis keys and channels', () => {
    const shared = { storage: { backend: 'redis', url: 'redis://x' } };
    assert.throws(
      () => validateConfig({ ...shared, cluster: redis, nodeId: 'a b' }),
      /nodeId: 1 to 64/,
    );
    assert.throws(
      () => validateConfig({ ...shared, cluster: { ...redis, prefix: 'a:b' } }),
      /cluster.prefix/,
    );
    assert.throws(
      () => validateConfig({ ...shared, cluster: { ...redis, missedBeats: 1 } }),
      /cluster.missedBeats/,
    );
  });

  it("cluster.advertise: host[:port] with an IPv6 address bracketed [RFC6120 4.9.3.19], a ws(s) URI; anything else is refused; a missing port is the node's own", () => {
    const shared = { storage: { backend: 'redis', url: 'redis://x' } };
    const adv = (advertise: object) =>
      validateConfig({ ...shared, cluster: { ...redis, advertise } }).cluster?.advertise;
    assert.deepEqual(adv({ xmpp: 'n1.example', xmpps: '2001:db8::1' }), {
      xmpp: 'n1.example',
      xmpps: '[2001:db8::1]',
    });
    assert.deepEqual(adv({ xmpp: '[::1]:5222', websocket: 'wss://n1.example/xmpp-websocket' }), {
      xmpp: '[::1]:5222',
      websocket: 'wss://n1.example/xmpp-websocket',
    });
    for (const bad of [{ xmpp: 'a b' }, { xmpp: 'h:0' }, { websocket: 'http://x/' }, { smtp: 'x' }])
      assert.throws(() => adv(bad), /cluster.advertise/);
    assert.deepEqual(
      advertised(
        { xmpp: 'n1.example', xmpps: '[::1]', websocket: 'wss://n1.example/ws' },
        { ports: { tcp: 5222, directTls: 5223 } },
      ),
      { xmpp: 'n1.example:5222', xmpps: '[::1]:5223', websocket: 'wss://n1.example/ws' },
    );
    assert.deepEqual(advertised({ xmpp: '10.0.0.5:15222' }, { ports: { tcp: 5222 } }), {
      xmpp: '10.0.0.5:15222',
    });
  });

  it('PARLEY_CLUSTER_REDIS sets cluster.redis', () => {
    const raw = merge(
      { storage: { backend: 'redis', url: 'redis://x' } },
      envOverrides({ PARLEY_CLUSTER_REDIS: 'redis://10.0.0.5:6379' }),
    );
    assert.equal(validateConfig(raw).cluster?.redis, 'redis://10.0.0.5:6379');
  });

  it('bin/ picks the backend: the in-process bus without `cluster`, the Redis one with it (not connected until the broker starts)', () => {
    assert.ok(makeCluster(validateConfig({}), silentLogger).bus instanceof LocalBus);
    const cfg = validateConfig({
      nodeId: 'n7',
      cluster: redis,
      storage: { backend: 'redis', url: 'redis://x' },
    });
    const c = makeCluster(cfg, silentLogger);
    assert.ok(c.bus instanceof RedisBus);
    assert.equal(c.bus.nodeId, 'n7');
    assert.equal((c.bus as RedisBus).connected, false);
  });
});
