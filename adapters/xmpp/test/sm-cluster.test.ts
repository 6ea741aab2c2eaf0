import assert from 'node:assert/strict';
import { newSmId, smIdNode } from '../modules/sm-cluster.ts';

describe('stream-management resumption ids across a cluster [XEP-0198 5]', () => {
  it('an id names its node in a cluster and only the random part on one node', () => {
    const clustered = newSmId('n-1.eu_west');
    assert.match(clustered, /^n-1\.eu_west\.[A-Za-z0-9_-]{16}$/);
    assert.equal(smIdNode(clustered), 'n-1.eu_west');
    const single = newSmId(undefined);
    assert.match(single, /^[A-Za-z0-9_-]{16}$/);
    assert.equal(smIdNode(single), '');
    assert.notEqual(newSmId('n1'), newSmId('n1'));
  });

  it('a previd that is not exactly one of the two forms is refused before any lookup', () => {
    for (const bad of [
      '',
      'n1',
      'n1.',
      '.AAAAAAAAAAAAAAAA',
      'n1.AAAAAAAAAAAAAAA', // 15
      'n1.AAAAAAAAAAAAAAAAA', // 17 after the last dot
      'n1.AAAAAAAAAAAAAA+/',
      "n'1.AAAAAAAAAAAAAAAA",
      'n 1.AAAAAAAAAAAAAAAA',
      `${'n'.repeat(65)}.AAAAAAAAAAAAAAAA`, // node id over 64
      `${'n.'.repeat(1000)}AAAAAAAAAAAAAAAA`, // long: refused by length first
    ])
      assert.equal(smIdNode(bad), undefined, bad);
    assert.equal(smIdNode(`${'n'.repeat(64)}.AAAAAAAAAAAAAAAA`), 'n'.repeat(64));
  });
});
