import assert from 'node:assert/strict';
import type { Client } from 'aedes';
import { answerCleanSessionAcks } from '../persistence.ts';

describe('mqtt persistence: acknowledgements of clean sessions', () => {
  it('answers a clean client without reading, and passes a persistent client through', async () => {
    const asked: string[] = [];
    const persistence = answerCleanSessionAcks({
      outgoingClearMessageId: async (client: Client, _packet: unknown) => {
        asked.push(client.id);
        return { messageId: 1 };
      },
    });
    assert.equal(
      await persistence.outgoingClearMessageId({ id: 'clean', clean: true } as Client, {
        messageId: 1,
      }),
      undefined,
    );
    assert.deepEqual(
      await persistence.outgoingClearMessageId({ id: 'kept', clean: false } as Client, {
        messageId: 1,
      }),
      { messageId: 1 },
    );
    assert.deepEqual(asked, ['kept']);
  });

  it('leaves a missing persistence (aedes in-memory default) alone', () => {
    assert.equal(answerCleanSessionAcks(undefined), undefined);
  });
});
