import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { UploadBackend } from '../broker/index.ts';
import { DiskBlobStore } from '../storage/blobs-disk.ts';
import { MongoStorage } from '../storage/mongodb.ts';
import type { Storage } from '../storage/types.ts';

/**
 * The upload service's backend (docs/upload.md): files under
 * `<dataDir>/upload/`, or in GridFS with `storage.backend: mongodb` (every
 * node of a cluster then serves every file), and the key that signs slot URLs in
 * `<dataDir>/upload.key` (32 random bytes, mode 0600, made on first start;
 * deleting it invalidates every URL handed out).
 */
export function uploadBackendFor(dataDir: string, storage?: Storage): UploadBackend {
  const keyFile = path.join(dataDir, 'upload.key');
  let secret: Buffer;
  try {
    secret = readFileSync(keyFile);
    if (secret.length < 32) throw new Error(`${keyFile}: shorter than 32 bytes`);
    if (statSync(keyFile).mode & 0o077) chmodSync(keyFile, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    secret = randomBytes(32);
    writeFileSync(keyFile, secret, { mode: 0o600, flag: 'wx' });
  }
  const blobs =
    storage instanceof MongoStorage
      ? storage.blobs('upload')
      : new DiskBlobStore(path.join(dataDir, 'upload'));
  return { blobs, secret };
}
