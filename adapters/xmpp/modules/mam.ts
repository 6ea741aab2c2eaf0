import { randomBytes } from 'node:crypto';
import { Element, escapeXML, xml } from '@xmpp/xml';
import {
  Address,
  BrokerError,
  defineModule,
  type ArchivedMessage,
  type ArchiveMode,
  type UserArchiveQuery,
} from '../../../broker/index.ts';
import { xmppHooks, type IqRequest } from '../hooks.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_CLIENT } from '../parser.ts';
import { envelopeXml, NS_DELAY, NS_SID } from '../stanza.ts';

import { NS_DATA, NS_FORWARD, NS_MAM, NS_RSM } from '../ns.ts';
import { dateTime, parseRsm } from './mam-query.ts';

export { NS_MAM };
const NS_MAM_EXTENDED = 'urn:xmpp:mam:2#extended';
const NS_VALIDATE = 'http://jabber.org/protocol/xdata-validate';

const FIELDS = new Set(['FORM_TYPE', 'with', 'start', 'end', 'before-id', 'after-id', 'ids']);

/** The query form and RSM set as a core query [XEP-0313 filter] [XEP-0059 2]. */
function parseQuery(query: Element): { q: UserArchiveQuery; flip: boolean } {
  const q: UserArchiveQuery = {};
  const form = query.getChild('x', NS_DATA);
  if (form) {
    if (form.attrs.type !== undefined && form.attrs.type !== 'submit')
      throw new BrokerError('bad-request', 'the form must be of type submit');
    for (const field of form.getChildren('field')) {
      const name = field.attrs.var as string | undefined;
      const values = field.getChildren('value').map((v) => v.getText());
      const value = values[0];
      if (name === undefined || !FIELDS.has(name))
        throw new BrokerError('feature-not-implemented', `unknown field ${name ?? '(no var)'}`); // [XEP-0313 query-form]
      if (name === 'ids') {
        q.ids = values;
        continue;
      }
      if (value === undefined || value === '') continue;
      switch (name) {
        case 'FORM_TYPE':
          if (value !== NS_MAM) throw new BrokerError('bad-request', `FORM_TYPE must be ${NS_MAM}`);
          break;
        case 'with': {
          const jid = Address.tryParse(value);
          if (!jid) throw new BrokerError('jid-malformed', 'with: not a JID');
          q.with = jid; // [XEP-0313 filter-jid] a bare JID: every resource; a full JID: only that one [XEP-0313 4.1.1]
          break;
        }
        case 'start':
          q.start = dateTime(value, 'start');
          break;
        case 'end':
          q.end = dateTime(value, 'end');
          break;
        case 'before-id':
          q.beforeId = value; // [XEP-0313 query-limit-id] (#extended)
          break;
        case 'after-id':
          q.afterId = value;
          break;
      }
    }
  }
  // [XEP-0059 2] max, after, before ('' = the last page [XEP-0059 2.5])
  const rsm = parseRsm(query);
  if (rsm.max !== undefined) q.max = rsm.max;
  if (rsm.after !== undefined) q.after = rsm.after;
  if (rsm.before !== undefined) q.before = rsm.before;
  return { q, flip: query.getChild('flip-page') !== undefined };
}

/** One result message [XEP-0313 results]: the archived message forwarded [XEP-0297] with its archive time [XEP-0203]. */
function resultXml(m: ArchivedMessage, to: Address, queryId: string | undefined): string {
  // The inner copy carries no stanza-id of its own: the result's id is the archive id.
  const inner = envelopeXml({ ...m.env, archive: undefined, delay: undefined }, m.env.to);
  const qid = queryId === undefined ? '' : ` queryid='${escapeXML(queryId)}'`;
  return (
    `<message xmlns='${NS_CLIENT}' to='${escapeXML(to.toString())}' id='${randomBytes(6).toString('hex')}'>` +
    `<result xmlns='${NS_MAM}'${qid} id='${escapeXML(m.id)}'><forwarded xmlns='${NS_FORWARD}'>` +
    `<delay xmlns='${NS_DELAY}' stamp='${new Date(m.stamp).toISOString()}'/>${inner}</forwarded></result></message>`
  );
}

/** The query form [XEP-0313 query-form], with the extended fields. */
function formXml(): Element {
  const field = (v: string, type: string) => xml('field', { var: v, type });
  return xml(
    'query',
    { xmlns: NS_MAM },
    xml(
      'x',
      { xmlns: NS_DATA, type: 'form' },
      xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_MAM)),
      field('with', 'jid-single'),
      field('start', 'text-single'),
      field('end', 'text-single'),
      field('before-id', 'text-single'),
      field('after-id', 'text-single'),
      xml(
        'field',
        { var: 'ids', type: 'list-multi' },
        xml('validate', { xmlns: NS_VALIDATE, datatype: 'xs:string' }, xml('open', {})),
      ),
    ),
  );
}

function prefsXml(p: { default: ArchiveMode; always: string[]; never: string[] }): Element {
  const list = (name: string, jids: string[]) =>
    xml(name, {}, ...jids.map((j) => xml('jid', {}, j)));
  return xml(
    'prefs',
    { xmlns: NS_MAM, default: p.default },
    list('always', p.always),
    list('never', p.never),
  );
}

function parsePrefs(el: Element): { default: ArchiveMode; always: string[]; never: string[] } {
  const mode = el.attrs.default;
  if (mode !== 'always' && mode !== 'never' && mode !== 'roster')
    throw new BrokerError('bad-request', 'default must be always, never or roster'); // [XEP-0441 2.1]
  const jids = (name: string) =>
    (el.getChild(name)?.getChildren('jid') ?? []).map((j) => {
      const a = Address.tryParse(j.getText().trim());
      if (!a) throw new BrokerError('jid-malformed', `${name}: not a JID`);
      return a.toString();
    });
  return { default: mode, always: jids('always'), never: jids('never') };
}

/**
 * XEP-0313 Message Archive Management v2 on each user's own archive, with
 * XEP-0059 paging and the extended features (before-id, after-id, ids,
 * flip-page, metadata); XEP-0359 stanza-ids come from the archive ids
 * (adapters/xmpp/stanza.ts adds them to every archived message delivered).
 */
export default defineModule({
  name: 'mam',
  description: 'Message Archive Management (user archives)',
  options: {},
  specs: [
    {
      spec: 'XEP-0313',
      status: 'partial',
      note: 'v2 and #extended (before-id, after-id, ids, flip-page, metadata) on user archives; `with` a bare JID matches every resource, a full JID only that JID [4.1.1] (no RSM count then); MUC archives in module muc; no pubsub archives',
    },
    {
      spec: 'XEP-0441',
      status: 'partial',
      note: 'always/never/roster preferences in urn:xmpp:mam:2, stored per user, applied when a message is archived (never wins over always); listed JIDs are kept as bare JIDs',
    },
    {
      spec: 'XEP-0059',
      status: 'partial',
      note: 'after, before (empty = last page), max, first, last, count; no index',
    },
    {
      spec: 'XEP-0359',
      status: 'complete',
      note: "stanza-id by the user's bare JID on archived messages, live and offline; client-sent ids claiming this server removed; origin-id kept",
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const hooks = xmppHooks(broker);
    const own = (req: IqRequest) => {
      // [XEP-0313 security-privacy] a user's archive is the user's alone: forbidden to anyone else
      if (req.to.isDomain)
        throw new BrokerError('service-unavailable', 'the server keeps no archive of its own');
      if (!req.to.equals(req.from.bare()))
        throw new BrokerError('forbidden', 'only the owner may use an archive');
    };
    const handle = async (req: IqRequest) => {
      const el = req.child;
      if (el.name === 'query') {
        own(req);
        if (req.type === 'get') return formXml(); // [XEP-0313 query-form]
        if (el.attrs.node) throw new BrokerError('item-not-found', 'no archive nodes');
        const { q, flip } = parseQuery(el);
        const page = await broker.archive.queryUser(req.from, q);
        const messages = flip ? [...page.messages].reverse() : page.messages; // [XEP-0313 query-paging-flip]
        const queryId = el.attrs.queryid as string | undefined;
        // As stanzas: stream management counts them, CSI lets them through [XEP-0198 4]
        for (const m of messages) req.conn.sendStanza(resultXml(m, req.from, queryId));
        // [XEP-0313 query-paging] fin in the result, complete on the last page; [XEP-0059 2.6] first/last of the page as sent, and the count
        const set = xml('set', { xmlns: NS_RSM });
        if (messages.length > 0) {
          set.append(xml('first', {}, messages[0].id));
          set.append(xml('last', {}, messages[messages.length - 1].id));
        }
        if (page.count !== undefined) set.append(xml('count', {}, String(page.count)));
        return xml(
          'fin',
          page.complete ? { xmlns: NS_MAM, complete: 'true' } : { xmlns: NS_MAM },
          set,
        );
      }
      if (el.name === 'prefs') {
        own(req);
        if (req.type === 'get') return prefsXml(await broker.archive.getPrefs(req.from)); // [XEP-0441 2.1]
        return prefsXml(await broker.archive.setPrefs(req.from, parsePrefs(el))); // [XEP-0441 2.1] the applied preferences
      }
      if (el.name === 'metadata') {
        // [XEP-0313 archive-metadata]
        own(req);
        if (req.type !== 'get') throw new BrokerError('bad-request');
        const b = await broker.archive.metadata(req.from);
        const md = xml('metadata', { xmlns: NS_MAM });
        if (b.first)
          md.append(
            xml('start', {
              id: b.first.archiveId,
              timestamp: new Date(b.first.archivedAt).toISOString(),
            }),
          );
        if (b.last)
          md.append(
            xml('end', {
              id: b.last.archiveId,
              timestamp: new Date(b.last.archivedAt).toISOString(),
            }),
          );
        return md;
      }
      return undefined;
    };
    // Keyed IQ handlers (iq-registry.ts): one per payload and type
    const iq = iqRegistry(broker);
    for (const name of ['query', 'prefs', 'metadata']) {
      for (const type of ['get', 'set'] as const)
        ctx.onUnload(iq.register(ctx.name, { type, ns: NS_MAM, name }, handle));
    }
    ctx.onUnload(
      hooks.on('disco:info', (info, target, requester) => {
        // [XEP-0313 support] clients look for MAM on their own bare JID
        if (target.isDomain || !target.equals(requester.bare())) return undefined;
        return { ...info, features: [...info.features, NS_MAM, NS_MAM_EXTENDED, NS_SID] };
      }),
    );
  },
});
