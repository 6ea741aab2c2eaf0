import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { Level } from 'level';
import { answerStatelessClients } from '../mqtt-persistence.ts';

type P = {
  setup(broker: unknown): Promise<void>;
  subscriptionsByClient(c: { id: string }): Promise<{ topic: string; qos: number }[]>;
  addSubscriptions(c: { id: string }, subs: { topic: string; qos: number }[]): Promise<void>;
  putWill(c: { id: string }, packet: object): Promise<void>;
  delWill(c: { id: string }): Promise<{ topic: string } | undefined>;
};

describe('bin: MQTT persistence answers for clients with nothing stored', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'parley-mqttp-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function open(): Promise<{ db: Level<string, Buffer>; p: P }> {
    const db = new Level<string, Buffer>(dir, { valueEncoding: 'buffer' });
    await db.open();
    const p = aedesPersistenceLevel(db) as unknown as P;
    await answerStatelessClients(p, db);
    await p.setup({ id: 'broker-1' });
    return { db, p };
  }

  it('stores and reads back state of clients that write, also after a restart (key scan)', async () => {
    let { db, p } = await open();
    assert.deepEqual(await p.subscriptionsByClient({ id: 'dev/1' }), []);
    await p.addSubscriptions({ id: 'dev/1' }, [{ topic: 'a/b', qos: 1 }]);
    await p.putWill(
      { id: 'dev:2' },
      { topic: 'w', payload: Buffer.from('x'), qos: 0, retain: false },
    );
    assert.deepEqual(
      (await p.subscriptionsByClient({ id: 'dev/1' })).map((s) => s.topic),
      ['a/b'],
    );
    await db.close();

    ({ db, p } = await open());
    // Ids with characters aedes-persistence-level escapes in keys are found by the scan.
    assert.deepEqual(
      (await p.subscriptionsByClient({ id: 'dev/1' })).map((s) => s.topic),
      ['a/b'],
    );
    assert.equal((await p.delWill({ id: 'dev:2' }))?.topic, 'w');
    assert.equal(await p.delWill({ id: 'dev:2' }), undefined);
    assert.deepEqual(await p.subscriptionsByClient({ id: 'other' }), []);
    await db.close();
  });
});
