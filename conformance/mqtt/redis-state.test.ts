// Black-box: MQTT state on the Redis store (`storage.backend: redis`,
// bin/mqtt-redis.ts): a persistent session's QoS 1 queue and retained
// messages survive kill -9 of the node, and are served by a node with a data
// directory of its own that shares the Redis server [MQTT-4.1.0-1]. The
// scenarios: conformance/mqtt-state-suite.ts (MongoDB runs them too).
import { Redis } from 'ioredis';
import { sharedMqttStateTests } from '../mqtt-state-suite.ts';
import { redisKeys, startRedis, type TestRedis } from '../redis-server.ts';

describe('MQTT: state on the Redis store', function () {
  this.timeout(60_000);
  let redis: TestRedis;

  before(async function () {
    redis = await startRedis();
  });
  sharedMqttStateTests({
    storageYaml: () => `storage:\n  backend: redis\n  url: ${redis.url}\n`,
    async stateOf(user) {
      const client = new Redis(redis.url);
      const members = (await client.smembers('parley:mqtt:clients')).filter((id) =>
        id.startsWith(`${user}/`),
      );
      await client.quit();
      return [
        ...(await redisKeys(redis.url, `parley:mqtt:*${encodeURIComponent(`${user}/`)}*`)),
        ...members,
      ];
    },
  });
  after(async () => {
    await redis?.dispose();
  });
});
