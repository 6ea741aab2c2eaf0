import { xml, type Element } from '@xmpp/xml';
import { defineModule } from '../../../broker/index.ts';
import { xmppHooks } from '../hooks.ts';
import { NS_DATA, NS_SERVERINFO } from '../ns.ts';

/** The address kinds of the serverinfo form, each a `<kind>-addresses` field [XEP-0157]. */
const KINDS = ['abuse', 'admin', 'feedback', 'sales', 'security', 'status', 'support'] as const;

/** A URI with a scheme (`mailto:`, `xmpp:`, `https:`…), printable, at most 1024 characters. */
const URI = /^[a-z][a-z0-9+.-]*:[^\s\u0000-\u001f\u007f]{1,1000}$/i;

const doc = (kind: string) =>
  `URIs (\`mailto:\`, \`xmpp:\`, \`https:\`) for ${kind} contacts, in the server's disco#info [XEP-0157]`;

/**
 * XEP-0157 Contact Addresses for XMPP Services: the `serverinfo` data form
 * (XEP-0128) in the server's disco#info, from config, as Prosody's
 * `mod_server_contact_info` does.
 */
export default defineModule({
  name: 'contact-info',
  description:
    "Contact Addresses (XEP-0157): abuse, admin, support… addresses in the server's disco#info",
  options: {
    abuse: { type: 'strings', default: [], doc: doc('abuse') },
    admin: { type: 'strings', default: [], doc: doc('admin') },
    feedback: { type: 'strings', default: [], doc: doc('feedback') },
    sales: { type: 'strings', default: [], doc: doc('sales') },
    security: { type: 'strings', default: [], doc: doc('security') },
    status: { type: 'strings', default: [], doc: doc('status') },
    support: { type: 'strings', default: [], doc: doc('support') },
  },
  specs: [
    {
      spec: 'XEP-0157',
      status: 'complete',
      note: 'every address kind of the serverinfo form from config (modules.contact-info); no form when none is set',
    },
  ],
  setup(ctx) {
    const o = ctx.options;
    for (const kind of KINDS)
      for (const [i, uri] of o[kind].entries())
        if (!URI.test(uri))
          throw new Error(
            `modules.${ctx.name}.${kind}[${i}]: '${uri}' is not a URI (mailto:…, xmpp:…, https:…)`,
          );
    const set = KINDS.filter((k) => o[k].length);
    if (!set.length) return;
    const form = (): Element =>
      xml(
        'x',
        { xmlns: NS_DATA, type: 'result' },
        xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_SERVERINFO)),
        // [XEP-0157] one list-multi field per kind, each value a URI
        ...set.map((k) =>
          xml(
            'field',
            { var: `${k}-addresses`, type: 'list-multi' },
            ...o[k].map((u) => xml('value', {}, u)),
          ),
        ),
      );
    ctx.onUnload(
      xmppHooks(ctx.broker).on('disco:info', (info, target) =>
        target.isDomain ? { ...info, forms: [...(info.forms ?? []), form()] } : undefined,
      ),
    );
  },
});
