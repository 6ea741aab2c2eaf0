import { defineModule } from '../module.ts';
import { setUploadService, uploadBackend, UploadService } from '../upload.ts';

/**
 * HTTP File Upload core (docs/upload.md): the slot service that the XMPP
 * `http-upload` module (XEP-0363) and the MQTT `upload/request/{me}` topic
 * render, and the HTTP route `/upload/` serves.
 */
export default defineModule({
  name: 'upload',
  description:
    'HTTP File Upload: slots, limits, files on the HTTPS listener (the core XEP-0363 and MQTT share)',
  options: {
    host: {
      type: 'string',
      default: 'upload.{domain}',
      nullable: true,
      doc: "domain of the upload service (`{domain}` is the node's domain); `null` turns uploads off on every protocol",
    },
    maxFileSize: {
      type: 'number',
      default: 104857600,
      min: 1,
      doc: 'largest file in bytes; larger: file-too-large with max-file-size [XEP-0363 4]',
    },
    quotaBytes: {
      type: 'number',
      default: 1073741824,
      min: 0,
      doc: 'bytes one user may have stored at once (0 = unlimited); more: resource-constraint',
    },
    dailyBytes: {
      type: 'number',
      default: 1073741824,
      min: 0,
      doc: 'bytes one user may request per UTC day (0 = unlimited); more: resource-constraint with retry at midnight UTC',
    },
    allowedTypes: {
      type: 'strings',
      default: [],
      doc: 'content types accepted (`image/*` or exact, e.g. `application/pdf`); empty = any; others: not-allowed',
    },
    slotTtlSeconds: {
      type: 'number',
      default: 300,
      min: 1,
      doc: "how long a slot's PUT URL works",
    },
    stallTimeoutSeconds: {
      type: 'number',
      default: 30,
      min: 1,
      doc: 'an upload that sends no byte for this long is cut (a stalled or slow-body client); the whole upload is bounded by web.requestTimeoutMs',
    },
    maxAgeDays: {
      type: 'number',
      default: 30,
      min: 0,
      doc: 'files are deleted this many days after upload (0 = kept until the account is removed)',
    },
    purgeIntervalSeconds: {
      type: 'number',
      default: 3600,
      min: 1,
      doc: 'how often expired files and unused slots are purged',
    },
    baseUrl: {
      type: 'string',
      default: '',
      doc: 'start of slot URLs, e.g. `https://files.example.org` behind a proxy; empty: `https://{domain}:<https port>`',
    },
  },
  specs: [
    {
      spec: 'RFC9110',
      section: '14 (range requests on /upload/)',
      status: 'partial',
      note: 'one byte range per request (206, 416 with the length, If-Range by ETag); a multi-range request gets the whole file (200), as the RFC allows',
    },
  ],
  setup(ctx) {
    const { broker, options: o } = ctx;
    const backend = uploadBackend(broker);
    if (o.host === null || !backend) return; // uploads off (or no storage wired, as in unit tests)
    const svc = new UploadService(broker, backend, {
      host: o.host.replace('{domain}', broker.domain),
      maxFileSize: o.maxFileSize,
      quotaBytes: o.quotaBytes,
      dailyBytes: o.dailyBytes,
      allowedTypes: o.allowedTypes,
      slotTtlMs: o.slotTtlSeconds * 1000,
      maxAgeMs: o.maxAgeDays * 86_400_000,
      stallMs: o.stallTimeoutSeconds * 1000,
    });
    svc.baseUrl = o.baseUrl.replace(/\/+$/, '');
    setUploadService(broker, svc);
    ctx.onUnload(() => setUploadService(broker, undefined));
    ctx.every(o.purgeIntervalSeconds * 1000, () => {
      svc.purge().catch((err) => ctx.log.warn({ err }, 'upload purge failed'));
    });
  },
});
