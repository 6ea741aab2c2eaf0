import { randomBytes } from 'node:crypto';
import { Element, xml } from '@xmpp/xml';
import {
  adminOps,
  BrokerError,
  defineModule,
  isAdmin,
  type Address,
  type Broker,
} from '../../../broker/index.ts';
import { xmppHooks } from '../hooks.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_DATA, NS_ROSTER } from '../ns.ts';
import { discoFeature } from './basics.ts';

/** [XEP-0050] */
export const NS_COMMANDS = 'http://jabber.org/protocol/commands';
/** [XEP-0133] the FORM_TYPE and node prefix of the service administration commands */
export const NS_ADMIN = 'http://jabber.org/protocol/admin';

type Fields = Map<string, string[]>;

/** One XEP-0133 command: its form, and what it does with the submitted fields (broker/admin.ts, as the CLI). */
interface AdminCommand {
  name: string;
  /** the fields to fill, after FORM_TYPE (new elements each time: one goes into each answer) */
  fields(): Element[];
  run(broker: Broker, f: Fields): Promise<{ note: string; result?: Element }>;
}

const field = (
  v: string,
  type: string,
  label: string,
  required = false,
  children: Element[] = [],
) => xml('field', { var: v, type, label }, ...(required ? [xml('required')] : []), ...children);
const hidden = () => xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_ADMIN));

function one(f: Fields, name: string): string {
  const v = f.get(name)?.[0]?.trim();
  if (!v) throw new BrokerError('bad-request', `${name} is required`); // [XEP-0050 4.6] a field the form requires
  return v;
}
function many(f: Fields, name: string): string[] {
  const v = (f.get(name) ?? []).map((s) => s.trim()).filter(Boolean);
  if (v.length === 0) throw new BrokerError('bad-request', `${name} is required`);
  return v;
}

/** A result form with one number [XEP-0133 4.13, 4.15]. */
const numberResult = (v: string, label: string, n: number) =>
  xml(
    'x',
    { xmlns: NS_DATA, type: 'result' },
    hidden(),
    xml('field', { var: v, type: 'text-single', label }, xml('value', {}, String(n))),
  );

/** The XEP-0133 subset Parley offers, by node. */
const COMMANDS: Record<string, AdminCommand> = {
  // [XEP-0133 4.1]
  [`${NS_ADMIN}#add-user`]: {
    name: 'Add User',
    fields: () => [
      field('accountjid', 'jid-single', 'The Jabber ID for the account to be added', true),
      field('password', 'text-private', 'The password for this account', true),
      field('password-verify', 'text-private', 'Retype password', true),
    ],
    async run(broker, f) {
      const jid = one(f, 'accountjid');
      const pw = one(f, 'password');
      const verify = f.get('password-verify')?.[0];
      if (verify !== undefined && verify !== pw)
        throw new BrokerError('not-acceptable', 'the passwords do not match');
      await adminOps.addUser(broker, jid, pw);
      return { note: `${jid} added` };
    },
  },
  // [XEP-0133 4.2]
  [`${NS_ADMIN}#delete-user`]: {
    name: 'Delete User',
    fields: () => [field('accountjids', 'jid-multi', 'The Jabber ID(s) to delete', true)],
    async run(broker, f) {
      const jids = many(f, 'accountjids');
      for (const j of jids) await adminOps.removeUser(broker, j);
      return { note: `${jids.join(', ')} deleted` };
    },
  },
  // [XEP-0133 4.5]
  [`${NS_ADMIN}#end-user-session`]: {
    name: 'End User Session',
    fields: () => [field('accountjids', 'jid-multi', 'The Jabber ID(s) whose sessions end', true)],
    async run(broker, f) {
      const kicked: string[] = [];
      for (const j of many(f, 'accountjids'))
        kicked.push(
          ...(await adminOps.kick(broker, j, 'session ended by an administrator')).kicked,
        );
      return { note: `${kicked.length} sessions ended` };
    },
  },
  // [XEP-0133 4.7]
  [`${NS_ADMIN}#change-user-password`]: {
    name: 'Change User Password',
    fields: () => [
      field('accountjid', 'jid-single', 'The Jabber ID for this account', true),
      field('password', 'text-private', 'The password for this account', true),
    ],
    async run(broker, f) {
      const jid = one(f, 'accountjid');
      await adminOps.setPassword(broker, jid, one(f, 'password'));
      return { note: `password of ${jid} changed` };
    },
  },
  // [XEP-0133 4.8] the roster inside the result form
  [`${NS_ADMIN}#get-user-roster`]: {
    name: 'Get User Roster',
    fields: () => [
      field('accountjid', 'jid-single', 'The Jabber ID for which to retrieve the roster', true),
    ],
    async run(broker, f) {
      const r = await adminOps.userRoster(broker, one(f, 'accountjid'));
      const query = xml('query', { xmlns: NS_ROSTER });
      for (const i of r.items) {
        query.append(
          xml(
            'item',
            {
              jid: i.jid,
              name: i.name,
              subscription: i.subscription,
              ...(i.ask && { ask: 'subscribe' }),
            },
            ...i.groups.map((g) => xml('group', {}, g)),
          ),
        );
      }
      const result = xml(
        'x',
        { xmlns: NS_DATA, type: 'result' },
        hidden(),
        xml('field', { var: 'accountjid', type: 'jid-single' }, xml('value', {}, r.user)),
        query,
      );
      return { note: `${r.items.length} contacts`, result };
    },
  },
  // [XEP-0133 4.13]
  [`${NS_ADMIN}#get-registered-users-num`]: {
    name: 'Get Number of Registered Users',
    fields: () => [],
    async run(broker) {
      const n = (await adminOps.listUsers(broker)).length;
      return {
        note: `${n} registered users`,
        result: numberResult('registeredusersnum', 'The number of registered users', n),
      };
    },
  },
  // [XEP-0133 4.15]
  [`${NS_ADMIN}#get-online-users-num`]: {
    name: 'Get Number of Online Users',
    fields: () => [],
    async run(broker) {
      const n = broker.sessions.users().length;
      return {
        note: `${n} users online`,
        result: numberResult('onlineusersnum', 'The number of online users', n),
      };
    },
  },
  // [XEP-0133 4.20]
  [`${NS_ADMIN}#get-online-users-list`]: {
    name: 'Get List of Online Users',
    fields: () => [
      field(
        'max_items',
        'list-single',
        'Maximum number of items to report',
        false,
        ['25', '50', '75', '100', '150', '200', 'none'].map((n) =>
          xml('option', { label: n }, xml('value', {}, n)),
        ),
      ),
    ],
    async run(broker, f) {
      const max = Number(f.get('max_items')?.[0]);
      const users = broker.sessions.users().sort();
      const shown = Number.isInteger(max) && max > 0 ? users.slice(0, max) : users;
      const result = xml(
        'x',
        { xmlns: NS_DATA, type: 'result' },
        hidden(),
        xml(
          'field',
          { var: 'onlineuserjids', type: 'jid-multi', label: 'The list of all online users' },
          ...shown.map((u) => xml('value', {}, u)),
        ),
      );
      return { note: `${users.length} users online`, result };
    },
  },
  // [XEP-0133 4.23] a headline from the server to every online session (the CLI's `announce`)
  [`${NS_ADMIN}#announce`]: {
    name: 'Send Announcement to Online Users',
    fields: () => [
      field('subject', 'text-single', 'Subject'),
      field('announcement', 'text-multi', 'Announcement', true),
    ],
    async run(broker, f) {
      const text = many(f, 'announcement').join('\n');
      const subject = f.get('subject')?.[0]?.trim() || undefined;
      const r = await adminOps.announce(broker, text, subject, false);
      return { note: `sent to ${r.sessions} sessions` };
    },
  },
};

/** A submitted data form's fields by var [XEP-0004 3.3]; FORM_TYPE, when given, must be XEP-0133's. */
function submitted(x: Element | undefined): Fields | undefined {
  if (!x || x.attrs.type !== 'submit') return undefined;
  const out: Fields = new Map();
  for (const f of x.getChildren('field')) {
    const name = f.attrs.var as string | undefined;
    if (name)
      out.set(
        name,
        f.getChildren('value').map((v) => v.getText()),
      );
  }
  const ft = out.get('FORM_TYPE')?.[0];
  if (ft !== undefined && ft !== NS_ADMIN)
    throw new BrokerError('bad-request', `FORM_TYPE must be ${NS_ADMIN}`);
  return out;
}

/** [XEP-0050 4.6] the specific conditions beside the stanza error */
const cmdError = (condition: 'bad-request' | 'not-allowed', name: string, text: string) =>
  new BrokerError(condition, text, undefined, { name, ns: NS_COMMANDS });

interface CommandSession {
  node: string;
  /** the full JID that started it: only it may go on [XEP-0050 3.4] */
  owner: string;
  expires: number;
}

/**
 * XEP-0050 ad-hoc commands on the server's JID with the XEP-0133 set for
 * the admins of the config (`admins`): add, delete, change password, end
 * sessions, roster, online users, announce. Each runs the operator's
 * operation of broker/admin.ts, the one the CLI runs. Commands are listed
 * to admins only; anyone else gets an empty list and `forbidden` when
 * executing (as Prosody). Two stages: the form, then its submission; a
 * request that carries the submitted form runs at once.
 */
export default defineModule({
  name: 'adhoc',
  description: 'Ad-hoc commands with the service administration set, for admins',
  options: {
    sessionTimeoutMs: {
      type: 'number',
      default: 600_000,
      min: 1000,
      doc: 'how long a started command waits for its form',
    },
    maxSessions: {
      type: 'number',
      default: 1000,
      min: 1,
      doc: 'commands waiting for their form, on the whole node; the oldest is dropped beyond',
    },
  },
  specs: [
    {
      spec: 'XEP-0050',
      status: 'complete',
      note: 'single-stage commands (form, then submit); actions execute, complete and cancel',
    },
    {
      spec: 'XEP-0133',
      status: 'partial',
      note: 'add-user, delete-user, end-user-session, change-user-password, get-user-roster, get-registered-users-num, get-online-users-num, get-online-users-list, announce',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const hooks = xmppHooks(broker);
    const sessions = new Map<string, CommandSession>();
    discoFeature(ctx, NS_COMMANDS);
    ctx.every(30_000, () => {
      const now = Date.now();
      for (const [id, s] of sessions) if (s.expires < now) sessions.delete(id);
    });
    const forAdmin = (target: Address, requester: Address) =>
      target.isDomain && isAdmin(broker, requester);
    // [XEP-0050 2.2] the command list: disco#items of the commands node
    ctx.onUnload(
      hooks.on('disco:node-items', (items, target, requester, node) => {
        if (node !== NS_COMMANDS || !target.isDomain) return undefined;
        if (!forAdmin(target, requester)) return items ?? [];
        return [
          ...(items ?? []),
          ...Object.entries(COMMANDS).map(([n, c]) => ({
            jid: broker.domain,
            node: n,
            name: c.name,
          })),
        ];
      }),
    );
    // [XEP-0050 2.3] a command node's identity and features
    ctx.onUnload(
      hooks.on('disco:node-info', (info, target, requester, node) => {
        // the list's own node: identity automation/command-list [XEP-0030 registry]
        if (node === NS_COMMANDS && target.isDomain)
          return {
            identities: [{ category: 'automation', type: 'command-list', name: 'Commands' }],
            features: [NS_COMMANDS],
          };
        if (!COMMANDS[node] || !forAdmin(target, requester)) return info;
        return {
          identities: [{ category: 'automation', type: 'command-node', name: COMMANDS[node].name }],
          features: [NS_COMMANDS, NS_DATA],
        };
      }),
    );
    ctx.onUnload(
      iqRegistry(broker).register(
        ctx.name,
        { type: 'set', ns: NS_COMMANDS, name: 'command' },
        async (req) => {
          if (!req.to.isDomain) return undefined; // an account's commands are its clients' business
          const node = String(req.child.attrs.node ?? '');
          const cmd = Object.hasOwn(COMMANDS, node) ? COMMANDS[node] : undefined;
          if (!cmd) throw new BrokerError('item-not-found', `no command ${node}`);
          if (!isAdmin(broker, req.from))
            throw new BrokerError('forbidden', 'service administration is for admins'); // [XEP-0133 3]
          const action = String(req.child.attrs.action ?? 'execute');
          if (!['execute', 'complete', 'cancel', 'next', 'prev'].includes(action))
            throw cmdError('bad-request', 'malformed-action', `no action ${action}`);
          const owner = req.from.toString();
          const answer = (status: string, sessionid: string, ...children: Element[]) =>
            xml('command', { xmlns: NS_COMMANDS, node, sessionid, status }, ...children);
          let sid = req.child.attrs.sessionid as string | undefined;
          if (sid !== undefined) {
            const s = sessions.get(sid);
            if (!s || s.owner !== owner || s.node !== node || s.expires < Date.now())
              throw cmdError('bad-request', 'bad-sessionid', 'no such command session'); // [XEP-0050 4.6]
          }
          if (action === 'cancel') {
            if (sid !== undefined) sessions.delete(sid);
            return answer('canceled', sid ?? newId()); // [XEP-0050 3.4]
          }
          if (action === 'next' || action === 'prev')
            throw cmdError('bad-request', 'bad-action', 'these commands have one stage'); // [XEP-0050 4.6]
          const form = submitted(req.child.getChild('x', NS_DATA));
          if (!form) {
            if (sid !== undefined) throw new BrokerError('bad-request', 'the form is missing');
            // [XEP-0050 3.3] first stage: the form to fill, with the actions allowed
            sid = newId();
            if (sessions.size >= ctx.options.maxSessions)
              sessions.delete(sessions.keys().next().value!);
            sessions.set(sid, { node, owner, expires: Date.now() + ctx.options.sessionTimeoutMs });
            return answer(
              'executing',
              sid,
              xml('actions', { execute: 'complete' }, xml('complete')),
              xml(
                'x',
                { xmlns: NS_DATA, type: 'form' },
                xml('title', {}, cmd.name),
                hidden(),
                ...cmd.fields(),
              ),
            );
          }
          if (sid !== undefined) sessions.delete(sid);
          const done = await cmd.run(broker, form);
          ctx.log.info({ admin: req.from.bare().toString(), command: node }, 'ad-hoc command run');
          // [XEP-0050 3.4] completed, with a note and the result form when there is one
          return answer(
            'completed',
            sid ?? newId(),
            xml('note', { type: 'info' }, done.note),
            ...(done.result ? [done.result] : []),
          );
        },
      ),
    );
  },
});

const newId = () => randomBytes(8).toString('hex');
