import { pipeline } from 'node:stream/promises';
import { GridFSBucket, MongoServerError, ObjectId, type Db } from 'mongodb';
import { BLOB_ID, byteLimit, checkBlobId as checkId } from './blobs-util.ts';
import type { BlobStore } from './types.ts';

/**
 * {@link BlobStore} in MongoDB GridFS (bucket `<name>`: collections
 * `<name>.files` and `<name>.chunks`), for `storage.backend: mongodb`, so
 * every node of a cluster serves every file.
 *
 * A file is uploaded under a fresh ObjectId with a temporary name and
 * renamed to its id once every chunk is in; a unique index on `filename`
 * makes that rename the one atomic step, as the disk store's `link`: a half
 * file is never found by its id, and an existing file is never replaced
 * (the rename fails, the new upload is deleted, the caller gets EEXIST).
 * Uploads that a crash left behind keep their temporary name
 * (`<id>.part-<oid>`) or chunks without a file; {@link sweep} removes them.
 *
 * Every query has an index (not in mongodb-schema.ts's QUERIES, whose kinds
 * are the store's own collections): files by `filename` (the unique
 * `parley_filename_unique` made here), chunks by `files_id` (GridFS' own
 * `files_id_1_n_1`); the sweep's files by `_id` range (the `_id` index).
 */
export class GridFsBlobStore implements BlobStore {
  private readonly db: () => Db;
  private readonly name: string;
  private indexed?: Promise<unknown>;

  /** `db`: the open database (MongoStorage hands it out once open). */
  constructor(db: () => Db, name = 'upload') {
    this.db = db;
    this.name = name;
  }

  private bucket(): GridFSBucket {
    return new GridFSBucket(this.db(), { bucketName: this.name });
  }

  private files() {
    return this.db().collection<{
      _id: ObjectId;
      filename: string;
      length: number;
      uploadDate: Date;
    }>(`${this.name}.files`);
  }

  private ensureIndex(): Promise<unknown> {
    this.indexed ??= this.files()
      .createIndex({ filename: 1 }, { unique: true, name: 'parley_filename_unique' })
      .catch((err) => {
        this.indexed = undefined;
        throw err;
      });
    return this.indexed;
  }

  async write(
    id: string,
    data: NodeJS.ReadableStream,
    maxBytes: number,
  ): Promise<{ bytes: number }> {
    checkId(id);
    await this.ensureIndex();
    if (await this.files().findOne({ filename: id }, { projection: { _id: 1 } }))
      throw Object.assign(new Error('exists'), { code: 'EEXIST' });
    const bucket = this.bucket();
    const oid = new ObjectId();
    const upload = bucket.openUploadStreamWithId(oid, `${id}.part-${oid.toHexString()}`);
    const limit = byteLimit(maxBytes);
    try {
      await pipeline(data, limit.stream, upload);
    } catch (err) {
      await bucket.delete(oid).catch(() => {}); // our own chunks only (a fresh ObjectId)
      throw err;
    }
    try {
      await bucket.rename(oid, id);
    } catch (err) {
      await bucket.delete(oid).catch(() => {});
      if (err instanceof MongoServerError && err.code === 11000)
        throw Object.assign(new Error('exists'), { code: 'EEXIST' });
      throw err;
    }
    return { bytes: limit.counted() };
  }

  async stat(id: string): Promise<{ bytes: number } | undefined> {
    if (!BLOB_ID.test(id)) return undefined;
    const f = await this.files().findOne({ filename: id }, { projection: { length: 1 } });
    return f ? { bytes: f.length } : undefined;
  }

  open(id: string, range?: { start: number; end: number }): NodeJS.ReadableStream {
    checkId(id);
    // GridFS `end` is exclusive; ours is inclusive (an HTTP byte range)
    return this.bucket().openDownloadStreamByName(
      id,
      range ? { start: range.start, end: range.end + 1 } : {},
    );
  }

  async remove(id: string): Promise<void> {
    checkId(id);
    const f = await this.files().findOne({ filename: id }, { projection: { _id: 1 } });
    if (!f) return;
    await this.bucket()
      .delete(f._id)
      .catch((err) => {
        if (!(err instanceof Error && /File not found/i.test(err.message))) throw err;
      });
  }

  /**
   * Delete what interrupted uploads left (a node died mid-upload): chunks
   * with no file document, and files never renamed from their temporary
   * name, older than `olderThanMs` (the ObjectId carries its creation time).
   */
  async sweep(olderThanMs = 86_400_000, now = Date.now()): Promise<number> {
    const bucket = this.bucket();
    const cutoff = ObjectId.createFromTime(Math.floor((now - olderThanMs) / 1000));
    let n = 0;
    for await (const f of this.files().find(
      { _id: { $lt: cutoff }, filename: /\.part-[0-9a-f]{24}$/ },
      { projection: { _id: 1 } },
    )) {
      await bucket.delete(f._id).catch(() => {});
      n++;
    }
    const orphans = this.db()
      .collection(`${this.name}.chunks`)
      .aggregate<{ _id: ObjectId }>([
        { $match: { files_id: { $lt: cutoff } } },
        { $group: { _id: '$files_id' } },
        {
          $lookup: { from: `${this.name}.files`, localField: '_id', foreignField: '_id', as: 'f' },
        },
        { $match: { f: { $size: 0 } } },
        { $project: { _id: 1 } },
      ]);
    for await (const o of orphans) {
      await this.db().collection(`${this.name}.chunks`).deleteMany({ files_id: o._id });
      n++;
    }
    return n;
  }
}
