// Groupchat (XEP-0045) pieces shared by the MUC load generators (bench/xmpp-muc.ts, bench/xmpp-muc-rooms.ts):
// logins, room creation through the owner's config form, joins that count the presence stanzas they cause,
// the drain probe, and the memory points (RSS, and the heap after a forced collection where the server lets
// us force one: bench/lib/mem-probe.ts).
import { num, pool, rssKiB, sleep, sourceAddress, str, type Flags } from './common.ts';
import { forceGcHeapBytes } from './mem-probe.ts';
import { XmppClient } from './xmpp.ts';

export const NS_MUC = 'http://jabber.org/protocol/muc';
/** the joiner's own presence [XEP-0045 7.2.2]: its join is done */
export const SELF = /<status code=['"]110['"]/;

export type Login = (user: string, resource: string, i: number) => Promise<XmppClient>;

/** SCRAM-SHA-1 logins over plaintext with initial presence, spread over 20 source addresses. */
export function mucLogin(f: Flags, timeoutMs: number): Login {
  return (user, resource, i) =>
    XmppClient.login({
      host: str(f, 'host', '127.0.0.1'),
      port: num(f, 'port', 5222),
      domain: str(f, 'domain', 'localhost'),
      user,
      password: str(f, 'password', 'pw'),
      resource,
      tls: false,
      mech: 'SCRAM-SHA-1',
      localAddress: sourceAddress(i, 20),
      presence: true,
      timeoutMs,
    });
}

export const joinStanza = (room: string, nick: string): string =>
  `<presence to='${room}/${nick}'><x xmlns='${NS_MUC}'><history maxstanzas='0'/></x></presence>`;

export const groupchat = (room: string, body: string): string =>
  `<message to='${room}' type='groupchat'><body>${body}</body></message>`;

/**
 * Create a room: join as its first occupant, then submit the owner's config form [XEP-0045 10.1.2] with
 * `fields` (empty: the default configuration, an instant room, unlocked on every server). With
 * `muc#roomconfig_presencebroadcast` among the fields, the server's form must offer that field, or the
 * room would broadcast every join to every occupant (N²/2 stanzas) while the run assumes it does not.
 */
export async function createRoom(
  owner: XmppClient,
  room: string,
  nick: string,
  fields: Record<string, string[]>,
  timeoutMs: number,
): Promise<void> {
  owner.write(joinStanza(room, nick));
  await owner.waitFor(SELF, timeoutMs);
  if (fields['muc#roomconfig_presencebroadcast']) {
    const form = await owner.request(
      `<iq type='get' id='cfgget' to='${room}'><query xmlns='${NS_MUC}#owner'/></iq>`,
      'cfgget',
      timeoutMs,
    );
    if (!form.includes('muc#roomconfig_presencebroadcast'))
      throw new Error(
        `${room}: the server's room config form has no muc#roomconfig_presencebroadcast field, so every join ` +
          `would be broadcast to every occupant (N²/2 presence stanzas); Parley needs the rooms option presenceBroadcast`,
      );
  }
  const xml = Object.entries(fields)
    .map(
      ([v, vals]) => `<field var='${v}'>${vals.map((x) => `<value>${x}</value>`).join('')}</field>`,
    )
    .join('');
  const form = xml
    ? `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>${NS_MUC}#roomconfig</value></field>${xml}</x>`
    : `<x xmlns='jabber:x:data' type='submit'/>`;
  const cfg = await owner.request(
    `<iq type='set' id='cfg' to='${room}'><query xmlns='${NS_MUC}#owner'>${form}</query></iq>`,
    'cfg',
    timeoutMs,
  );
  if (!/^<iq[^>]*type=['"]result['"]/.test(cfg)) throw new Error(`room config refused: ${cfg}`);
}

/** `--presence-broadcast moderator,participant`: the config form field, or nothing when the flag is absent. */
export function broadcastFields(f: Flags): Record<string, string[]> {
  const roles = f['presence-broadcast'];
  return roles ? { 'muc#roomconfig_presencebroadcast': roles.split(',').filter(Boolean) } : {};
}

/** Counts `<presence` in what a client receives from now on (a tag split across two reads is missed: a few). */
export function countPresences(clients: XmppClient[]): { total: () => number } {
  let n = 0;
  for (const c of clients)
    c.sock.on('data', (d: string | Buffer) => {
      const s = typeof d === 'string' ? d : d.toString('latin1');
      for (let i = s.indexOf('<presence'); i !== -1; i = s.indexOf('<presence', i + 9)) n++;
    });
  return { total: () => n };
}

/**
 * Join every client to its room (`roomOf(i)`, nick `nickOf(i)`), at most `concurrency` joins in flight; each
 * client switches to body scanning once its own presence is in, handing bodies to `onBody(i, body)`.
 */
export async function joinAll(
  clients: XmppClient[],
  roomOf: (i: number) => string,
  nickOf: (i: number) => string,
  concurrency: number,
  onBody: (i: number, body: string) => void,
  timeoutMs: number,
): Promise<number> {
  const t0 = Date.now();
  await pool(clients.length, concurrency, async (i) => {
    const c = clients[i];
    c.write(joinStanza(roomOf(i), nickOf(i)));
    await c.waitFor(SELF, timeoutMs);
    c.chatMode((b) => onBody(i, b));
  });
  return (Date.now() - t0) / 1000;
}

/** Wait until `count()` reaches `want` (a probe message reached every occupant: the joins' fan-out is done). */
export async function waitProbes(count: () => number, want: number, ms = 600_000): Promise<void> {
  const until = Date.now() + ms;
  while (count() < want && Date.now() < until) await sleep(50);
  if (count() < want) throw new Error(`the probe reached ${count()} of ${want} occupants`);
}

export interface MemPoint {
  rssKiB: number;
  /** heap in use after a forced full collection (Parley: V8; Prosody: Lua; ejabberd: erlang:memory(total)) */
  heapBytes?: number;
}

/**
 * One memory point of the server `pid`: wait `settleMs` (the server finishes what the last phase left and its
 * own idle-time collection runs), force a full collection where `probe` says how (bench/lib/mem-probe.ts),
 * then read the heap it reports and the RSS.
 */
export async function memPoint(pid: number, probe: string, settleMs: number): Promise<MemPoint> {
  await sleep(settleMs);
  const heapBytes = probe ? await forceGcHeapBytes(probe) : undefined;
  return { rssKiB: rssKiB(pid), ...(heapBytes === undefined ? {} : { heapBytes }) };
}

/** Per-occupant figures between the point with N sessions logged in and the point with them joined. */
export function perOccupant(before: MemPoint, after: MemPoint, n: number): Record<string, number> {
  return {
    rssLoggedInKiB: before.rssKiB,
    rssJoinedKiB: after.rssKiB,
    bytesPerOccupant: Math.round(((after.rssKiB - before.rssKiB) * 1024) / n),
    ...(before.heapBytes !== undefined && after.heapBytes !== undefined
      ? {
          heapLoggedInBytes: before.heapBytes,
          heapJoinedBytes: after.heapBytes,
          heapBytesPerOccupant: Math.round((after.heapBytes - before.heapBytes) / n),
        }
      : {}),
  };
}
