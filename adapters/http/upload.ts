import { Transform } from 'node:stream';
import type http from 'node:http';
import {
  uploadService,
  validFilename,
  type UploadRecord,
  type UploadService,
} from '../../broker/index.ts';
import { isSecure, type WebServer } from './server.ts';

/** Where slot URLs point: `/upload/<token>/<filename>` (broker/upload.ts signs them). */
export const UPLOAD_PATH = '/upload/';

const CORS_METHODS = 'GET, HEAD, PUT, OPTIONS';

/**
 * The HTTP half of XEP-0363 (docs/upload.md): PUT of a slot's file, GET/HEAD
 * with Range, CORS for web clients (following `web.allowedOrigins`), on the
 * HTTPS listener only. No listing, and no path reaches the disk: the file is
 * found by the id in the signed token, never by the URL's path.
 */
export function installUploadRoutes(
  web: WebServer,
  broker: Parameters<typeof uploadService>[0],
  opts: { allowedOrigins: string[] },
): void {
  web.route(UPLOAD_PATH, async (req, res, url) => {
    const svc = uploadService(broker);
    if (!svc) return false; // uploads off: 404
    const origin = req.headers.origin;
    const allowed = opts.allowedOrigins;
    if (origin && allowed.length > 0 && !allowed.includes(origin)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('origin not allowed\n');
      return;
    }
    // CORS: with a list only its origins are echoed, never '*'
    const cors: Record<string, string> = origin
      ? {
          'access-control-allow-origin': allowed.length ? origin : '*',
          vary: 'Origin',
          'access-control-expose-headers': 'Content-Length, Content-Range, Accept-Ranges, ETag',
        }
      : {};
    if (!isSecure(req)) {
      res
        .writeHead(403, { ...cors, 'content-type': 'text/plain' })
        .end('uploads are served over HTTPS only\n'); // [XEP-0363 5] HTTPS
      return;
    }
    const parts = url.pathname.slice(UPLOAD_PATH.length).split('/');
    let filename: string;
    try {
      filename = decodeURIComponent(parts[1] ?? '');
    } catch {
      filename = '';
    }
    // exactly /upload/<token>/<filename>; anything else (a bare /upload/, traversal, %2F in the name) is 404
    if (parts.length !== 2 || !validFilename(filename)) {
      res.writeHead(404, { ...cors, 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (req.method === 'OPTIONS') {
      res
        .writeHead(204, {
          ...cors,
          'access-control-allow-methods': CORS_METHODS,
          'access-control-allow-headers': 'Content-Type, Range',
          'access-control-max-age': '86400',
        })
        .end();
      return;
    }
    if (req.method === 'PUT') return put(svc, req, res, parts[0], filename, cors);
    if (req.method === 'GET' || req.method === 'HEAD')
      return get(svc, req, res, parts[0], filename, cors);
    res
      .writeHead(405, { ...cors, allow: CORS_METHODS, 'content-type': 'text/plain' })
      .end('method not allowed\n');
  });
}

function plain(
  res: http.ServerResponse,
  status: number,
  cors: Record<string, string>,
  text: string,
  extra: Record<string, string> = {},
): void {
  res
    .writeHead(status, { ...cors, ...extra, 'content-type': 'text/plain', connection: 'close' })
    .end(`${text}\n`);
}

async function put(
  svc: UploadService,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  token: string,
  filename: string,
  cors: Record<string, string>,
): Promise<void> {
  const found = await svc.resolve(token, filename);
  if (!found) return plain(res, 403, cors, 'no such slot, or a bad signature'); // [XEP-0363 5] a PUT needs a valid slot
  const { id, rec } = found;
  if (rec.stored || (await svc.blobs.stat(id)))
    return plain(res, 409, cors, 'this slot was already used; files are never overwritten');
  if (found.slotExpired) return plain(res, 403, cors, 'slot expired');
  const length = req.headers['content-length'];
  if (length === undefined || !/^\d+$/.test(length))
    return plain(res, 411, cors, 'Content-Length is required');
  // [XEP-0363 5] the upload must match the size the slot was requested for
  if (Number(length) !== rec.size)
    return plain(res, 413, cors, `this slot is for exactly ${rec.size} bytes`);
  const type = req.headers['content-type']?.split(';')[0].trim().toLowerCase();
  // [XEP-0363 5] and its content type, when one was given
  if (type !== undefined && type !== '' && type !== rec.contentType.toLowerCase())
    return plain(res, 415, cors, `this slot is for ${rec.contentType}`);
  // A body that stops arriving is cut after modules.upload.stallTimeoutSeconds without a byte: the
  // whole-request bound (web.requestTimeoutMs) is long enough for a big file on a slow link, so a
  // stalled one must not sit there. The watch passes every chunk on and restarts the clock.
  const cut = () => {
    watch.destroy(Object.assign(new Error('upload stalled'), { code: 'ESTALLED' }));
    req.destroy();
  };
  let stall = setTimeout(cut, svc.limits.stallMs);
  const watch = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      clearTimeout(stall);
      stall = setTimeout(cut, svc.limits.stallMs);
      cb(null, chunk);
    },
  });
  req.on('error', (err) => watch.destroy(err));
  // a client that goes away mid-upload: the watch must not wait for an end that never comes
  req.on('close', () => {
    if (!req.complete)
      watch.destroy(Object.assign(new Error('upload aborted'), { code: 'ECONNRESET' }));
  });
  req.pipe(watch);
  try {
    await svc.blobs.write(id, watch, rec.size);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return plain(res, 409, cors, 'this slot was already used');
    if (code === 'E2BIG')
      return plain(res, 413, cors, `this slot is for exactly ${rec.size} bytes`);
    if (req.destroyed || req.readableAborted) return; // the client went away mid-upload, or stalled
    throw err;
  } finally {
    clearTimeout(stall);
  }
  const stored = await svc.blobs.stat(id);
  if (!stored || stored.bytes !== rec.size) {
    await svc.blobs.remove(id);
    return plain(res, 400, cors, `the body was not ${rec.size} bytes`);
  }
  await svc.markStored(id, rec);
  res.writeHead(201, { ...cors, 'content-type': 'text/plain' }).end('created\n');
}

/** Inline only for raster images; anything else (SVG and HTML included) is an attachment, so it never runs in our origin. */
function disposition(rec: UploadRecord): string {
  const inline = /^image\/(png|jpeg|gif|webp|avif|bmp|heic|heif)$/i.test(rec.contentType);
  return `${inline ? 'inline' : 'attachment'}; filename*=UTF-8''${encodeURIComponent(rec.filename)}`;
}

async function get(
  svc: UploadService,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  token: string,
  filename: string,
  cors: Record<string, string>,
): Promise<void> {
  const found = await svc.resolve(token, filename);
  const size = found?.rec.stored ? (await svc.blobs.stat(found.id))?.bytes : undefined;
  if (!found || size === undefined) return plain(res, 404, cors, 'not found');
  const { id, rec } = found;
  const etag = `"${id}"`;
  const headers: Record<string, string> = {
    ...cors,
    'content-type': rec.contentType,
    'content-disposition': disposition(rec),
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'; sandbox",
    // a URL never changes content (no overwrite): cacheable for the file's remaining life, by the user's caches only
    'cache-control': `private, max-age=${svc.limits.maxAgeMs > 0 ? Math.max(0, Math.floor((rec.created + svc.limits.maxAgeMs - Date.now()) / 1000)) : 31536000}, immutable`,
    etag,
    'last-modified': new Date(rec.created).toUTCString(),
    'accept-ranges': 'bytes',
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers).end();
    return;
  }
  let range: { start: number; end: number } | undefined;
  const rh = req.headers.range;
  const ifRange = req.headers['if-range'];
  if (rh !== undefined && (ifRange === undefined || ifRange === etag)) {
    // [RFC9110 14.2] one byte range; a multi-range or malformed header is ignored (full 200)
    const m = /^bytes=(\d*)-(\d*)$/.exec(rh.trim());
    if (m && (m[1] !== '' || m[2] !== '')) {
      let start: number;
      let end: number;
      if (m[1] === '') {
        start = Math.max(0, size - Number(m[2])); // suffix: the last n bytes
        end = size - 1;
        if (Number(m[2]) === 0) start = size; // bytes=-0 is unsatisfiable
      } else {
        start = Number(m[1]);
        end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
        if (m[2] !== '' && Number(m[2]) < start) start = size; // invalid: treat as unsatisfiable
      }
      if (start >= size) {
        // [RFC9110 15.5.17] 416 with the current length
        res
          .writeHead(416, {
            ...headers,
            'content-range': `bytes */${size}`,
            'content-type': 'text/plain',
          })
          .end();
        return;
      }
      range = { start, end };
    }
  }
  if (range) {
    headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`; // [RFC9110 15.3.7] 206
    headers['content-length'] = String(range.end - range.start + 1);
    res.writeHead(206, headers);
  } else {
    headers['content-length'] = String(size);
    res.writeHead(200, headers);
  }
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const stream = svc.blobs.open(id, range) as NodeJS.ReadableStream & { destroy(): void };
  stream.on('error', () => res.destroy());
  res.on('close', () => stream.destroy());
  stream.pipe(res);
}
