// Over 600 lines, kept as one module on purpose: it is the XEP-0045 wire mapping of broker/rooms.ts (join,
// presence codes, admin/owner IQs, MUC MAM), one file per XEP like the other modules; the rules live in the core.
// Next split when it grows: owner/admin IQs (forms, affiliation lists) into a file of their own.
import xmlLib, { Element, escapeXML, escapeXMLText } from '@xmpp/xml';
import {
  Address,
  BROADCAST_ROLES,
  BrokerError,
  broadcastRoles,
  defineModule,
  roomCluster,
  roomSummary,
  roomService,
  type Affiliation,
  type Broker,
  type Device,
  type Envelope,
  type Role,
  type Room,
  type RoomConfig,
  type RoomEvent,
  type RoomMessage,
  type RoomService,
  type Session,
} from '../../../broker/index.ts';
import { restoreChatMeta } from '../chat-meta.ts';
import { roomFeatures } from './muc-moderation-retract.ts';
import { xmppHooks } from '../hooks.ts';
import { avatarUpdate, roomVcard, setRoomVcard } from './muc-avatar.ts';
import { NS_MAM_EXTENDED, parseRoomMamQuery, roomMamForm, roomMamMetadata } from './muc-mam.ts';
import { handleVoiceForm, isVoiceForm, voiceRequestMessage } from './muc-voice.ts';
import {
  NS_CLIENT,
  NS_CONFERENCE,
  NS_DATA,
  NS_DELAY,
  NS_DISCO_INFO,
  NS_DISCO_ITEMS,
  NS_FORWARD,
  NS_MAM,
  NS_MUC,
  NS_MUC_ADMIN,
  NS_MUC_OWNER,
  NS_MUC_REGISTER,
  NS_MUC_ROOMCONFIG,
  NS_MUC_ROOMINFO,
  NS_MUC_USER,
  NS_PING,
  NS_REGISTER,
  NS_RSM,
  NS_SID,
  NS_VCARD,
} from '../ns.ts';

/**
 * XEP-0045 Multi-User Chat at the rooms' domain (`modules.rooms.host`,
 * `conference.{domain}` by default), on the core's RoomService: this module
 * only translates stanzas to room operations and room events to stanzas
 * (docs/groupchat.md). Also XEP-0313 on the room JID (ids are room seqs),
 * XEP-0359 stanza-id by the room, XEP-0410 self-ping, XEP-0249 direct invites
 * (plain messages between users; nothing to do here but advertise).
 */

/** ltx's streaming parser; the local typings omit it. */
interface LtxParser {
  on(event: 'element', fn: (el: Element) => void): void;
  on(event: 'error', fn: (err: Error) => void): void;
  write(data: string): void;
}
const Parser = (xmlLib as unknown as { Parser: new () => LtxParser }).Parser;

/** Parse serialised payloads (an envelope's extensions) back into elements. */
export function parseAll(parts: string[]): Element[] {
  if (!parts.length) return [];
  const out: Element[] = [];
  const p = new Parser();
  p.on('element', (el: Element) => out.push(el));
  p.on('error', () => {});
  p.write(`<w xmlns='${NS_CLIENT}'>${parts.join('')}</w>`);
  return out;
}

function find(els: Element[], name: string, ns: string): Element | undefined {
  return els.find((e) => e.name === name && e.attrs.xmlns === ns);
}

const attr = (n: string, v: string | number | undefined): string =>
  v === undefined ? '' : ` ${n}='${escapeXML(String(v))}'`;
const text = (n: string, v: string | undefined): string =>
  v === undefined ? '' : `<${n}>${escapeXMLText(v)}</${n}>`;

/** XEP-0004 form fields: var → values. */
function formFields(x: Element | undefined): Map<string, string[]> {
  const m = new Map<string, string[]>();
  if (!x) return m;
  for (const f of x.getChildren('field')) {
    const v = f.attrs.var;
    if (typeof v === 'string')
      m.set(
        v,
        f.getChildren('value').map((e) => e.getText()),
      );
  }
  return m;
}

function bool(field: string, v: string): boolean {
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw new BrokerError('not-acceptable', `${field}: not a boolean`); // [XEP-0004 3.3] boolean values
}

function field(
  type: string,
  v: string,
  value: string | string[] | undefined,
  label?: string,
  options?: string[],
): string {
  const vals = value === undefined ? [] : Array.isArray(value) ? value : [value];
  let s = `<field${attr('type', type)}${attr('var', v)}${attr('label', label)}>`;
  for (const o of options ?? []) s += `<option><value>${escapeXMLText(o)}</value></option>`;
  for (const x of vals) s += `<value>${escapeXMLText(x)}</value>`;
  return `${s}</field>`;
}

const b = (v: boolean): string => (v ? '1' : '0');

/** The room config form [XEP-0045 10.2, muc#roomconfig FORM_TYPE]. */
function configForm(c: RoomConfig): string {
  return (
    `<x xmlns='${NS_DATA}' type='form'><title>Room configuration</title>` +
    field('hidden', 'FORM_TYPE', NS_MUC_ROOMCONFIG) +
    field('text-single', 'muc#roomconfig_roomname', c.name, 'Name') +
    field('text-single', 'muc#roomconfig_roomdesc', c.description, 'Description') +
    field('boolean', 'muc#roomconfig_persistentroom', b(c.persistent), 'Persistent') +
    field('boolean', 'muc#roomconfig_publicroom', b(c.public), 'Listed in the directory') +
    field('boolean', 'muc#roomconfig_membersonly', b(c.membersOnly), 'Members only') +
    field('boolean', 'muc#roomconfig_moderatedroom', b(c.moderated), 'Moderated') +
    field(
      'boolean',
      'muc#roomconfig_passwordprotectedroom',
      b(c.password !== ''),
      'Password protected',
    ) +
    field('text-private', 'muc#roomconfig_roomsecret', c.password, 'Password') +
    field(
      'list-single',
      'muc#roomconfig_maxusers',
      c.maxOccupants === 0 ? 'none' : String(c.maxOccupants),
      'Max occupants',
      ['10', '20', '50', '100', '1000', 'none'],
    ) +
    field('list-single', 'muc#roomconfig_whois', c.whois, 'Who may see real addresses', [
      'moderators',
      'anyone',
    ]) +
    field('boolean', 'muc#roomconfig_allowinvites', b(c.allowInvites), 'Participants may invite') +
    field(
      'list-single',
      'muc#roomconfig_allowpm',
      c.allowPrivateMessages ? 'anyone' : 'none',
      'Private messages',
      ['anyone', 'none'],
    ) +
    field(
      'boolean',
      'muc#roomconfig_changesubject',
      b(c.changeSubject),
      'Participants may change the subject',
    ) +
    field('text-single', 'muc#maxhistoryfetch', String(c.historyLength), 'History length') +
    field('boolean', 'muc#roomconfig_enablelogging', b(c.archive), 'Archive (MAM on the room)') +
    field(
      'list-multi',
      'muc#roomconfig_presencebroadcast',
      c.presenceBroadcast,
      'Roles whose presence is shown to the others',
      [...BROADCAST_ROLES],
    ) + // [XEP-0045 15.5.3]
    `</x>`
  );
}

/** A submitted config form as a config change; bad values: not-acceptable naming the field [XEP-0045 10.2]. */
function parseConfig(fields: Map<string, string[]>): Partial<RoomConfig> {
  const c: Partial<RoomConfig> = {};
  const one = (k: string): string | undefined => fields.get(k)?.[0];
  const setBool = (k: string, key: keyof RoomConfig): void => {
    const v = one(k);
    if (v !== undefined) (c as Record<string, unknown>)[key] = bool(k, v);
  };
  const form = one('FORM_TYPE');
  if (form !== undefined && form !== NS_MUC_ROOMCONFIG)
    throw new BrokerError('not-acceptable', `FORM_TYPE must be ${NS_MUC_ROOMCONFIG}`);
  if (fields.has('muc#roomconfig_roomname')) c.name = one('muc#roomconfig_roomname') ?? '';
  if (fields.has('muc#roomconfig_roomdesc')) c.description = one('muc#roomconfig_roomdesc') ?? '';
  setBool('muc#roomconfig_persistentroom', 'persistent');
  setBool('muc#roomconfig_publicroom', 'public');
  setBool('muc#roomconfig_membersonly', 'membersOnly');
  setBool('muc#roomconfig_moderatedroom', 'moderated');
  setBool('muc#roomconfig_allowinvites', 'allowInvites');
  setBool('muc#roomconfig_changesubject', 'changeSubject');
  setBool('muc#roomconfig_enablelogging', 'archive');
  const protectedV = one('muc#roomconfig_passwordprotectedroom');
  if (fields.has('muc#roomconfig_roomsecret')) c.password = one('muc#roomconfig_roomsecret') ?? '';
  if (protectedV !== undefined && !bool('muc#roomconfig_passwordprotectedroom', protectedV))
    c.password = '';
  const max = one('muc#roomconfig_maxusers');
  if (max !== undefined) {
    if (max === 'none' || max === '' || max === '0') c.maxOccupants = 0;
    else if (/^\d{1,9}$/.test(max)) c.maxOccupants = Number(max);
    else throw new BrokerError('not-acceptable', 'muc#roomconfig_maxusers: a number or none');
  }
  const whois = one('muc#roomconfig_whois');
  if (whois !== undefined) {
    if (whois !== 'moderators' && whois !== 'anyone')
      throw new BrokerError('not-acceptable', 'muc#roomconfig_whois: moderators or anyone');
    c.whois = whois;
  }
  const pm = one('muc#roomconfig_allowpm');
  if (pm !== undefined) {
    if (!['anyone', 'participants', 'moderators', 'none', '1', '0', 'true', 'false'].includes(pm))
      throw new BrokerError(
        'not-acceptable',
        'muc#roomconfig_allowpm: anyone, participants, moderators or none',
      );
    c.allowPrivateMessages = pm !== 'none' && pm !== '0' && pm !== 'false';
  }
  // [XEP-0045 15.5.3] list-multi of roles; no value: nobody's presence is shown to the others
  const shown = fields.get('muc#roomconfig_presencebroadcast');
  if (shown !== undefined) {
    const roles = broadcastRoles(shown);
    if (!roles)
      throw new BrokerError(
        'not-acceptable',
        'muc#roomconfig_presencebroadcast: moderator, participant or visitor',
      );
    c.presenceBroadcast = roles;
  }
  const hist = one('muc#maxhistoryfetch') ?? one('muc#roomconfig_historylength');
  if (hist !== undefined) {
    if (!/^\d{1,9}$/.test(hist))
      throw new BrokerError('not-acceptable', 'muc#maxhistoryfetch: a number');
    c.historyLength = Number(hist);
  }
  return c;
}

export default defineModule({
  name: 'muc',
  description:
    'XEP-0045 Multi-User Chat on the rooms core, with MAM on rooms (XEP-0313), self-ping (XEP-0410)',
  depends: ['disco'], // and the rooms module loaded before it (bin/node.ts order); without it this module serves nothing
  options: {
    vcardMaxBytes: {
      type: 'number',
      default: 128 * 1024,
      min: 256,
      doc: "largest room vCard (the room's avatar, photo included) in bytes of XML; larger: not-acceptable",
    },
  },
  specs: [
    {
      spec: 'XEP-0045',
      status: 'partial',
      note:
        'instant rooms unlocked at once, config form, join/leave/nick change with status codes 100 104 110 170 201 210 301 303 307 321 322 332, passwords, members-only, bans, history, ' +
        'roles and voice, voice requests, kick, ban, affiliation lists, destroy, mediated invites and declines, private messages, multi-session nicks, nick registration, ' +
        'room vCard and avatar hash (muc#roominfo_avatarhash, XEP-0153 presence from the room), presence broadcast per role (muc#roomconfig_presencebroadcast, as Prosody); not: vCards of occupants through the room',
    },
    {
      spec: 'XEP-0249',
      status: 'complete',
      note: 'direct invites are messages between users; rooms advertise jabber:x:conference',
    },
    {
      spec: 'XEP-0410',
      status: 'complete',
      note: 'self-ping answered by the room, muc#self-ping-optimization',
    },
    {
      spec: 'XEP-0313',
      section: '(on room JIDs)',
      status: 'partial',
      note: 'MUC MAM, #extended: ids are room seqs; with (an occupant JID: its nick; a real JID where real JIDs are visible), start/end, after-id/before-id, ids, flip-page, metadata; RSM after/before/max/count, no index',
    },
    {
      spec: 'XEP-0359',
      section: '(rooms)',
      status: 'complete',
      note: "stanza-id by the room's JID on every groupchat message, live, in history and in MAM",
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const svc = roomService(broker);
    if (!svc) return; // modules.rooms.host: null
    const muc = new Muc(broker, svc, ctx.options.vcardMaxBytes);
    ctx.onUnload(svc.setRenderer('xmpp', (s, d, ev) => muc.render(s, d, ev)));
    // Stanzas to a room go to the room's home node (docs/cluster.md, "Rooms"); on one node, straight to muc.handle.
    const handle = (env: Envelope) => muc.handle(env);
    const cluster = roomCluster(broker);
    ctx.onUnload(
      broker.hosts.register(ctx.name, svc.host, cluster ? cluster.host(handle) : handle),
    );
    ctx.onUnload(
      xmppHooks(broker).on('disco:items', (items, target) =>
        target.domain === broker.domain
          ? [...items, { jid: svc.host, name: 'Chatrooms' }]
          : undefined,
      ),
    );
  },
});

class Muc {
  private readonly broker: Broker;
  private readonly svc: RoomService;
  private readonly vcardMaxBytes: number;

  constructor(broker: Broker, svc: RoomService, vcardMaxBytes: number) {
    this.broker = broker;
    this.svc = svc;
    this.vcardMaxBytes = vcardMaxBytes;
  }

  // ---- rendering room events as stanzas ----

  render(s: Session, d: Device, ev: RoomEvent): void {
    const room = ev.room;
    switch (ev.kind) {
      case 'presence': {
        const self = ev.self.has(d.key);
        const viewer = room.occupantOf(d.key);
        const showJid = self || room.config.whois === 'anyone' || viewer?.role === 'moderator';
        let x = `<x xmlns='${NS_MUC_USER}'><item${attr('affiliation', ev.affiliation)}${attr('role', ev.role)}${showJid ? attr('jid', ev.jid) : ''}${attr('nick', ev.newNick)}>`;
        if (ev.actor !== undefined) x += `<actor${attr('nick', ev.actor)}/>`;
        if (ev.reason !== undefined) x += text('reason', ev.reason);
        x += '</item>';
        if (ev.destroy)
          x += `<destroy${attr('jid', ev.destroy.alternate)}>${text('reason', ev.destroy.reason)}</destroy>`; // [XEP-0045 10.9]
        const codes = new Set<number>(ev.reasons.filter((c) => self || c >= 300));
        if (self) codes.add(110); // [XEP-0045 7.2.2]
        for (const c of [...codes].sort()) x += `<status code='${c}'/>`;
        x += '</x>';
        const env: Envelope = {
          kind: 'presence',
          from: room.jid.withResource(ev.nick),
          to: d.address,
          extensions: [...(ev.presence?.extensions ?? []), x],
        };
        if (!ev.available) env.type = 'unavailable';
        if (ev.presence?.show !== undefined && ev.available) env.show = ev.presence.show;
        if (ev.presence?.status !== undefined) env.status = ev.presence.status;
        s.deliver(env);
        return;
      }
      case 'message':
        s.deliver(this.groupchat(room, ev.msg, d.address, ev.history));
        return;
      case 'subject': {
        // [XEP-0045 7.2.15] the subject (maybe empty) ends the join
        const from = ev.subject?.nick ? room.jid.withResource(ev.subject.nick) : room.jid;
        s.deliver({
          kind: 'message',
          type: 'groupchat',
          from,
          to: d.address,
          subject: ev.subject?.text ?? '',
          extensions: [],
        });
        return;
      }
      case 'private':
        // [XEP-0045 7.5] from the sender's occupant address, marked with muc#user
        s.deliver({
          kind: 'message',
          type: ev.type ?? 'chat',
          from: room.jid.withResource(ev.nick),
          to: d.address,
          id: ev.id,
          body: ev.body,
          extensions: [...ev.extensions, `<x xmlns='${NS_MUC_USER}'/>`],
        });
        return;
      case 'avatar':
        // [XEP-0153] the room's avatar hash in a presence from the room's bare JID, as Prosody's vcard_muc
        s.deliver({
          kind: 'presence',
          from: room.jid,
          to: d.address,
          extensions: [avatarUpdate(room)],
        });
        return;
      case 'voice-request':
        s.deliver(voiceRequestMessage(ev, d.address)); // [XEP-0045 8.6]
        return;
      case 'status':
        s.deliver({
          kind: 'message',
          type: 'groupchat',
          from: room.jid,
          to: d.address,
          extensions: [
            `<x xmlns='${NS_MUC_USER}'>${ev.reasons.map((c) => `<status code='${c}'/>`).join('')}</x>`,
          ],
        });
    }
  }

  /** A room message as a groupchat stanza with the room's stanza-id [XEP-0359], delayed when from history [XEP-0203]. */
  private groupchat(room: Room, m: RoomMessage, to: Address, history?: boolean): Envelope {
    const env: Envelope = {
      kind: 'message',
      type: 'groupchat',
      from: room.jid.withResource(m.nick),
      to,
      extensions: [...(m.extensions ?? [])],
    };
    if (m.id !== undefined) env.id = m.id;
    if (m.body !== undefined) env.body = m.body;
    if (m.subject !== undefined) env.subject = m.subject;
    if (m.seq > 0)
      env.extensions.push(
        `<stanza-id xmlns='${NS_SID}' id='${m.seq}' by='${escapeXML(room.jid.toString())}'/>`,
      );
    if (history) env.delay = { stamp: m.timestamp, from: room.jid.toString() }; // [XEP-0045 7.2.14]
    return env;
  }

  // ---- stanzas to the service ----

  async handle(env: Envelope): Promise<void> {
    try {
      if (env.from.domain !== this.broker.domain || !env.from.local) return; // only this domain's users reach here
      if (env.kind === 'iq') return await this.iq(env);
      if (env.kind === 'presence') return await this.presence(env);
      restoreChatMeta(env); // a room relays payloads as sent (chat-meta.ts)
      return await this.message(env);
    } catch (err) {
      if (err instanceof BrokerError)
        return this.broker.router.bounce(env, err.condition, err.text);
      throw err;
    }
  }

  private roomOf(env: Envelope): Room {
    const room = env.to.local ? this.svc.get(env.to.local) : undefined;
    if (!room) throw new BrokerError('item-not-found', 'no such room');
    return room;
  }

  private async presence(env: Envelope): Promise<void> {
    if (!env.to.local) return; // presence to the service itself: nothing to do
    const type = env.type;
    if (type === 'unavailable' || type === 'error') {
      const room = this.svc.get(env.to.local);
      if (room) this.svc.leave(room, env.from.toString(), env.status);
      return;
    }
    if (type !== undefined) return; // subscriptions and probes: rooms keep no roster
    if (!env.to.resource) throw new BrokerError('jid-malformed', 'join with room@service/nick'); // [XEP-0045 7.2.1]
    const ext = parseAll(env.extensions);
    const x = find(ext, 'x', NS_MUC);
    const h = x?.getChild('history');
    const num = (v: unknown): number | undefined =>
      typeof v === 'string' && /^\d{1,10}$/.test(v) ? Number(v) : undefined;
    const history = h
      ? {
          maxstanzas: num(h.attrs.maxstanzas),
          maxchars: num(h.attrs.maxchars),
          seconds: num(h.attrs.seconds),
          since:
            typeof h.attrs.since === 'string' && !Number.isNaN(Date.parse(h.attrs.since))
              ? Date.parse(h.attrs.since)
              : undefined,
        }
      : undefined;
    const keep = env.extensions.filter(
      (_, i) => !(ext[i] && ext[i].attrs.xmlns === NS_MUC && ext[i].name === 'x'),
    );
    await this.svc.join(env.to.local, {
      device: env.from,
      nick: env.to.resource,
      password: x?.getChildText('password') ?? undefined,
      presence: {
        show: env.show,
        status: env.status,
        extensions: ext.length === env.extensions.length ? keep : [],
      },
      history,
    });
  }

  private async message(env: Envelope): Promise<void> {
    if (!env.to.local) throw new BrokerError('service-unavailable');
    const type = env.type ?? 'normal';
    if (type === 'error') return;
    const room = this.roomOf(env);
    const device = env.from.toString();
    const ext = parseAll(env.extensions);
    if (type === 'groupchat') {
      if (env.to.resource)
        throw new BrokerError('bad-request', 'groupchat goes to the room, not to an occupant'); // [XEP-0045 7.5]
      // A stanza-id claiming to be the room's is the room's to set [XEP-0359 3.1].
      const extensions = env.extensions.filter(
        (_, i) =>
          !(
            ext[i]?.name === 'stanza-id' &&
            ext[i].attrs.xmlns === NS_SID &&
            ext[i].attrs.by === room.jid.toString()
          ),
      );
      if (env.body === undefined && env.subject === undefined) {
        // chat states and markers: relayed, not stored (no seq)
        if (!room.occupantOf(device))
          throw new BrokerError('not-acceptable', 'you are not in this room'); // [XEP-0045 7.4]
        this.svc.relay(room, device, { id: env.id, extensions });
        return;
      }
      await this.svc.post(room, device, {
        body: env.body,
        subject: env.subject,
        id: env.id,
        extensions,
      });
      return;
    }
    if (env.to.resource) {
      // [XEP-0045 7.5] private message to an occupant
      this.svc.privateMessage(room, device, env.to.resource, {
        body: env.body,
        id: env.id,
        extensions: env.extensions,
        type,
      });
      return;
    }
    const form = find(ext, 'x', NS_DATA);
    if (isVoiceForm(form)) return handleVoiceForm(this.svc, room, env, form); // [XEP-0045 7.13, 8.6]
    const x = find(ext, 'x', NS_MUC_USER);
    const invite = x?.getChild('invite');
    const decline = x?.getChild('decline');
    if (invite) return this.invite(room, env, invite);
    if (decline) return this.decline(room, env, decline);
    throw new BrokerError('bad-request', 'messages to the room are type groupchat');
  }

  /** A mediated invite [XEP-0045 7.8.2]: checked, then sent from the room to the invitee. */
  private async invite(room: Room, env: Envelope, invite: Element): Promise<void> {
    const occ = room.occupantOf(env.from.toString());
    if (!occ) throw new BrokerError('not-acceptable', 'you are not in this room');
    const to = Address.tryParse(invite.attrs.to);
    if (!to) throw new BrokerError('jid-malformed', 'invite to whom?');
    const aff = room.affiliation(occ.user);
    const privileged = aff === 'owner' || aff === 'admin';
    if (!room.config.allowInvites && occ.role !== 'moderator')
      throw new BrokerError('forbidden', 'invitations are off in this room'); // [XEP-0045 7.8.2]
    if (room.config.membersOnly) {
      // [XEP-0045 7.8.2] members-only: an admin's invite makes the invitee a member
      if (!privileged)
        throw new BrokerError('forbidden', 'only admins may invite to a members-only room');
      if (room.affiliation(to.bare().toString()) === 'none')
        await this.svc.setAffiliation(room, { user: occ.user }, to.bare().toString(), 'member');
    }
    const reason = invite.getChildText('reason') ?? undefined;
    const password = room.config.password
      ? `<password>${escapeXMLText(room.config.password)}</password>`
      : '';
    await this.broker.router.route({
      kind: 'message',
      type: 'normal',
      from: room.jid,
      to: to.bare(),
      id: env.id,
      body: `${occ.user} invites you to ${room.jid.toString()}${reason ? `: ${reason}` : ''}`,
      extensions: [
        `<x xmlns='${NS_MUC_USER}'><invite${attr('from', occ.user)}>${text('reason', reason)}</invite>${password}</x>`,
        `<x xmlns='${NS_CONFERENCE}'${attr('jid', room.jid.toString())}${attr('reason', reason)}${room.config.password ? attr('password', room.config.password) : ''}/>`,
      ],
    });
  }

  /** A declined invite goes back to the inviter from the room [XEP-0045 7.8.2]. */
  private async decline(room: Room, env: Envelope, decline: Element): Promise<void> {
    const to = Address.tryParse(decline.attrs.to);
    if (!to) throw new BrokerError('jid-malformed', 'decline to whom?');
    const reason = decline.getChildText('reason') ?? undefined;
    await this.broker.router.route({
      kind: 'message',
      type: 'normal',
      from: room.jid,
      to: to.bare(),
      id: env.id,
      extensions: [
        `<x xmlns='${NS_MUC_USER}'><decline${attr('from', env.from.bare().toString())}>${text('reason', reason)}</decline></x>`,
      ],
    });
  }

  // ---- IQs ----

  private result(env: Envelope, payload?: string): Promise<void> {
    return this.broker.router.route({
      kind: 'iq',
      type: 'result',
      from: env.to,
      to: env.from,
      id: env.id,
      extensions: payload ? [payload] : [],
    });
  }

  private async iq(env: Envelope): Promise<void> {
    if (env.type === 'result' || env.type === 'error') return; // we send no requests
    const [child] = parseAll(env.extensions);
    if (!child) throw new BrokerError('bad-request');
    const key = `${env.type} {${child.attrs.xmlns ?? ''}}${child.name}`;
    if (!env.to.local) return this.serviceIq(env, key, child);
    if (key === `get {${NS_PING}}ping`) return this.ping(env);
    const room = this.roomOf(env);
    if (env.to.resource)
      throw new BrokerError('service-unavailable', 'occupants answer nothing through the room'); // [XEP-0045 7.? no IQ forwarding]
    const user = env.from.bare().toString();
    switch (key) {
      case `get {${NS_DISCO_INFO}}query`:
        return this.result(env, this.roomInfo(room, user, child.attrs.node));
      case `get {${NS_DISCO_ITEMS}}query`: {
        // [XEP-0045 6.5] occupants are listed to those who may read the room
        if (!room.mayRead(user) && !room.occupantsOf(user).length)
          throw new BrokerError('forbidden', 'members only');
        const items = [...room.occupants.keys()]
          .map(
            (n) => `<item${attr('jid', room.jid.withResource(n).toString())}${attr('name', n)}/>`,
          )
          .join('');
        return this.result(env, `<query xmlns='${NS_DISCO_ITEMS}'>${items}</query>`);
      }
      case `get {${NS_MUC_OWNER}}query`:
        if (room.affiliation(user) !== 'owner')
          throw new BrokerError('forbidden', 'only owners configure the room'); // [XEP-0045 10.2]
        return this.result(
          env,
          `<query xmlns='${NS_MUC_OWNER}'>${configForm(room.config)}</query>`,
        );
      case `set {${NS_MUC_OWNER}}query`:
        return this.owner(env, room, user, child);
      case `get {${NS_MUC_ADMIN}}query`:
        return this.adminGet(env, room, user, child);
      case `set {${NS_MUC_ADMIN}}query`:
        return this.adminSet(env, room, user, child);
      case `get {${NS_REGISTER}}query`: {
        const nick = room.nicks.get(user);
        if (nick !== undefined)
          return this.result(
            env,
            `<query xmlns='${NS_REGISTER}'><registered/>${text('username', nick)}</query>`,
          ); // [XEP-0045 7.10]
        if (room.config.membersOnly && room.affiliation(user) === 'none')
          throw new BrokerError('registration-required', 'members only');
        return this.result(
          env,
          `<query xmlns='${NS_REGISTER}'><x xmlns='${NS_DATA}' type='form'>${field('hidden', 'FORM_TYPE', NS_MUC_REGISTER)}${field('text-single', 'muc#register_roomnick', undefined, 'Nick')}</x></query>`,
        );
      }
      case `set {${NS_REGISTER}}query`: {
        if (child.getChild('remove')) {
          room.nicks.delete(user);
          return this.result(env);
        }
        const nick = formFields(child.getChild('x', NS_DATA)).get('muc#register_roomnick')?.[0];
        if (!nick) throw new BrokerError('not-acceptable', 'muc#register_roomnick is required'); // [XEP-0045 7.10]
        await this.svc.registerNick(room, user, nick);
        return this.result(env);
      }
      case `set {${NS_MAM}}query`:
        return this.mam(env, room, user, child);
      case `get {${NS_MAM}}query`:
        return this.result(env, roomMamForm()); // [XEP-0313 query-form]
      case `get {${NS_MAM}}metadata`:
        // [XEP-0313 archive-metadata] under the same rules as a query
        if (!room.config.archive)
          throw new BrokerError('service-unavailable', 'this room keeps no archive'); // [XEP-0313 4]
        if (!room.mayRead(user)) throw new BrokerError('forbidden', 'members only');
        return this.result(env, await roomMamMetadata(this.svc, room));
      case `get {${NS_VCARD}}vCard`:
        return this.result(env, await roomVcard(this.svc, room, user));
      case `set {${NS_VCARD}}vCard`:
        await setRoomVcard(this.svc, room, user, child, this.vcardMaxBytes);
        return this.result(env);
      default:
        throw new BrokerError('service-unavailable'); // [RFC6120 8.4]
    }
  }

  private async serviceIq(env: Envelope, key: string, child: Element): Promise<void> {
    if (child.attrs.node) throw new BrokerError('item-not-found');
    switch (key) {
      case `get {${NS_DISCO_INFO}}query`:
        return this.result(
          env,
          `<query xmlns='${NS_DISCO_INFO}'><identity category='conference' type='text' name='Chatrooms'/>` +
            [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC, NS_PING, NS_MAM, NS_SID]
              .map((f) => `<feature var='${f}'/>`)
              .join('') +
            '</query>',
        );
      case `get {${NS_DISCO_ITEMS}}query`: {
        // [XEP-0045 6.3] public rooms only: in a cluster, those of every node (docs/cluster.md, "Rooms")
        const rooms = await roomCluster(this.broker)?.directory.publicRooms();
        const items = (rooms ?? this.svc.publicRooms().map((r) => roomSummary(r)))
          .map(
            (r) => `<item${attr('jid', r.room)}${attr('name', r.name || r.room.split('@')[0])}/>`,
          )
          .join('');
        return this.result(env, `<query xmlns='${NS_DISCO_ITEMS}'>${items}</query>`);
      }
      case `get {${NS_PING}}ping`:
        return this.result(env);
      default:
        throw new BrokerError('service-unavailable');
    }
  }

  /** [XEP-0410] a device asks whether it is still in the room under its nick. */
  private async ping(env: Envelope): Promise<void> {
    const room = this.roomOf(env);
    if (!env.to.resource) return this.result(env);
    const mine = room.occupantOf(env.from.toString());
    if (!mine) throw new BrokerError('not-acceptable', 'not joined'); // [XEP-0410 3]
    if (!room.occupants.has(env.to.resource)) throw new BrokerError('item-not-found');
    return this.result(env);
  }

  /** disco#info of a room [XEP-0045 6.4] with the muc#roominfo form; node x-roomuser-item [XEP-0045 7.12]. */
  private roomInfo(room: Room, user: string, node: unknown): string {
    if (node === 'x-roomuser-item') {
      const nick = room.nicks.get(user);
      return `<query xmlns='${NS_DISCO_INFO}' node='x-roomuser-item'>${nick !== undefined ? `<identity category='conference' type='text'${attr('name', nick)}/>` : ''}</query>`;
    }
    if (node !== undefined) throw new BrokerError('item-not-found');
    const c = room.config;
    const features = [
      NS_MUC,
      NS_DISCO_INFO,
      NS_DISCO_ITEMS,
      NS_SID,
      NS_REGISTER,
      NS_CONFERENCE,
      'http://jabber.org/protocol/muc#stable_id',
      'http://jabber.org/protocol/muc#self-ping-optimization',
      c.public ? 'muc_public' : 'muc_hidden',
      c.persistent ? 'muc_persistent' : 'muc_temporary',
      c.membersOnly ? 'muc_membersonly' : 'muc_open',
      c.moderated ? 'muc_moderated' : 'muc_unmoderated',
      c.whois === 'anyone' ? 'muc_nonanonymous' : 'muc_semianonymous',
      c.password ? 'muc_passwordprotected' : 'muc_unsecured',
      'muc_unlocked',
    ];
    if (c.archive) features.push(NS_MAM, NS_MAM_EXTENDED); // [XEP-0313 filter] before-id, after-id, ids, flip-page, metadata
    features.push(...roomFeatures(this.broker)); // muc-moderation-retract.ts [XEP-0425]
    if (room.avatarHash !== undefined) features.push(NS_VCARD); // [XEP-0054] the room has a vCard
    const readable = room.mayRead(user) || room.occupantsOf(user).length > 0;
    let form = `<x xmlns='${NS_DATA}' type='result'>${field('hidden', 'FORM_TYPE', NS_MUC_ROOMINFO)}`;
    form += field('text-single', 'muc#roominfo_description', c.description, 'Description');
    form += field('text-single', 'muc#roomconfig_roomname', c.name, 'Name');
    form += field('boolean', 'muc#roominfo_changesubject', b(c.changeSubject));
    form += field('text-single', 'muc#maxhistoryfetch', String(c.historyLength));
    if (room.avatarHash) form += field('text-multi', 'muc#roominfo_avatarhash', room.avatarHash); // as Prosody
    if (readable) {
      // Members-only rooms show their subject and head count to those who may read them.
      form += field('text-single', 'muc#roominfo_subject', room.subject?.text ?? '', 'Subject');
      form += field(
        'text-single',
        'muc#roominfo_occupants',
        String(room.occupants.size),
        'Occupants',
      );
    }
    form += '</x>';
    return (
      `<query xmlns='${NS_DISCO_INFO}'><identity category='conference' type='text'${attr('name', c.name || room.local)}/>` +
      features
        .sort()
        .map((f) => `<feature var='${f}'/>`)
        .join('') +
      form +
      '</query>'
    );
  }

  /** muc#owner set: config form, instant room, cancel, destroy [XEP-0045 10.1-10.2, 10.9]. */
  private async owner(env: Envelope, room: Room, user: string, q: Element): Promise<void> {
    const destroy = q.getChild('destroy');
    if (destroy) {
      const alt = destroy.attrs.jid as string | undefined;
      if (alt !== undefined && !Address.tryParse(alt))
        throw new BrokerError('jid-malformed', 'alternate venue');
      await this.svc.destroy(room, { user }, destroy.getChildText('reason') ?? undefined, alt);
      return this.result(env);
    }
    if (room.affiliation(user) !== 'owner')
      throw new BrokerError('forbidden', 'only owners configure the room'); // [XEP-0045 10.2]
    const x = q.getChild('x', NS_DATA);
    if (!x) throw new BrokerError('bad-request', 'a data form or destroy is expected');
    if (x.attrs.type === 'cancel') return this.result(env); // [XEP-0045 10.1.3] the room is already usable
    if (x.attrs.type !== 'submit')
      throw new BrokerError('bad-request', "form type must be 'submit' or 'cancel'");
    await this.svc.configure(room, { user }, parseConfig(formFields(x))); // an empty form accepts the defaults [XEP-0045 10.1.2]
    return this.result(env);
  }

  private item(room: Room, user: string, aff: Affiliation): string {
    const nick = room.nicks.get(user);
    return `<item${attr('affiliation', aff)}${attr('jid', user)}${attr('nick', nick)}/>`;
  }

  /** muc#admin get: affiliation lists (admins, owners) and role lists (moderators) [XEP-0045 9.5, 8.5]. */
  private async adminGet(env: Envelope, room: Room, user: string, q: Element): Promise<void> {
    const it = q.getChild('item');
    if (!it) throw new BrokerError('bad-request');
    const myAff = room.affiliation(user);
    let items = '';
    if (typeof it.attrs.affiliation === 'string') {
      const want = it.attrs.affiliation as Affiliation;
      if (!['owner', 'admin', 'member', 'outcast'].includes(want))
        throw new BrokerError('bad-request', 'unknown affiliation');
      if (myAff !== 'owner' && myAff !== 'admin')
        throw new BrokerError('forbidden', 'only admins and owners see affiliation lists'); // [XEP-0045 9.5]
      for (const [u, a] of room.affiliations) if (a === want) items += this.item(room, u, a);
    } else if (typeof it.attrs.role === 'string') {
      const want = it.attrs.role as Role;
      if (!['moderator', 'participant', 'visitor'].includes(want))
        throw new BrokerError('bad-request', 'unknown role');
      const me = room.occupantOf(env.from.toString());
      if (me?.role !== 'moderator')
        throw new BrokerError('forbidden', 'only moderators see role lists'); // [XEP-0045 8.5]
      for (const o of room.occupants.values()) {
        if (o.role === want)
          items += `<item${attr('nick', o.nick)}${attr('role', o.role)}${attr('affiliation', room.affiliation(o.user))}${attr('jid', o.user)}/>`;
      }
    } else throw new BrokerError('bad-request', 'item needs an affiliation or a role');
    return this.result(env, `<query xmlns='${NS_MUC_ADMIN}'>${items}</query>`);
  }

  /** muc#admin set: role changes (kick, voice, moderator) and affiliation changes (ban, member, admin, owner) [XEP-0045 8-10]. */
  private async adminSet(env: Envelope, room: Room, user: string, q: Element): Promise<void> {
    const items = q.getChildren('item');
    if (!items.length) throw new BrokerError('bad-request');
    for (const it of items) {
      const reason = it.getChildText('reason') ?? undefined;
      const role = it.attrs.role as string | undefined;
      const aff = it.attrs.affiliation as string | undefined;
      if (role !== undefined) {
        if (!(['moderator', 'participant', 'visitor', 'none'] as string[]).includes(role))
          throw new BrokerError('bad-request', 'unknown role');
        if (typeof it.attrs.nick !== 'string')
          throw new BrokerError('bad-request', 'a role change names a nick');
        this.svc.setRole(room, { user }, it.attrs.nick, role as Role, reason, env.from.toString());
      } else if (aff !== undefined) {
        if (!(['owner', 'admin', 'member', 'outcast', 'none'] as string[]).includes(aff))
          throw new BrokerError('bad-request', 'unknown affiliation');
        let target: string | undefined;
        if (typeof it.attrs.jid === 'string')
          target = Address.tryParse(it.attrs.jid)?.bare().toString();
        else if (typeof it.attrs.nick === 'string')
          target = room.occupants.get(it.attrs.nick)?.user;
        if (!target)
          throw new BrokerError(
            typeof it.attrs.jid === 'string' ? 'jid-malformed' : 'item-not-found',
            'whose affiliation?',
          );
        await this.svc.setAffiliation(room, { user }, target, aff as Affiliation, reason);
        if (!room.occupantsOf(target).length)
          await this.notifyAffiliation(room, target, aff as Affiliation, reason);
      } else throw new BrokerError('bad-request', 'item needs a role or an affiliation');
    }
    return this.result(env);
  }

  /** An absent user learns of its new affiliation by a message (kept offline) [XEP-0045 9.3, 9.4]. */
  private async notifyAffiliation(
    room: Room,
    user: string,
    aff: Affiliation,
    reason?: string,
  ): Promise<void> {
    const to = Address.tryParse(user);
    if (!to || to.domain !== this.broker.domain || !(await this.broker.userExists(to))) return;
    await this.broker.router.route({
      kind: 'message',
      type: 'normal',
      from: room.jid,
      to,
      body: `Your affiliation with ${room.jid.toString()} is now ${aff}${reason ? `: ${reason}` : ''}`,
      extensions: [
        `<x xmlns='${NS_MUC_USER}'><item${attr('affiliation', aff)}${attr('jid', user)}>${text('reason', reason)}</item></x>`,
      ],
    });
  }

  /** XEP-0313 on the room: the room's timeline, ids are room seqs, paged with RSM [XEP-0059]. */
  private async mam(env: Envelope, room: Room, user: string, q: Element): Promise<void> {
    if (!room.config.archive)
      throw new BrokerError('service-unavailable', 'this room keeps no archive'); // [XEP-0313 4]
    if (!room.mayRead(user)) throw new BrokerError('forbidden', 'members only'); // members-only rooms: members only
    const queryid = q.attrs.queryid as string | undefined;
    const { q: query, flip } = parseRoomMamQuery(q, room, user);
    const page = await this.svc.archive(room, query);
    // A page is sent oldest first, also when paged backwards; flip-page turns it around [XEP-0313 query-paging-flip]
    const backwards = query.before !== undefined;
    const msgs = backwards !== flip ? [...page.messages].reverse() : page.messages;
    const session = this.broker.sessions.get(env.from);
    // The asker's session, or its node's when the room is homed here and it is not (docs/cluster.md, "Rooms")
    const send = async (e: Envelope): Promise<void> => {
      if (session) session.deliver(e);
      else await this.broker.router.deliverFull(env.from, e);
    };
    for (const m of msgs) {
      const inner = this.groupchat(room, m, env.from);
      const fwd =
        `<result xmlns='${NS_MAM}'${attr('queryid', queryid)} id='${m.seq}'><forwarded xmlns='${NS_FORWARD}'>` +
        `<delay xmlns='${NS_DELAY}' stamp='${new Date(m.timestamp).toISOString()}'/>` +
        innerXml(inner) +
        '</forwarded></result>';
      await send({ kind: 'message', from: room.jid, to: env.from, extensions: [fwd] });
    }
    // [XEP-0059 2.6] first and last of the page as sent, and the size of the result set
    const ends = msgs.length
      ? `<first>${msgs[0].seq}</first><last>${msgs[msgs.length - 1].seq}</last>`
      : '';
    const rsm = `<set xmlns='${NS_RSM}'>${ends}<count>${page.count}</count></set>`;
    // [XEP-0313 5] complete when this page reaches the end in its direction
    const fin = `<fin xmlns='${NS_MAM}'${page.complete ? " complete='true'" : ''}>${rsm}</fin>`;
    await send({
      kind: 'iq',
      type: 'result',
      from: room.jid,
      to: env.from,
      id: env.id,
      extensions: [fin],
    });
  }
}

/** A forwarded groupchat message as XML (inside a MAM result). */
function innerXml(env: Envelope): string {
  let s = `<message xmlns='${NS_CLIENT}' type='groupchat'${attr('from', env.from.toString())}${attr('id', env.id)}>`;
  if (env.subject !== undefined) s += text('subject', env.subject);
  if (env.body !== undefined) s += text('body', env.body);
  for (const x of env.extensions) s += x;
  return `${s}</message>`;
}
