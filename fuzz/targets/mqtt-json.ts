/**
 * adapters/mqtt/mapping.ts: a device's PUBLISH payload on chat/{user} and
 * presence/{me} → an envelope or a presence command. Contract:
 * - only BrokerError('bad-request') escapes;
 * - a chat envelope has a non-empty string body, an id of at most 256
 *   characters (or a generated one), type chat or normal; what a device gets
 *   back (chatJson) is JSON that carries the same body;
 * - a presence command is one of the documented shapes, a priority an integer.
 */
import { Address, BrokerError } from '../../broker/index.ts';
import {
  chatEnvelope,
  chatJson,
  parsePresence,
  presenceJson,
} from '../../adapters/mqtt/mapping.ts';
import { check, type FuzzTarget } from '../target.ts';

const alice = Address.parse('alice@localhost/dev1');
const bob = Address.parse('bob@localhost');

function onlyBadRequest(err: unknown): void {
  if (err instanceof BrokerError && err.condition === 'bad-request') return;
  throw err;
}

export const target: FuzzTarget = {
  about:
    'MQTT chat/presence JSON payloads: only BrokerError(bad-request) escapes, results well-typed, JSON round trip keeps the body',
  cover: ['/adapters/mqtt/mapping.ts'],
  dict: [
    '{',
    '}',
    '[',
    ']',
    '"body"',
    '"id"',
    '"type"',
    '"thread"',
    '"subject"',
    '"show"',
    '"status"',
    '"priority"',
    '"available"',
    '"to"',
    '"__proto__"',
    '"constructor"',
    '"toString"',
    ':',
    ',',
    '"chat"',
    '"normal"',
    '"subscribe"',
    '"away"',
    'true',
    'false',
    'null',
    '1e400',
    '-0',
    '2.5',
    '"\\ud800"',
    '"\\u0000"',
    'online',
    'offline',
    ' ',
  ],
  maxLen: 2048,
  fuzz(data) {
    try {
      const env = chatEnvelope(alice, bob, data);
      check(typeof env.body === 'string' && env.body.length > 0, 'chat envelope without a body');
      check(
        typeof env.id === 'string' && env.id.length > 0 && env.id.length <= 256,
        `id ${JSON.stringify(env.id)}`,
      );
      check(env.type === 'chat' || env.type === 'normal', `type ${env.type}`);
      check(
        env.thread === undefined || (typeof env.thread === 'string' && env.thread.length <= 256),
        'thread',
      );
      check(
        env.subject === undefined ||
          (typeof env.subject === 'string' && env.subject.length <= 4096),
        'subject',
      );
      const back = JSON.parse(chatJson({ ...env, timestamp: 1, seq: 1 })) as { body: unknown };
      check(back.body === env.body, 'chatJson changed the body');
    } catch (err) {
      onlyBadRequest(err);
    }
    try {
      const cmd = parsePresence(data);
      if (cmd.kind === 'available') {
        check(
          cmd.show === undefined || ['away', 'chat', 'dnd', 'xa'].includes(cmd.show),
          `show ${cmd.show}`,
        );
        check(
          cmd.priority === undefined || Number.isInteger(cmd.priority),
          `priority ${cmd.priority}`,
        );
        check(cmd.status === undefined || typeof cmd.status === 'string', 'status');
        JSON.parse(
          presenceJson(
            {
              kind: 'presence',
              from: alice,
              to: bob,
              show: cmd.show,
              status: cmd.status,
              priority: cmd.priority,
              extensions: [],
            } as never,
            alice,
          ),
        );
      } else if (cmd.kind === 'subscription') {
        check(
          typeof cmd.to === 'string' && cmd.to.length > 0 && cmd.to.length <= 3071,
          'subscription to',
        );
        check(
          ['subscribe', 'subscribed', 'unsubscribe', 'unsubscribed'].includes(cmd.type),
          `type ${cmd.type}`,
        );
      } else {
        check(cmd.kind === 'unavailable', `kind ${(cmd as { kind: string }).kind}`);
      }
    } catch (err) {
      onlyBadRequest(err);
    }
  },
};
