/**
 * A user-archive query whose `with` is a full JID matches only that exact
 * JID [XEP-0313 4.1.1], read from the bare peer's index and filtered, and a
 * scan that reads too much without a match ends (a user cannot make the
 * server read a whole large conversation for one query).
 */
import assert from 'node:assert/strict';
import { MemoryStorage } from '../../storage/memory.ts';
import { Address } from '../address.ts';
import { ArchiveService } from '../archive.ts';
import type { EnvelopeRecord } from '../envelope.ts';
import { BrokerError } from '../errors.ts';

const jid = (s: string) => Address.parse(s);

async function archiveWith(messages: [from: string, to: string][]): Promise<ArchiveService> {
  const svc = new ArchiveService(new MemoryStorage().archive<EnvelopeRecord>('chat'));
  svc.settings = { ...svc.settings, maxPageSize: 5, defaultPageSize: 5, fullJidScanMax: 200 };
  for (const [i, [from, to]] of messages.entries())
    await svc.appendChat({
      kind: 'message',
      type: 'chat',
      id: `m${i}`,
      from: jid(from),
      to: jid(to),
      body: `${from} ${i}`,
      extensions: [],
    });
  return svc;
}

describe('ArchiveService: with a full JID [XEP-0313 4.1.1]', () => {
  it('matches only that exact JID, paged forwards and backwards across scan pages; no count', async () => {
    const list: [string, string][] = [];
    for (let i = 0; i < 30; i++) list.push([i % 3 === 0 ? 'b@x/phone' : 'b@x/desk', 'a@x']);
    list.push(['a@x/pc', 'b@x/phone'], ['a@x/pc', 'b@x']);
    const svc = await archiveWith(list);
    const phone = jid('b@x/phone');
    const first = await svc.queryUser(jid('a@x'), { with: phone, max: 4 });
    assert.deepEqual(
      first.messages.map((m) => m.env.id),
      ['m0', 'm3', 'm6', 'm9'],
    );
    assert.equal(first.complete, false);
    assert.equal(first.count, undefined);
    const ids: string[] = [];
    let after: string | undefined;
    for (;;) {
      const p = await svc.queryUser(jid('a@x'), { with: phone, max: 4, after });
      ids.push(...p.messages.map((m) => m.env.id as string));
      if (p.complete) break;
      after = p.messages.at(-1)!.id;
    }
    assert.deepEqual(ids, [...Array.from({ length: 10 }, (_, k) => `m${k * 3}`), 'm30']);
    const last = await svc.queryUser(jid('a@x'), { with: phone, max: 2, before: '' });
    assert.deepEqual(
      last.messages.map((m) => m.env.id),
      ['m27', 'm30'],
    );
    const bare = await svc.queryUser(jid('a@x'), { with: jid('b@x'), max: 0 });
    assert.equal(bare.count, 32, 'a bare JID matches every resource');
  });

  it('a scan past fullJidScanMax records without a match is resource-constraint; with matches, the page ends short', async () => {
    const list: [string, string][] = [['b@x/rare', 'a@x']];
    for (let i = 0; i < 300; i++) list.push(['b@x/desk', 'a@x']);
    list.push(['b@x/rare', 'a@x']);
    const svc = await archiveWith(list);
    const rare = jid('b@x/rare');
    const p = await svc.queryUser(jid('a@x'), { with: rare, max: 5 });
    assert.deepEqual([p.messages.map((m) => m.env.id), p.complete], [['m0'], false]);
    await assert.rejects(
      svc.queryUser(jid('a@x'), { with: rare, max: 5, after: p.messages[0].id }),
      (err: unknown) => err instanceof BrokerError && err.condition === 'resource-constraint',
    );
  });
});
