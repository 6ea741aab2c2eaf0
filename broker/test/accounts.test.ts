import assert from 'node:assert/strict';
import { AccountService } from '../accounts.ts';
import { MemoryStorage } from '../../storage/memory.ts';

describe('accounts: creation', () => {
  it('two creations of one name at once: one wins, the other is conflict, the first password stays (in-band registration race)', async () => {
    const accounts = new AccountService(new MemoryStorage().kv('accounts'), 'example.org', 16);
    const results = await Promise.allSettled([
      accounts.create('Racer', 'first-password'),
      accounts.create('racer', 'second-password'),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.equal(lost.reason.condition, 'conflict');
    assert.ok(await accounts.verifyPassword('racer', 'first-password'));
    assert.ok(!(await accounts.verifyPassword('racer', 'second-password')));
    await assert.rejects(accounts.create('racer', 'x'), /conflict/, 'and afterwards, as before');
  });
});
