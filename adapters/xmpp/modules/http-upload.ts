import { escapeXML } from '@xmpp/xml';
import {
  defineModule,
  UploadRefused,
  uploadService,
  type AppCondition,
  type BrokerError,
  type ErrorType,
} from '../../../broker/index.ts';
import { NS_DATA, NS_HTTP_UPLOAD } from '../ns.ts';
import { iqKey, serveDomain } from '../service-host.ts';

/**
 * XEP-0363 HTTP File Upload over XMPP: the `upload.{domain}` service domain
 * (disco and slot requests). Limits, tokens and files are the `upload`
 * core module's (broker/upload.ts); the bytes go over HTTPS (`/upload/`).
 */
export default defineModule({
  name: 'http-upload',
  description: 'HTTP File Upload (XEP-0363): the upload.{domain} service that hands out slots',
  options: {},
  specs: [
    {
      spec: 'XEP-0363',
      status: 'complete',
      note: 'slots with PUT/GET URLs on the HTTPS listener, signed expiring tokens, file-too-large with max-file-size, quota and daily volume (resource-constraint with retry), allowed types (not-allowed), Range, CORS; docs/upload.md',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const svc = uploadService(broker);
    if (!svc) return; // modules.upload.host: null
    ctx.onUnload(
      serveDomain(broker, {
        owner: ctx.name,
        host: svc.limits.host,
        name: 'HTTP File Upload',
        // [XEP-0363 3] identity store/file, the feature, and max-file-size in an XEP-0128 form
        identity: { category: 'store', type: 'file' },
        features: [NS_HTTP_UPLOAD],
        infoExtra: () =>
          `<x xmlns='${NS_DATA}' type='result'><field var='FORM_TYPE' type='hidden'><value>${NS_HTTP_UPLOAD}</value></field>` +
          `<field var='max-file-size'><value>${svc.limits.maxFileSize}</value></field></x>`,
        handlers: {
          [iqKey('get', NS_HTTP_UPLOAD, 'request')]: async (child, env) => {
            const {
              filename,
              size,
              'content-type': contentType,
            } = child.attrs as Record<string, string | undefined>;
            // [XEP-0363 4] size is a positive integer in bytes
            if (filename === undefined || size === undefined || !/^\d{1,16}$/.test(size))
              throw new UploadRefused(
                'bad-request',
                'filename and a positive integer size are required',
              );
            const slot = await svc.requestSlot(env.from.bare().toString(), {
              filename,
              size: Number(size),
              contentType,
            });
            return `<slot xmlns='${NS_HTTP_UPLOAD}'><put url='${escapeXML(slot.put)}'/><get url='${escapeXML(slot.get)}'/></slot>`;
          },
        },
        mapError: uploadError,
      }),
    );
  },
});

/** UploadRefused → the XEP's error type and application condition [XEP-0363 4]. */
function uploadError(err: BrokerError): { type?: ErrorType; app?: AppCondition } | undefined {
  if (!(err instanceof UploadRefused)) return undefined;
  if (err.maxFileSize !== undefined)
    return {
      type: 'modify',
      app: {
        name: 'file-too-large',
        ns: NS_HTTP_UPLOAD,
        children: [['max-file-size', String(err.maxFileSize)]],
      },
    }; // [XEP-0363 4]
  if (err.condition === 'resource-constraint')
    // [XEP-0363 4] quota: wait, with the time to retry when known
    return {
      type: 'wait',
      app:
        err.retryAt === undefined
          ? undefined
          : {
              name: 'retry',
              ns: NS_HTTP_UPLOAD,
              attrs: { stamp: new Date(err.retryAt).toISOString().replace(/\.\d{3}Z$/, 'Z') },
            },
    };
  if (err.condition === 'not-allowed') return { type: 'cancel' };
  return undefined;
}
