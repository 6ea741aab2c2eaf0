/**
 * MQTT state on MongoDB, what can be checked without a server: which state
 * backend a configuration picks, the connection string's validation, and
 * that an unreachable server fails the start with a message naming it (and
 * not the password), in the time the URL allows, instead of hanging. The
 * behaviour against a server: conformance/mqtt/mongodb-state.test.ts
 * (MONGODB_URL).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { redactMongoUrl } from '../../storage/mongodb.ts';
import { freePort } from '../../conformance/redis-server.ts';
import { startMqttNode } from '../../conformance/mqtt-helpers.ts';
import { ConfigError, validateConfig } from '../config.ts';
import { mqttStateBackend } from '../mqtt.ts';
import { mongoMqttState } from '../mqtt-mongodb.ts';

describe('bin: MQTT state on MongoDB (no server needed)', function () {
  this.timeout(30_000);

  it('the MQTT state follows storage.backend: LevelDB for embedded, the shared store for redis and mongodb', () => {
    assert.equal(mqttStateBackend(validateConfig({})), 'level');
    assert.equal(
      mqttStateBackend(
        validateConfig({ storage: { backend: 'redis', url: 'redis://127.0.0.1:6379' } }),
      ),
      'redis',
    );
    const mongo = { backend: 'mongodb', url: 'mongodb://h1:27017,h2:27017/chat?replicaSet=rs0' };
    assert.equal(mqttStateBackend(validateConfig({ storage: mongo })), 'mongodb');
    assert.equal(
      mqttStateBackend(
        validateConfig({ storage: mongo, cluster: { redis: 'redis://127.0.0.1:6379' } }),
      ),
      'mongodb',
    );
    // the older key for the URL
    assert.equal(
      mqttStateBackend(
        validateConfig({ storage: { backend: 'mongodb', mongodbUrl: 'mongodb+srv://db.example' } }),
      ),
      'mongodb',
    );
  });

  it('refuses a storage.url that is no MongoDB connection string when the backend is mongodb', () => {
    for (const url of ['redis://127.0.0.1:6379', 'localhost:27017', 'http://db/']) {
      assert.throws(
        () => validateConfig({ storage: { backend: 'mongodb', url } }),
        (err: Error) =>
          err instanceof ConfigError &&
          /storage\.url: a MongoDB connection string/.test(err.message),
        url,
      );
    }
  });

  it('names the server in messages without its user and password', () => {
    assert.equal(
      redactMongoUrl('mongodb://parley:s3cret@h1:27017,h2:27017/chat?replicaSet=rs0'),
      'mongodb://***@h1:27017,h2:27017/chat?replicaSet=rs0',
    );
    assert.equal(
      redactMongoUrl('mongodb+srv://u:p%40ss@cluster.example/x'),
      'mongodb+srv://***@cluster.example/x',
    );
    assert.equal(redactMongoUrl('mongodb://127.0.0.1:27017/x'), 'mongodb://127.0.0.1:27017/x');
  });

  it('an unreachable server fails the MQTT state with a message naming it, in serverSelectionTimeoutMS', async () => {
    const port = await freePort(); // nothing listens there: connection refused
    const url = `mongodb://parley:s3cret@127.0.0.1:${port}/chat?serverSelectionTimeoutMS=300`;
    const started = Date.now();
    await assert.rejects(mongoMqttState(url), (err: Error) => {
      assert.match(
        err.message,
        new RegExp(
          `^mqtt state: cannot reach MongoDB at mongodb://\\*\\*\\*@127\\.0\\.0\\.1:${port}/`,
        ),
      );
      assert.doesNotMatch(err.message, /s3cret/);
      return true;
    });
    // the URL's 300 ms, not the driver's default 30 s (a loaded machine gets slack)
    assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
  });

  it('a node on an unreachable MongoDB exits at start with that message instead of hanging', async () => {
    const port = await freePort();
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'parley-mongo-down-'));
    try {
      await assert.rejects(
        startMqttNode('', {
          dataDir,
          config: `storage:\n  backend: mongodb\n  url: "mongodb://parley:s3cret@127.0.0.1:${port}/chat?serverSelectionTimeoutMS=300"\n`,
        }),
        (err: Error) => {
          assert.match(err.message, /node exited before ready \(code 1/);
          assert.match(err.message, /cannot reach MongoDB at mongodb:\/\/\*\*\*@127\.0\.0\.1:/);
          assert.doesNotMatch(err.message, /s3cret/);
          return true;
        },
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
