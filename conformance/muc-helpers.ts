// Helpers for the groupchat conformance tests (XEP-0045 with @xmpp/client).
import { xml, xmppClient, type Element, type TestClient, type TestNode } from './helpers.ts';

export const MUC = 'conference.localhost';
export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_DATA = 'jabber:x:data';
export const NS_MAM = 'urn:xmpp:mam:2';
export const NS_RSM = 'http://jabber.org/protocol/rsm';
export const NS_SID = 'urn:xmpp:sid:0';
export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
export const ROOMCONFIG = 'http://jabber.org/protocol/muc#roomconfig';

/** Status codes of a presence's muc#user x. */
export function codes(el: Element): number[] {
  const x = el.getChild('x', NS_MUC_USER);
  return (x?.getChildren('status') ?? []).map((s) => Number(s.attrs.code)).sort((a, b) => a - b);
}

export function mucItem(el: Element): Record<string, string> {
  return (el.getChild('x', NS_MUC_USER)?.getChild('item')?.attrs ?? {}) as Record<string, string>;
}

/** A presence from room/nick (any type unless given). */
export const fromOccupant =
  (room: string, nick: string, type?: string) =>
  (el: Element): boolean =>
    el.name === 'presence' &&
    el.attrs.from === `${room}@${MUC}/${nick}` &&
    (type === undefined ? true : el.attrs.type === type);

/** Join room@MUC/nick; resolves with the self presence (110) once the subject ended the join. */
export async function join(
  c: TestClient,
  room: string,
  nick: string,
  opts: { password?: string; history?: Record<string, string>; x?: boolean } = {},
): Promise<Element> {
  const children: Element[] = [];
  if (opts.password) children.push(xml('password', {}, opts.password));
  if (opts.history) children.push(xml('history', opts.history));
  await c.send(
    xml(
      'presence',
      { to: `${room}@${MUC}/${nick}` },
      opts.x === false ? [] : xml('x', { xmlns: NS_MUC }, ...children),
    ),
  );
  const self = await c.waitFor(
    (el) => fromOccupant(room, nick)(el) && el.attrs.type !== 'error' && codes(el).includes(110),
    5000,
    `self presence in ${room}`,
  );
  await c.waitFor(
    (el) =>
      el.name === 'message' &&
      el.attrs.from?.startsWith(`${room}@${MUC}`) &&
      el.getChild('subject') !== undefined &&
      !el.getChild('body'),
    5000,
    `subject of ${room}`,
  );
  return self;
}

/** Join expecting an error presence; returns its condition. */
export async function joinError(
  c: TestClient,
  room: string,
  nick: string,
  children: Element[] = [],
): Promise<string | undefined> {
  await c.send(
    xml('presence', { to: `${room}@${MUC}/${nick}` }, xml('x', { xmlns: NS_MUC }, ...children)),
  );
  const err = await c.waitFor(
    (el) =>
      el.name === 'presence' &&
      el.attrs.type === 'error' &&
      el.attrs.from === `${room}@${MUC}/${nick}`,
    5000,
    'join error',
  );
  return err
    .getChild('error')
    ?.getChildElements()
    .find((e) => e.attrs.xmlns === 'urn:ietf:params:xml:ns:xmpp-stanzas')?.name;
}

/** Send a groupchat message and wait for its reflection (with the room's stanza-id). */
export async function say(c: TestClient, room: string, body: string): Promise<Element> {
  await c.send(xml('message', { to: `${room}@${MUC}`, type: 'groupchat' }, xml('body', {}, body)));
  return c.waitFor(
    (el) =>
      el.name === 'message' && el.attrs.type === 'groupchat' && el.getChildText('body') === body,
    5000,
    `reflection of ${body}`,
  );
}

export const isGroupchat = (room: string, body?: string) => (el: Element) =>
  el.name === 'message' &&
  el.attrs.type === 'groupchat' &&
  el.attrs.from?.startsWith(`${room}@${MUC}/`) &&
  (body === undefined || el.getChildText('body') === body);

export function errorCondition(el: Element): string | undefined {
  return el
    .getChild('error')
    ?.getChildElements()
    .find((e) => e.attrs.xmlns === 'urn:ietf:params:xml:ns:xmpp-stanzas')?.name;
}

/** An XEP-0004 submit form. */
export function submitForm(formType: string, fields: Record<string, string | string[]>): Element {
  return xml(
    'x',
    { xmlns: NS_DATA, type: 'submit' },
    xml('field', { var: 'FORM_TYPE' }, xml('value', {}, formType)),
    ...Object.entries(fields).map(([k, v]) =>
      xml('field', { var: k }, ...(Array.isArray(v) ? v : [v]).map((x) => xml('value', {}, x))),
    ),
  );
}

/** The owner's room configuration [XEP-0045 10.2]: an iq set to room@MUC submitting a muc#roomconfig form. */
export function roomConfig(room: string, fields: Record<string, string | string[]>): Element {
  return xml(
    'iq',
    { type: 'set', to: `${room}@${MUC}` },
    xml('query', { xmlns: NS_MUC_OWNER }, submitForm(ROOMCONFIG, fields)),
  );
}

/**
 * Add each user (one password) to the node, then log each in with @xmpp/client
 * in turn; with `presence`, each then sends its initial presence.
 */
export async function loginAll(
  node: TestNode,
  users: string[],
  password: string,
  opts: { resource?: string; presence?: boolean } = {},
): Promise<TestClient[]> {
  for (const n of users) await node.addUser(n, password);
  const clients: TestClient[] = [];
  for (const n of users)
    clients.push(
      await xmppClient({
        port: node.ports.xmpp,
        username: n,
        password,
        resource: opts.resource ?? 'pc',
      }),
    );
  if (opts.presence) for (const c of clients) await c.send(xml('presence'));
  return clients;
}
