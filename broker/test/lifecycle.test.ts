import assert from 'node:assert/strict';
import { LocalBus, LocalRegistry } from '../../cluster/local.ts';
import { MemoryStorage } from '../../storage/memory.ts';
import { Broker } from '../broker.ts';
import type { Envelope } from '../envelope.ts';
import { DOMAIN, errorOf, FakeSession, jid, makeBroker, message, online } from './helpers.ts';

const chat = (from: string, to: string, body = 'hi'): Envelope => ({
  kind: 'message',
  type: 'chat',
  from: jid(from),
  to: jid(to),
  id: 'x',
  body,
  extensions: [],
});

describe('message lifecycle', function () {
  describe('Router.stranded: a message handed to a session that is gone', function () {
    let broker: Broker;
    beforeEach(async () => (broker = await makeBroker()));
    afterEach(async () => broker.stop());

    it('with no other device: the offline path, once', async () => {
      const gone = new FakeSession(jid(`bob@${DOMAIN}/phone`));
      await broker.router.stranded(chat(`alice@${DOMAIN}/a`, `bob@${DOMAIN}`), gone);
      assert.equal(await broker.offline.count(jid(`bob@${DOMAIN}`)), 1);
    });

    it('to the gone full JID: to the other devices, as if to the bare JID [RFC6121 8.5.3.2.1]', async () => {
      const desk = await online(broker, 'bob', 'desk');
      const gone = new FakeSession(jid(`bob@${DOMAIN}/phone`));
      await broker.router.stranded(
        chat(`alice@${DOMAIN}/a`, `bob@${DOMAIN}/phone`, 'for the phone'),
        gone,
      );
      const got = desk.got('message');
      assert.deepEqual(
        got.map((e) => [e.body, e.to.toString()]),
        [['for the phone', `bob@${DOMAIN}`]],
      );
      assert.equal(await broker.offline.count(jid(`bob@${DOMAIN}`)), 0);
    });

    it('to the bare JID: the other devices had it already; nothing twice', async () => {
      const desk = await online(broker, 'bob', 'desk');
      const gone = new FakeSession(jid(`bob@${DOMAIN}/phone`));
      await broker.router.stranded(chat(`alice@${DOMAIN}/a`, `bob@${DOMAIN}`), gone);
      assert.equal(desk.got('message').length, 0);
      assert.equal(await broker.offline.count(jid(`bob@${DOMAIN}`)), 0);
    });
  });

  describe('offline storage is a module', function () {
    it('without the offline module, a message to a user with no session bounces with service-unavailable and nothing is stored [RFC6121 8.5.2.2.1]', async () => {
      const broker = new Broker({
        domain: DOMAIN,
        storage: new MemoryStorage(),
        cluster: { bus: new LocalBus('n1'), registry: new LocalRegistry() },
        limits: { scramIterations: 16 },
      });
      await broker.start();
      try {
        for (const u of ['alice', 'bob']) await broker.accounts.create(u, 'pw');
        const alice = await online(broker, 'alice', 'a');
        await message(broker, alice, `bob@${DOMAIN}`, { id: 'nobody' });
        const err = alice.got('message', 'error')[0];
        assert.equal(errorOf(err), 'service-unavailable');
        assert.equal(await broker.offline.count(jid(`bob@${DOMAIN}`)), 0);
      } finally {
        await broker.stop();
      }
    });

    it("'message:delivered' fires once per local delivery; 'message:route' with the origin session", async () => {
      const broker = await makeBroker();
      try {
        const seen: string[] = [];
        broker.hooks.on(
          'message:route',
          (env, origin) => void seen.push(`route ${env.id} from ${origin?.address.resource}`),
        );
        broker.hooks.on(
          'message:delivered',
          (env, s) => void seen.push(`delivered ${env.id} to ${s.address.resource}`),
        );
        const alice = await online(broker, 'alice', 'a');
        await online(broker, 'bob', 'b1');
        await online(broker, 'bob', 'b2');
        await message(broker, alice, `bob@${DOMAIN}`, { id: 'm' });
        assert.deepEqual(seen, ['route m from a', 'delivered m to b1', 'delivered m to b2']);
      } finally {
        await broker.stop();
      }
    });
  });
});
