import { createHash } from 'node:crypto';
import { escapeXML, unescapeXML, type Element } from '@xmpp/xml';
import { defineModule, type Envelope } from '../../../broker/index.ts';
import { XmppConnection } from '../connection.ts';
import { xmppHooks } from '../hooks.ts';
import { requestFromClient } from '../iq-registry.ts';
import { NS_CAPS, NS_CLIENT, NS_DATA, NS_DISCO_INFO } from '../ns.ts';
import { Slot } from '../session-state.ts';

/** What is known of one session's client: its caps ver and features. */
interface CapsState {
  ver?: string;
  features?: ReadonlySet<string>;
}

const capsSlot = new Slot<CapsState>('caps');

/** The features a session's client advertised through entity capabilities, if known. */
export function capsOf(conn: XmppConnection): ReadonlySet<string> | undefined {
  return conn.peek(capsSlot)?.features;
}

const C_ELEMENT = new RegExp(`^<c\\s[^>]*xmlns=(["'])${NS_CAPS.replace(/[.:/]/g, '\\$&')}\\1`);

/** The value of attribute `name` in a serialised start tag. */
function attrOf(tag: string, name: string): string | undefined {
  const m = new RegExp(`\\s${name}=(?:'([^']*)'|"([^"]*)")`).exec(tag);
  return m ? unescapeXML(m[1] ?? m[2]) : undefined;
}

/** The `<c/>` of a presence: hash, node and ver [XEP-0115 4]. */
export function capsElement(
  env: Envelope,
): { hash?: string; node?: string; ver: string } | undefined {
  const c = env.extensions.find((x) => C_ELEMENT.test(x));
  if (!c) return undefined;
  const tag = c.slice(0, c.indexOf('>') + 1);
  const ver = attrOf(tag, 'ver');
  if (!ver) return undefined;
  return { hash: attrOf(tag, 'hash'), node: attrOf(tag, 'node'), ver };
}

const HASHES: Record<string, string> = {
  'sha-1': 'sha1',
  'sha-256': 'sha256',
  'sha-512': 'sha512',
};

/** Sort by octets ('i;octet' collation) [XEP-0115 5.1]. */
function octetSort(list: string[]): string[] {
  return list.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/** The verification string of a disco#info result and its hash [XEP-0115 5.1, 5.4]. */
export function verificationHash(query: Element, hash: string): string | undefined {
  const algo = HASHES[hash];
  if (!algo) return undefined;
  let s = '';
  const ids = query
    .getChildren('identity')
    .map(
      (i) =>
        `${i.attrs.category ?? ''}/${i.attrs.type ?? ''}/${i.attrs['xml:lang'] ?? ''}/${i.attrs.name ?? ''}`,
    );
  for (const id of octetSort(ids)) s += `${id}<`;
  for (const f of octetSort(query.getChildren('feature').map((f) => f.attrs.var ?? '')))
    s += `${f}<`;
  const forms: { type: string; fields: { name: string; values: string[] }[] }[] = [];
  for (const x of query.getChildren('x', NS_DATA)) {
    const fields = x.getChildren('field');
    const ft = fields.find((f) => f.attrs.var === 'FORM_TYPE');
    if (!ft) continue; // forms without FORM_TYPE are ignored [XEP-0115 5.4]
    forms.push({
      type: ft.getChildText('value') ?? '',
      fields: fields
        .filter((f) => f !== ft)
        .map((f) => ({
          name: f.attrs.var ?? '',
          values: octetSort(f.getChildren('value').map((v) => v.getText())),
        })),
    });
  }
  forms.sort((a, b) => Buffer.compare(Buffer.from(a.type), Buffer.from(b.type)));
  for (const form of forms) {
    s += `${form.type}<`;
    form.fields.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
    for (const f of form.fields) {
      s += `${f.name}<`;
      for (const v of f.values) s += `${v}<`;
    }
  }
  return createHash(algo).update(s, 'utf8').digest('base64');
}

/**
 * XEP-0115 Entity Capabilities, server side: reads the `<c/>` of each
 * available presence, asks the client for its disco#info the first time a
 * ver is seen (one query per ver, however many clients show it), checks the
 * hash and caches the features per hash and ver, so the next client with the
 * same ver costs nothing. A ver whose hash does not verify is used for that
 * session only, never cached (a client cannot poison what others get). The
 * 'caps:changed' hook tells PEP what each session wants (`+notify`).
 */
export default defineModule({
  name: 'caps',
  description:
    "Entity Capabilities: learns each client's features (cached per hash) for PEP's +notify",
  options: {
    cacheSize: {
      type: 'number',
      default: 10_000,
      min: 1,
      doc: 'verified caps hashes kept in memory (least recently used go first)',
    },
    queryTimeoutMs: {
      type: 'number',
      default: 10_000,
      min: 100,
      doc: "how long to wait for a client's disco#info answer to a caps query",
    },
  },
  specs: [
    {
      spec: 'XEP-0115',
      status: 'complete',
      note: 'server side: caps of clients read, verified, cached per hash; the server advertises none of its own',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const hooks = xmppHooks(broker);
    const cache = new Map<string, ReadonlySet<string>>();
    const inFlight = new Map<string, Promise<ReadonlySet<string> | undefined>>();

    const remember = (key: string, features: ReadonlySet<string>) => {
      cache.delete(key);
      cache.set(key, features);
      while (cache.size > ctx.options.cacheSize) cache.delete(cache.keys().next().value!);
    };

    /** Ask the client; verified → cached for everyone, else for this session only. */
    const query = async (
      conn: XmppConnection,
      c: { hash?: string; node?: string; ver: string },
    ): Promise<ReadonlySet<string> | undefined> => {
      const node = c.node !== undefined ? ` node='${escapeXML(`${c.node}#${c.ver}`)}'` : '';
      const from = conn.address.bare().toString();
      const answer = await requestFromClient(
        conn,
        (id) =>
          `<iq xmlns='${NS_CLIENT}' type='get' id='${id}' from='${escapeXML(from)}' to='${escapeXML(conn.address.toString())}'><query xmlns='${NS_DISCO_INFO}'${node}/></iq>`,
        ctx.options.queryTimeoutMs,
      );
      const q =
        answer?.attrs.type === 'result' ? answer.getChild('query', NS_DISCO_INFO) : undefined;
      if (!q) return undefined;
      const features = new Set(
        q
          .getChildren('feature')
          .map((f) => f.attrs.var as string)
          .filter((v) => typeof v === 'string'),
      );
      if (c.hash && verificationHash(q, c.hash) === c.ver) remember(`${c.hash} ${c.ver}`, features); // [XEP-0115 5.4]
      return features;
    };

    const changed = (
      conn: XmppConnection,
      st: CapsState,
      ver: string,
      features: ReadonlySet<string>,
    ) => {
      if (st.ver !== ver) return; // a newer presence came meanwhile
      const previous = st.features;
      st.features = features;
      hooks.emit('caps:changed', conn, features, previous);
    };

    ctx.onUnload(
      broker.hooks.on('presence:available', (session, presence) => {
        if (!(session instanceof XmppConnection)) return;
        const c = capsElement(presence);
        if (!c) return;
        let st = session.state.get(capsSlot);
        if (!st) session.state.set(capsSlot, (st = {}));
        if (st.ver === c.ver) return; // unchanged: most presence updates
        st.ver = c.ver;
        const key = `${c.hash ?? ''} ${c.ver}`;
        const known = c.hash ? cache.get(key) : undefined;
        if (known) {
          remember(key, known);
          return changed(session, st, c.ver, known);
        }
        const state = st;
        const own = (): Promise<void> =>
          query(session, c).then((f) => {
            if (f) changed(session, state, c.ver, f);
          });
        if (!c.hash) return own();
        // One query per ver in flight: other clients showing it wait for that
        // answer, and take it only once it verified (then it is cached).
        const pending = inFlight.get(key);
        if (pending) {
          return pending.then(() => {
            const f = cache.get(key);
            return f ? changed(session, state, c.ver, f) : own();
          });
        }
        const p = query(session, c).finally(() => inFlight.delete(key));
        inFlight.set(key, p);
        return p.then((f) => {
          if (f) changed(session, state, c.ver, f);
        });
      }),
    );
  },
});
