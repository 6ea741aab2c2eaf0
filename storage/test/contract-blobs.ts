/**
 * The contract every upload blob store passes (storage/types.ts BlobStore):
 * disk always, GridFS with MONGODB_URL, an S3 store when one is added.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { BlobStore } from '../types.ts';

export interface BlobFixture {
  blobs: BlobStore;
  cleanup: () => Promise<void>;
}

const id = () => randomBytes(18).toString('base64url');

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** A stream of `n` bytes in 64 KiB chunks, made as it is read (never one whole buffer). */
function generated(n: number, seed = 7): Readable {
  let left = n;
  return new Readable({
    read() {
      if (left <= 0) return this.push(null);
      const len = Math.min(65536, left);
      left -= len;
      this.push(Buffer.alloc(len, seed));
    },
  });
}

/** A stream that fails after `n` bytes (a client that went away). */
function failing(n: number): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(Buffer.alloc(n, 1));
      } else this.destroy(Object.assign(new Error('client gone'), { code: 'ECONNRESET' }));
    },
  });
}

export function blobContract(name: string, make: () => Promise<BlobFixture>): void {
  describe(`blob store contract: ${name}`, function () {
    this.timeout(30_000);
    let f: BlobFixture;
    let blobs: BlobStore;
    beforeEach(async () => {
      f = await make();
      blobs = f.blobs;
    });
    afterEach(async () => f.cleanup());

    it('write, stat, open whole and by inclusive range', async () => {
      const k = id();
      const data = randomBytes(300_000);
      assert.deepEqual(
        await blobs.write(
          k,
          Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
          data.length,
        ),
        { bytes: data.length },
      );
      assert.deepEqual(await blobs.stat(k), { bytes: data.length });
      assert.deepEqual(await readAll(blobs.open(k)), data);
      assert.deepEqual(await readAll(blobs.open(k, { start: 10, end: 19 })), data.subarray(10, 20));
      assert.deepEqual(
        await readAll(blobs.open(k, { start: 299_990, end: 299_999 })),
        data.subarray(299_990),
      );
    });

    it('never overwrites: a second write of an id is EEXIST and the first stays', async () => {
      const k = id();
      await blobs.write(k, Readable.from([Buffer.from('first')]), 100);
      await assert.rejects(blobs.write(k, Readable.from([Buffer.from('second')]), 100), {
        code: 'EEXIST',
      });
      assert.equal((await readAll(blobs.open(k))).toString(), 'first');
    });

    it('two writes of one id at once: exactly one wins, whole', async () => {
      const k = id();
      const r = await Promise.allSettled([
        blobs.write(k, generated(200_000, 1), 200_000),
        blobs.write(k, generated(200_000, 2), 200_000),
      ]);
      assert.equal(
        r.filter((x) => x.status === 'fulfilled').length,
        1,
        JSON.stringify(r.map((x) => x.status)),
      );
      assert.equal(
        (r.find((x) => x.status === 'rejected') as PromiseRejectedResult).reason.code,
        'EEXIST',
      );
      const got = await readAll(blobs.open(k));
      assert.equal(got.length, 200_000);
      assert.ok(
        got.every((b) => b === got[0]),
        "one writer's bytes only",
      );
    });

    it('past maxBytes: E2BIG, nothing visible, and the id can be written again', async () => {
      const k = id();
      await assert.rejects(blobs.write(k, generated(100_000), 50_000), { code: 'E2BIG' });
      assert.equal(await blobs.stat(k), undefined);
      await blobs.write(k, generated(50_000), 50_000);
      assert.deepEqual(await blobs.stat(k), { bytes: 50_000 });
    });

    it('a stream that fails midway leaves nothing visible', async () => {
      const k = id();
      await assert.rejects(blobs.write(k, failing(10_000), 100_000));
      assert.equal(await blobs.stat(k), undefined);
    });

    it('streams a 20 MB file in and out', async () => {
      const k = id();
      const n = 20 * 1024 * 1024;
      await blobs.write(k, generated(n, 9), n);
      const h = createHash('sha256');
      let len = 0;
      for await (const c of blobs.open(k) as AsyncIterable<Buffer>) {
        h.update(c);
        len += c.length;
      }
      assert.equal(len, n);
      assert.equal(h.digest('hex'), createHash('sha256').update(Buffer.alloc(n, 9)).digest('hex'));
    });

    it('remove; removing what is not there is no error; bad ids never reach storage', async () => {
      const k = id();
      await blobs.write(k, Readable.from([Buffer.from('x')]), 10);
      await blobs.remove(k);
      assert.equal(await blobs.stat(k), undefined);
      await blobs.remove(k);
      await assert.rejects(
        async () => blobs.write('../../etc/passwd', Readable.from([Buffer.from('x')]), 10),
        { code: 'EINVAL' },
      );
      assert.equal(await blobs.stat('../x'), undefined);
    });

    it('sweep (when the store has one) leaves complete files alone', async () => {
      const k = id();
      await blobs.write(k, Readable.from([Buffer.from('keep')]), 10);
      if (blobs.sweep) await blobs.sweep(0);
      assert.equal((await readAll(blobs.open(k))).toString(), 'keep');
    });
  });
}
