import { createReadStream, createWriteStream } from 'node:fs';
import { link, mkdir, readdir, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BLOB_ID, byteLimit, checkBlobId } from './blobs-util.ts';
import type { BlobStore } from './types.ts';

/**
 * {@link BlobStore} on the local disk: one file per id in `dir` (mode 0600),
 * written to a temporary name and linked into place, so a half-written file
 * is never served and an existing one is never replaced (link fails with EEXIST).
 */
export class DiskBlobStore implements BlobStore {
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  private file(id: string): string {
    checkBlobId(id); // no path traversal
    return path.join(this.dir, id);
  }

  async write(
    id: string,
    data: NodeJS.ReadableStream,
    maxBytes: number,
  ): Promise<{ bytes: number }> {
    const final = this.file(id);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${final}.part-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const limit = byteLimit(maxBytes);
    try {
      await pipeline(data, limit.stream, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
      await link(tmp, final); // EEXIST when the id is taken: never overwrite
    } finally {
      await unlink(tmp).catch(() => {});
    }
    return { bytes: limit.counted() };
  }

  async stat(id: string): Promise<{ bytes: number } | undefined> {
    try {
      const s = await stat(this.file(id));
      return s.isFile() ? { bytes: s.size } : undefined;
    } catch {
      return undefined;
    }
  }

  open(id: string, range?: { start: number; end: number }): NodeJS.ReadableStream {
    return createReadStream(this.file(id), range ? { start: range.start, end: range.end } : {});
  }

  async remove(id: string): Promise<void> {
    await rm(this.file(id), { force: true });
  }

  /** Temporary files a crash left (`<id>.part-…`), older than `olderThanMs`. */
  async sweep(olderThanMs = 86_400_000, now = Date.now()): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return 0;
    }
    let n = 0;
    for (const name of names) {
      if (!BLOB_ID.test(name.split('.part-')[0]) || !name.includes('.part-')) continue;
      const file = path.join(this.dir, name);
      const s = await stat(file).catch(() => undefined);
      if (!s || now - s.mtimeMs < olderThanMs) continue;
      await unlink(file).catch(() => {});
      n++;
    }
    return n;
  }
}
