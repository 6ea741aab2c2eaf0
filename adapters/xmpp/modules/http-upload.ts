import { escapeXML } from '@xmpp/xml';
import { BrokerError, defineModule, UploadRefused, uploadService, type AppCondition, type Broker, type Envelope, type UploadService } from '../../../broker/index.ts';
import { xmppHooks } from '../hooks.ts';
import { parseStored } from '../stanza.ts';
import { NS_DATA, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_HTTP_UPLOAD, NS_PING } from '../ns.ts';

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
    ctx.onUnload(broker.hosts.register(ctx.name, svc.limits.host, (env) => handle(broker, svc, env)));
    ctx.onUnload(
      xmppHooks(broker).on('disco:items', (items, target) =>
        target.domain === broker.domain && !target.local ? [...items, { jid: svc.limits.host, name: 'HTTP File Upload' }] : undefined,
      ),
    );
  },
});

function reply(broker: Broker, env: Envelope, payload?: string): Promise<void> {
  return broker.router.route({ kind: 'iq', type: 'result', from: env.to, to: env.from, id: env.id, extensions: payload ? [payload] : [] });
}

function fail(broker: Broker, env: Envelope, err: BrokerError): Promise<void> {
  let app: AppCondition | undefined;
  let type = err.type;
  if (err instanceof UploadRefused) {
    if (err.maxFileSize !== undefined) {
      app = { name: 'file-too-large', ns: NS_HTTP_UPLOAD, children: [['max-file-size', String(err.maxFileSize)]] }; // [XEP-0363 4]
      type = 'modify';
    } else if (err.condition === 'resource-constraint') {
      type = 'wait'; // [XEP-0363 4] quota: wait, with the time to retry when known
      if (err.retryAt !== undefined) app = { name: 'retry', ns: NS_HTTP_UPLOAD, attrs: { stamp: new Date(err.retryAt).toISOString().replace(/\.\d{3}Z$/, 'Z') } };
    } else if (err.condition === 'not-allowed') type = 'cancel';
  }
  return broker.router.route({
    kind: 'iq',
    type: 'error',
    from: env.to,
    to: env.from,
    id: env.id,
    extensions: [],
    error: { condition: err.condition, type, text: err.text, app },
  });
}

async function handle(broker: Broker, svc: UploadService, env: Envelope): Promise<void> {
  if (env.kind !== 'iq') {
    if (env.kind === 'message' && env.type !== 'error') await broker.router.bounce(env, 'service-unavailable');
    return;
  }
  if (env.type === 'result' || env.type === 'error') return;
  try {
    // only this domain's accounts may upload [XEP-0363 4]
    if (env.from.domain !== broker.domain || !env.from.local) throw new BrokerError('not-allowed', 'only accounts of this server may upload');
    if (env.to.local || env.to.resource) throw new BrokerError('service-unavailable');
    const child = parseStored(env.extensions);
    if (!child) throw new BrokerError('bad-request');
    const key = `${env.type} {${child.attrs.xmlns ?? ''}}${child.name}`;
    switch (key) {
      case `get {${NS_DISCO_INFO}}query`: {
        if (child.attrs.node) throw new BrokerError('item-not-found');
        // [XEP-0363 3] identity store/file, the feature, and max-file-size in an XEP-0128 form
        return await reply(
          broker,
          env,
          `<query xmlns='${NS_DISCO_INFO}'><identity category='store' type='file' name='HTTP File Upload'/>` +
            [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_HTTP_UPLOAD, NS_PING].map((f) => `<feature var='${f}'/>`).join('') +
            `<x xmlns='${NS_DATA}' type='result'><field var='FORM_TYPE' type='hidden'><value>${NS_HTTP_UPLOAD}</value></field>` +
            `<field var='max-file-size'><value>${svc.limits.maxFileSize}</value></field></x></query>`,
        );
      }
      case `get {${NS_DISCO_ITEMS}}query`:
        return await reply(broker, env, `<query xmlns='${NS_DISCO_ITEMS}'/>`);
      case `get {${NS_PING}}ping`:
        return await reply(broker, env);
      case `get {${NS_HTTP_UPLOAD}}request`: {
        const { filename, size, 'content-type': contentType } = child.attrs as Record<string, string | undefined>;
        // [XEP-0363 4] size is a positive integer in bytes
        if (filename === undefined || size === undefined || !/^\d{1,16}$/.test(size)) throw new UploadRefused('bad-request', 'filename and a positive integer size are required');
        const slot = await svc.requestSlot(env.from.bare().toString(), { filename, size: Number(size), contentType });
        return await reply(broker, env, `<slot xmlns='${NS_HTTP_UPLOAD}'><put url='${escapeXML(slot.put)}'/><get url='${escapeXML(slot.get)}'/></slot>`);
      }
      default:
        throw new BrokerError('service-unavailable'); // [RFC6120 8.4]
    }
  } catch (err) {
    if (err instanceof BrokerError) return fail(broker, env, err);
    throw err;
  }
}
