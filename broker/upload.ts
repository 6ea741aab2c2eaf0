import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { BlobStore, KeyValueStore } from '../storage/types.ts';
import type { Broker } from './broker.ts';
import { BrokerError } from './errors.ts';

/**
 * HTTP File Upload, the protocol-neutral part (docs/upload.md): slots
 * (XEP-0363 over XMPP, `upload/request/{me}` over MQTT), the limits, the
 * signed tokens the HTTP route checks, the records and the purge. The bytes
 * live in a {@link BlobStore} that bin/ picks; the HMAC key is bin/'s too
 * (`<dataDir>/upload.key`, mode 0600).
 */

export interface UploadLimits {
  /** public domain of the service (`upload.{domain}`) */
  host: string;
  maxFileSize: number;
  /** bytes one user may have stored (and in unused slots) at once; 0 = unlimited */
  quotaBytes: number;
  /** bytes one user may request per UTC day; 0 = unlimited */
  dailyBytes: number;
  /** allowed content types (`image/*` or exact); empty = any */
  allowedTypes: string[];
  slotTtlMs: number;
  /** stored files are deleted this long after upload; 0 = kept until the account goes */
  maxAgeMs: number;
  /** an upload that sends no byte for this long is cut */
  stallMs: number;
}

/** What bin/ provides: where the bytes go and the signing key. */
export interface UploadBackend {
  blobs: BlobStore;
  secret: Buffer;
}

/** One file or slot: `f/<id>` in the kv store `upload`. */
export interface UploadRecord {
  owner: string;
  filename: string;
  size: number;
  contentType: string;
  created: number;
  /** slot expiry: the PUT is refused after it */
  expires: number;
  stored: boolean;
}

export interface SlotRequest {
  filename: string;
  size: number;
  contentType?: string;
}

export interface Slot {
  put: string;
  get: string;
  /** ms since the epoch: the PUT URL stops working then */
  expires: number;
  maxFileSize: number;
}

/** A refused slot request; `maxFileSize` / `retryAt` feed XEP-0363's application conditions. */
export class UploadRefused extends BrokerError {
  readonly maxFileSize?: number;
  readonly retryAt?: number;
  constructor(
    condition: 'not-acceptable' | 'resource-constraint' | 'not-allowed' | 'bad-request',
    text: string,
    extra: { maxFileSize?: number; retryAt?: number } = {},
  ) {
    super(condition, text);
    this.maxFileSize = extra.maxFileSize;
    this.retryAt = extra.retryAt;
  }
}

const DAY = 86_400_000;

/** Filenames: one path segment, printable, at most 255 UTF-8 bytes. */
export function validFilename(name: string): boolean {
  if (!name || name === '.' || name === '..' || Buffer.byteLength(name) > 255) return false;
  return !/[\u0000-\u001f\u007f/\\]/.test(name);
}

export function typeAllowed(allowed: string[], type: string): boolean {
  if (!allowed.length) return true;
  const t = type.toLowerCase();
  return allowed.some((a) =>
    a.endsWith('/*') ? t.startsWith(a.slice(0, -1).toLowerCase()) : t === a.toLowerCase(),
  );
}

export class UploadService {
  readonly limits: UploadLimits;
  private readonly broker: Broker;
  private readonly backend: UploadBackend;
  readonly kv: KeyValueStore<unknown>;
  /** `https://host:port`, set by bin/ once the HTTPS listener has its port */
  baseUrl = '';

  constructor(broker: Broker, backend: UploadBackend, limits: UploadLimits) {
    this.broker = broker;
    this.backend = backend;
    this.limits = limits;
    this.kv = broker.storage.kv('upload');
  }

  get blobs(): BlobStore {
    return this.backend.blobs;
  }

  private sign(id: string, exp: number, filename: string): string {
    return createHmac('sha256', this.backend.secret)
      .update(`${id}\n${exp}\n${filename}`)
      .digest('base64url');
  }

  /** Hand out a slot for `owner` (a bare JID), or throw {@link UploadRefused} [XEP-0363 4]. */
  async requestSlot(owner: string, req: SlotRequest, now = Date.now()): Promise<Slot> {
    const l = this.limits;
    if (!this.baseUrl)
      throw new BrokerError('service-unavailable', 'no HTTPS listener for uploads');
    if (!validFilename(req.filename))
      throw new UploadRefused(
        'bad-request',
        'filename: one path segment without control characters, at most 255 bytes',
      );
    if (!Number.isSafeInteger(req.size) || req.size <= 0)
      throw new UploadRefused('bad-request', 'size: a positive integer');
    const contentType = req.contentType || 'application/octet-stream';
    if (!/^[\w.+-]+\/[\w.+-]+$/.test(contentType))
      throw new UploadRefused('bad-request', 'content-type: type/subtype');
    if (req.size > l.maxFileSize)
      // [XEP-0363 4] file-too-large with max-file-size
      throw new UploadRefused(
        'not-acceptable',
        `File too large. The maximum file size is ${l.maxFileSize} bytes`,
        { maxFileSize: l.maxFileSize },
      );
    if (!typeAllowed(l.allowedTypes, contentType))
      throw new UploadRefused('not-allowed', `Files of type ${contentType} are not accepted here`); // [XEP-0363 4] not-allowed
    const mine = (await this.kv.entries(`u/${owner}/`)) as [
      string,
      { size: number; created: number },
    ][];
    if (l.quotaBytes > 0) {
      const used = mine.reduce((n, [, v]) => n + v.size, 0);
      if (used + req.size > l.quotaBytes) {
        // [XEP-0363 4] resource-constraint; retry when the oldest file expires, if files expire
        const oldest = Math.min(...mine.map(([, v]) => v.created));
        const retryAt = l.maxAgeMs > 0 && mine.length ? oldest + l.maxAgeMs : undefined;
        throw new UploadRefused(
          'resource-constraint',
          `Quota reached: ${used} of ${l.quotaBytes} bytes stored`,
          { retryAt },
        );
      }
    }
    const day = new Date(now).toISOString().slice(0, 10);
    const dayKey = `d/${owner}/${day}`;
    const today = ((await this.kv.get(dayKey)) as number | undefined) ?? 0;
    if (l.dailyBytes > 0 && today + req.size > l.dailyBytes)
      throw new UploadRefused(
        'resource-constraint',
        `Daily upload volume of ${l.dailyBytes} bytes reached`,
        { retryAt: (Math.floor(now / DAY) + 1) * DAY },
      ); // [XEP-0363 4] retry at the next UTC day
    const id = randomBytes(18).toString('base64url'); // 144 random bits: unguessable
    const expires = now + l.slotTtlMs;
    const rec: UploadRecord = {
      owner,
      filename: req.filename,
      size: req.size,
      contentType,
      created: now,
      expires,
      stored: false,
    };
    await this.kv.batch([
      { type: 'put', key: `f/${id}`, value: rec },
      { type: 'put', key: `u/${owner}/${id}`, value: { size: req.size, created: now } },
      { type: 'put', key: dayKey, value: today + req.size },
    ]);
    const url = `${this.baseUrl}/upload/${id}.${expires.toString(36)}.${this.sign(id, expires, req.filename)}/${encodeURIComponent(req.filename)}`;
    return { put: url, get: url, expires, maxFileSize: l.maxFileSize };
  }

  /**
   * The record a URL's token and filename stand for, when the signature is
   * right (constant-time compare); undefined otherwise. The expiry is the
   * caller's to check (it binds PUT, not GET).
   */
  async resolve(
    token: string,
    filename: string,
  ): Promise<{ id: string; rec: UploadRecord; slotExpired: boolean } | undefined> {
    const m = /^([A-Za-z0-9_-]{24})\.([0-9a-z]{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!m) return undefined;
    const [, id, expS, sig] = m;
    const exp = parseInt(expS, 36);
    const want = Buffer.from(this.sign(id, exp, filename));
    const got = Buffer.from(sig);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
    const rec = (await this.kv.get(`f/${id}`)) as UploadRecord | undefined;
    if (!rec || rec.filename !== filename || rec.expires !== exp) return undefined;
    return { id, rec, slotExpired: Date.now() > exp };
  }

  async markStored(id: string, rec: UploadRecord): Promise<void> {
    await this.kv.put(`f/${id}`, { ...rec, stored: true });
  }

  async removeFile(id: string, rec: UploadRecord): Promise<void> {
    await this.backend.blobs.remove(id);
    await this.kv.batch([
      { type: 'del', key: `f/${id}` },
      { type: 'del', key: `u/${rec.owner}/${id}` },
    ]);
  }

  /** Delete unused slots past their expiry, files older than maxAge, day counters older than yesterday. */
  async purge(now = Date.now()): Promise<{ files: number; bytes: number }> {
    const maxAge = this.limits.maxAgeMs;
    const r = await purgeUploads(
      this.broker,
      (v) => (v.stored ? maxAge > 0 && now - v.created > maxAge : now > v.expires + 60_000),
      undefined,
      this.backend.blobs,
    );
    const n = r.files;
    const yesterday = new Date(now - DAY).toISOString().slice(0, 10);
    const old = (await this.kv.keys('d/')).filter(
      (k) => k.slice(k.lastIndexOf('/') + 1) < yesterday,
    );
    await this.kv.batch(old.map((key) => ({ type: 'del' as const, key })));
    const swept = (await this.backend.blobs.sweep?.()) ?? 0; // halves a crash left, older than a day
    if (swept) this.broker.log.info({ swept }, 'upload: removed what interrupted uploads left');
    if (n)
      this.broker.log.info({ files: n, bytes: r.bytes }, 'upload: purged expired files and slots');
    return r;
  }
}

/**
 * Delete every file and slot `match` picks (of one owner's, when given):
 * blob first, then its records. For the purge timer and `parley upload
 * purge`; works with uploads off (only the backend is needed).
 */
export async function purgeUploads(
  broker: Broker,
  match: (rec: UploadRecord) => boolean,
  owner?: string,
  blobs: BlobStore | undefined = backends.get(broker)?.blobs,
): Promise<{ files: number; bytes: number }> {
  const kv = broker.storage.kv('upload');
  const ids = owner
    ? (await kv.keys(`u/${owner}/`)).map((k) => k.slice(k.lastIndexOf('/') + 1))
    : (await kv.keys('f/')).map((k) => k.slice(2));
  let files = 0;
  let bytes = 0;
  for (const id of ids) {
    const rec = (await kv.get(`f/${id}`)) as UploadRecord | undefined;
    if (!rec || !match(rec)) continue;
    await blobs?.remove(id);
    await kv.batch([
      { type: 'del', key: `f/${id}` },
      { type: 'del', key: `u/${rec.owner}/${id}` },
    ]);
    files++;
    if (rec.stored) bytes += rec.size;
  }
  return { files, bytes };
}

const backends = new WeakMap<Broker, UploadBackend>();
const services = new WeakMap<Broker, UploadService>();

/** For bin/: where files go and the key that signs URLs; before broker.start(). */
export function setUploadBackend(broker: Broker, backend: UploadBackend): void {
  backends.set(broker, backend);
}

export function uploadBackend(broker: Broker): UploadBackend | undefined {
  return backends.get(broker);
}

/** The running upload service, or undefined when `modules.upload.host` is null or no backend is wired. */
export function uploadService(broker: Broker): UploadService | undefined {
  return services.get(broker);
}

/** For the `upload` module only. */
export function setUploadService(broker: Broker, s: UploadService | undefined): void {
  if (s) services.set(broker, s);
  else services.delete(broker);
}

/** Account removal: every file and slot of `owner` and its day counters. */
export async function removeUserUploads(broker: Broker, owner: string): Promise<void> {
  const kv = broker.storage.kv('upload');
  const blobs = backends.get(broker)?.blobs;
  const ops: { type: 'del'; key: string }[] = [];
  for (const key of await kv.keys(`u/${owner}/`)) {
    const id = key.slice(key.lastIndexOf('/') + 1);
    await blobs?.remove(id);
    ops.push({ type: 'del', key }, { type: 'del', key: `f/${id}` });
  }
  for (const key of await kv.keys(`d/${owner}/`)) ops.push({ type: 'del', key });
  await kv.batch(ops);
}
