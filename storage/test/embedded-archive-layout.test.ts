/**
 * The embedded archive's on-disk layout across versions: an archive written
 * by an earlier version (fixture) is read, appended to and maintained with
 * the same results as before, and the counts kept as checkpoints stay exact
 * across reopens.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmbeddedStorage } from '../embedded.ts';
import type { ArchiveStore, OwnerQuery } from '../types.ts';

type Body = { body: string };

/** A page of an owner's archive as ids and count. */
async function view(
  a: ArchiveStore<Body>,
  owner: string,
  q: OwnerQuery = {},
): Promise<{ ids: string[]; count: number | undefined }> {
  const page = await a.queryOwner(owner, { count: true, ...q });
  return { ids: page.records.map((r) => r.id), count: page.count };
}

const pair = (x: string, y: string) => (x < y ? `chat:${x}|${y}` : `chat:${y}|${x}`);

/**
 * Written by 7b800a2's storage/embedded (counts as plain numbers written with
 * every append, a `w` entry for every owner entry), at timestamps
 * 1700000000000 + i: m1–m6 alice↔bob (odd from alice), m7–m10 alice→carol
 * (m9 archived by carol only), m11–m13 carol→bob, m14 alice to herself, g1 in
 * room1's archive (owner room1, from alice).
 */
const FIXTURE = fileURLToPath(new URL('./fixtures/archive-7b800a2', import.meta.url));

describe('embedded archive: data written by 7b800a2 (plain counts, a `w` entry per owner entry)', () => {
  let dir: string;
  let storage: EmbeddedStorage;
  let archive: ArchiveStore<Body>;

  const open = async () => {
    storage = new EmbeddedStorage({ dir });
    await storage.open();
    archive = storage.archive<Body>('chat');
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parley-layout-'));
    await cp(FIXTURE, dir, { recursive: true });
    await open();
  });
  after(async () => {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists and counts every owner archive as written, with and without a peer [XEP-0313 query-filters]', async () => {
    assert.deepEqual(await view(archive, 'alice'), {
      ids: ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm10', 'm14'],
      count: 10,
    });
    assert.deepEqual(await view(archive, 'alice', { with: 'bob' }), {
      ids: ['m1', 'm2', 'm3', 'm4', 'm5', 'm6'],
      count: 6,
    });
    assert.deepEqual(await view(archive, 'alice', { with: 'carol' }), {
      ids: ['m7', 'm8', 'm10'],
      count: 3,
    });
    assert.deepEqual(await view(archive, 'alice', { with: 'alice' }), { ids: ['m14'], count: 1 });
    assert.deepEqual(await view(archive, 'carol', { with: 'alice' }), {
      ids: ['m7', 'm8', 'm9', 'm10'],
      count: 4,
    });
    assert.deepEqual(await view(archive, 'bob'), {
      ids: ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm11', 'm12', 'm13'],
      count: 9,
    });
    assert.deepEqual(await view(archive, 'room1', { with: 'alice' }), { ids: ['g1'], count: 1 });
    // A bounded count (time filter) counts the index keys in range.
    assert.deepEqual(
      await view(archive, 'alice', { with: 'bob', start: 1700000000002, end: 1700000000004 }),
      { ids: ['m3', 'm4', 'm5'], count: 3 },
    );
    const page = await archive.query(pair('alice', 'bob'), { afterSeq: 4 });
    assert.deepEqual(
      page.records.map((r) => [r.seq, r.id]),
      [
        [5, 'm5'],
        [6, 'm6'],
      ],
    );
  });

  it('appends after it: seqs and ids go on, counts go on from the stored ones, and survive a reopen', async () => {
    const t = 1700000001000;
    const r1 = await archive.append({
      conversation: pair('alice', 'bob'),
      timestamp: t,
      owners: ['bob', 'alice'],
      with: 'bob',
      id: 'n1',
      value: { body: 'new' },
    });
    const r2 = await archive.append({
      conversation: pair('alice', 'carol'),
      timestamp: t + 1,
      owners: ['carol', 'alice'],
      with: 'carol',
      id: 'n2',
      value: { body: 'new' },
      archivedFor: ['carol'],
    });
    assert.equal(r1.seq, 7);
    assert.equal(r2.seq, 5);
    assert.ok((r1.pos as number) > 1700000000014000);
    const expect = async () => {
      assert.deepEqual((await view(archive, 'alice')).count, 11);
      assert.deepEqual(await view(archive, 'alice', { with: 'bob', after: '1700000000004000' }), {
        ids: ['m6', 'n1'],
        count: 7,
      });
      assert.deepEqual(await view(archive, 'alice', { with: 'carol' }), {
        ids: ['m7', 'm8', 'm10'],
        count: 3,
      });
      assert.deepEqual((await view(archive, 'bob')).count, 10);
      assert.deepEqual(await view(archive, 'carol', { with: 'alice', after: '1700000000007000' }), {
        ids: ['m9', 'm10', 'n2'],
        count: 5,
      });
      assert.deepEqual((await view(archive, 'carol')).count, 8);
    };
    await expect();
    await storage.close();
    await open();
    await expect();
  });

  it('retention and account removal keep the counts exact', async () => {
    assert.equal(await archive.trimOwners(8), 3 + 2);
    assert.deepEqual(await view(archive, 'alice'), {
      ids: ['m4', 'm5', 'm6', 'm7', 'm8', 'm10', 'm14', 'n1'],
      count: 8,
    });
    assert.deepEqual(await view(archive, 'alice', { with: 'bob' }), {
      ids: ['m4', 'm5', 'm6', 'n1'],
      count: 4,
    });
    assert.deepEqual((await view(archive, 'bob')).count, 8);
    assert.deepEqual((await view(archive, 'carol')).count, 8);
    await archive.forgetOwner('carol');
    assert.deepEqual(await view(archive, 'carol'), { ids: [], count: 0 });
    assert.deepEqual(await view(archive, 'alice', { with: 'carol' }), {
      ids: ['m7', 'm8', 'm10'],
      count: 3,
    });
    await storage.close();
    await open();
    assert.deepEqual((await view(archive, 'alice')).count, 8);
    assert.deepEqual((await view(archive, 'alice', { with: 'carol' })).count, 3);
    assert.deepEqual((await view(archive, 'carol')).count, 0);
  });
});

describe('embedded archive: counts saved as checkpoints', () => {
  let dir: string;
  let storage: EmbeddedStorage;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parley-counts-'));
    storage = new EmbeddedStorage({ dir });
    await storage.open();
  });
  after(async () => {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('an owner with more appends than a checkpoint spans counts exactly after a reopen, and after deletions', async function () {
    this.timeout(30_000);
    let archive = storage.archive<Body>('chat');
    const n = 1234;
    for (let i = 0; i < n; i += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, n - i) }, (_, k) => {
          const j = i + k;
          const [from, to] = j % 3 === 0 ? ['bob', 'alice'] : ['alice', 'bob'];
          return archive.append({
            conversation: j % 5 === 0 ? pair('alice', 'carol') : pair('alice', 'bob'),
            timestamp: 1_000 + j,
            owners: j % 5 === 0 ? ['alice', 'carol'] : [from, to],
            with: from,
            id: `x${j}`,
            value: { body: 'x' },
          });
        }),
      );
    }
    const withCarol = Math.ceil(n / 5);
    const check = async (total: number, carol: number) => {
      assert.equal((await view(archive, 'alice', { limit: 0 })).count, total);
      assert.equal((await view(archive, 'alice', { with: 'carol', limit: 0 })).count, carol);
      assert.equal((await view(archive, 'bob', { limit: 0 })).count, total - carol);
      assert.equal((await view(archive, 'carol', { limit: 0 })).count, carol);
    };
    await check(n, withCarol);
    await storage.close();
    storage = new EmbeddedStorage({ dir });
    await storage.open();
    archive = storage.archive<Body>('chat');
    await check(n, withCarol);
    // Retention: the 100 oldest of alice's go (20 of them with carol), from everyone's archive.
    assert.equal(await archive.prune(1_100), 100);
    await check(n - 100, withCarol - 20);
    await storage.close();
    storage = new EmbeddedStorage({ dir });
    await storage.open();
    archive = storage.archive<Body>('chat');
    await check(n - 100, withCarol - 20);
  });
});
