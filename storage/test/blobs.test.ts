// The blob store contract (storage/test/contract-blobs.ts) for each store:
// disk always; GridFS only when MONGODB_URL points at a MongoDB (none runs
// in this suite by default, so it is skipped then, like storage/test/mongodb.test.ts).
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { DiskBlobStore } from '../blobs-disk.ts';
import { MongoStorage } from '../mongodb.ts';
import { blobContract } from './contract-blobs.ts';

blobContract('disk', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'parley-blobs-'));
  return {
    blobs: new DiskBlobStore(dir),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('disk blob store', () => {
  it('sweep removes temporary files a crash left, older than the age given, and nothing else', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'parley-blobs-'));
    try {
      const blobs = new DiskBlobStore(dir);
      const old = path.join(dir, 'AAAAAAAAAAAAAAAAAAAAAAAA.part-1-abc');
      await writeFile(old, 'half');
      await utimes(
        old,
        new Date(Date.now() - 2 * 86_400_000),
        new Date(Date.now() - 2 * 86_400_000),
      );
      await writeFile(path.join(dir, 'BBBBBBBBBBBBBBBBBBBBBBBB.part-1-def'), 'in progress');
      await writeFile(path.join(dir, 'CCCCCCCCCCCCCCCCCCCCCCCC'), 'a file');
      assert.equal(await blobs.sweep(), 1);
      assert.deepEqual((await readdir(dir)).sort(), [
        'BBBBBBBBBBBBBBBBBBBBBBBB.part-1-def',
        'CCCCCCCCCCCCCCCCCCCCCCCC',
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const url = process.env.MONGODB_URL;
let n = 0;
if (url) {
  blobContract('gridfs', async () => {
    const dbName = `parley_blobs_${process.pid}_${++n}`;
    const storage = new MongoStorage({ url, dbName });
    await storage.open();
    return {
      blobs: storage.blobs('upload'),
      cleanup: async () => {
        await storage.close();
        const client = await MongoClient.connect(url);
        await client.db(dbName).dropDatabase();
        await client.close();
      },
    };
  });
} else {
  describe('blob store contract: gridfs', function () {
    it('SKIPPED: set MONGODB_URL to run the GridFS blob store contract', function () {
      this.skip();
    });
  });
}
