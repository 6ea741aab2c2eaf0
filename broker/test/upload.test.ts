/**
 * The upload core (broker/upload.ts) with a fake clock: daily volume and its
 * retry time, quota, signatures bound to id, expiry and filename, and the purge.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { LocalBus, LocalRegistry } from '../../cluster/local.ts';
import { DiskBlobStore } from '../../storage/blobs-disk.ts';
import { MemoryStorage } from '../../storage/memory.ts';
import { Broker } from '../broker.ts';
import { typeAllowed, UploadRefused, UploadService, validFilename } from '../upload.ts';

describe('upload core', () => {
  let dir: string;
  let broker: Broker;
  let svc: UploadService;
  const T0 = Date.UTC(2026, 0, 10, 12, 0, 0);
  const token = (u: string) => new URL(u).pathname.split('/')[2];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parley-upload-'));
    broker = new Broker({
      domain: 'localhost',
      storage: new MemoryStorage(),
      cluster: { bus: new LocalBus('n1'), registry: new LocalRegistry() },
    });
    await broker.start();
    svc = new UploadService(
      broker,
      { blobs: new DiskBlobStore(dir), secret: Buffer.alloc(32, 1) },
      {
        host: 'upload.localhost',
        maxFileSize: 1000,
        quotaBytes: 2500,
        dailyBytes: 1500,
        allowedTypes: ['image/*'],
        slotTtlMs: 60_000,
        maxAgeMs: 86_400_000,
        stallMs: 30_000,
      },
    );
    svc.baseUrl = 'https://localhost:5443';
  });
  afterEach(async () => {
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('daily volume: resource-constraint with retry at the next UTC midnight; the next day it is allowed again [XEP-0363 4]', async () => {
    await svc.requestSlot(
      'a@localhost',
      { filename: 'a.png', size: 1000, contentType: 'image/png' },
      T0,
    );
    await assert.rejects(
      svc.requestSlot(
        'a@localhost',
        { filename: 'b.png', size: 600, contentType: 'image/png' },
        T0,
      ),
      (e: UploadRefused) => {
        assert.equal(e.condition, 'resource-constraint');
        assert.equal(e.retryAt, Date.UTC(2026, 0, 11));
        return true;
      },
    );
    await svc.requestSlot(
      'a@localhost',
      { filename: 'b.png', size: 600, contentType: 'image/png' },
      T0 + 86_400_000,
    );
    // total quota (2500) now: 1600 held; 1000 more is over
    await assert.rejects(
      svc.requestSlot(
        'a@localhost',
        { filename: 'c.png', size: 1000, contentType: 'image/png' },
        T0 + 2 * 86_400_000,
      ),
      (e: UploadRefused) => {
        assert.equal(e.condition, 'resource-constraint');
        assert.equal(e.retryAt, T0 + 86_400_000, 'when the oldest file expires');
        return true;
      },
    );
  });

  it('a signature covers id, expiry and filename', async () => {
    const slot = await svc.requestSlot('a@localhost', {
      filename: 'a.png',
      size: 10,
      contentType: 'image/png',
    });
    const t = token(slot.put);
    assert.ok(await svc.resolve(t, 'a.png'));
    assert.equal(await svc.resolve(t, 'b.png'), undefined);
    const [id, exp, sig] = t.split('.');
    assert.equal(
      await svc.resolve(`${id}.${(parseInt(exp, 36) + 1).toString(36)}.${sig}`, 'a.png'),
      undefined,
    );
    const other = token(
      (
        await svc.requestSlot('a@localhost', {
          filename: 'a.png',
          size: 10,
          contentType: 'image/png',
        })
      ).put,
    );
    assert.equal(await svc.resolve(`${other.split('.')[0]}.${exp}.${sig}`, 'a.png'), undefined);
  });

  it('purge: unused slots after their expiry, files after maxAge, with their blobs', async () => {
    const s1 = await svc.requestSlot(
      'a@localhost',
      { filename: 'kept.png', size: 3, contentType: 'image/png' },
      T0,
    );
    const s2 = await svc.requestSlot(
      'a@localhost',
      { filename: 'unused.png', size: 3, contentType: 'image/png' },
      T0,
    );
    const f = (await svc.resolve(token(s1.put), 'kept.png'))!;
    await svc.blobs.write(f.id, Readable.from([Buffer.from('abc')]), 3);
    await svc.markStored(f.id, f.rec);
    assert.deepEqual(await svc.purge(T0 + 30_000), { files: 0, bytes: 0 });
    assert.deepEqual(
      await svc.purge(T0 + 10 * 60_000),
      { files: 1, bytes: 0 },
      'the unused slot (no bytes stored)',
    );
    assert.equal(await svc.resolve(token(s2.put), 'unused.png'), undefined);
    assert.ok(await svc.blobs.stat(f.id));
    assert.deepEqual(await svc.purge(T0 + 86_400_000 + 1), { files: 1, bytes: 3 }, 'the file');
    assert.equal(await svc.blobs.stat(f.id), undefined);
    assert.deepEqual(await svc.kv.keys('u/'), []);
  });

  it('filenames and types', () => {
    for (const ok of ['a.png', 'photo 1.jpg', 'été.txt', '.hidden'])
      assert.ok(validFilename(ok), ok);
    for (const bad of ['', '.', '..', 'a/b', 'a\\b', 'a\u0000b', 'x'.repeat(256)])
      assert.ok(!validFilename(bad), JSON.stringify(bad));
    assert.ok(typeAllowed([], 'text/html'));
    assert.ok(typeAllowed(['image/*'], 'IMAGE/PNG'));
    assert.ok(!typeAllowed(['image/*'], 'imagex/png'));
    assert.ok(!typeAllowed(['image/png'], 'image/png2'));
  });
});
