import { Address } from './address.ts';
import type { Broker } from './broker.ts';
import { closeReason } from './errors.ts';
import type { RosterItem } from './roster.ts';
import { removeUserUploads } from './upload.ts';

/**
 * Account removal, in one place. A removed account must leave nothing that
 * the next account of the same name would inherit: not its credentials, not
 * its place in other users' rosters, not its pending requests, queued
 * messages or sessions. Whatever lives outside the core's stores (MQTT
 * sessions, subscriptions and wills in aedes' own store) is cleaned by the
 * handlers of the `account:removed` hook, which the removal awaits.
 */

/** What the removal learned before the stores were cleaned. */
export interface RemovalContext {
  /** the removed user's own roster items, as they were */
  ownItems: RosterItem[];
  /** users whose roster listed the removed user */
  listedBy: string[];
}

/**
 * What account removal does to one store of `Storage`, named `kind:name` as
 * `Storage.kv/archive/queue(name)` opens it. Every store the core or a module
 * opens must have an entry in {@link PER_USER_STORES} or {@link SHARED_STORES}:
 * broker/test/account-removal.test.ts starts a broker with every module and
 * fails on a store that has neither, so a new per-user store cannot be
 * forgotten by the removal path.
 */
export interface UserStoreCleanup {
  /** what is removed, or why it is kept */
  what: string;
  clean(broker: Broker, user: Address, ctx: RemovalContext): Promise<void>;
}

/** Stores that hold no per-user data: `kind:name` → why. */
export const SHARED_STORES: ReadonlyMap<string, string> = new Map([
  [
    'kv:roomprofiles',
    "rooms' own vCards (room avatars), keyed by room; set by owners but the room's data, which stays with its other owners",
  ],
]);

/** Every per-user store and how removal cleans it, in the order it is done. */
export const PER_USER_STORES: ReadonlyMap<string, UserStoreCleanup> = new Map<
  string,
  UserStoreCleanup
>([
  [
    'kv:accounts',
    {
      what: 'the account record (SCRAM keys); removed before anything else, so no new login can start',
      clean: async () => {}, // done first by removeAccount itself
    },
  ],
  [
    'kv:pending-subscriptions',
    {
      what: 'subscription requests waiting for the user, and those the user sent to others',
      clean: (broker, user, ctx) =>
        broker.presence.dropPending(user, [...ctx.ownItems.map((i) => i.jid), ...ctx.listedBy]),
    },
  ],
  [
    'kv:roster',
    {
      what: "the user's roster; its item in every other roster was removed before (pushed as subscription='remove')",
      clean: (broker, user) => broker.roster.drop(user.toString()),
    },
  ],
  [
    'queue:offline',
    {
      what: 'messages waiting for the user',
      clean: (broker, user) => broker.offline.clear(user),
    },
  ],
  [
    'kv:pep',
    {
      what: "the user's PEP nodes and items (avatars, nickname, OMEMO keys, bookmarks) and private XML storage, all under the key prefix `<bare JID>/`",
      clean: async (broker, user) => {
        const store = broker.storage.kv('pep');
        await store.batch(
          (await store.keys(`${user.toString()}/`)).map((key) => ({ type: 'del' as const, key })),
        );
      },
    },
  ],
  [
    'kv:blocking',
    {
      what: "the user's block list (XEP-0191); other users' lists that name the user are theirs and kept",
      clean: (broker, user) => broker.storage.kv('blocking').delete(user.toString()),
    },
  ],
  [
    'kv:vcard',
    {
      what: "the user's vCard (XEP-0054)",
      clean: (broker, user) => broker.storage.kv('vcard').delete(user.toString()),
    },
  ],
  [
    'kv:last-activity',
    {
      what: 'when the user last logged out (XEP-0012)',
      clean: (broker, user) => broker.storage.kv('last-activity').delete(user.toString()),
    },
  ],
  [
    'archive:chat',
    {
      what:
        "the user's own archive (its MAM/history view: index entries and counts); a one-to-one " +
        "message stays in the other party's archive while that party archives it, so the other side keeps its history, " +
        'and a new account of the same name starts with an empty archive',
      clean: (broker, user) => broker.archive.forgetUser(user),
    },
  ],
  [
    'kv:unread',
    {
      what: "the user's last displayed position per conversation (unread counts, XEP-0490), under the key prefix `<bare JID>/`",
      clean: async (broker, user) => {
        const store = broker.storage.kv('unread');
        await store.batch(
          (await store.keys(`${user.toString()}/`)).map((key) => ({ type: 'del' as const, key })),
        );
      },
    },
  ],
  [
    'kv:last-login',
    {
      what: "the account's last login (time, protocol, transport, address)",
      clean: (broker, user) => broker.logins.delete(user.local),
    },
  ],
  [
    'kv:archive-prefs',
    {
      what: 'archive preferences [XEP-0441] (removed with the archive view above)',
      clean: async () => {}, // done by forgetUser
    },
  ],
  [
    'kv:rooms',
    {
      what:
        "persistent rooms' records: the user's affiliations and registered nicks in every room, and its occupancy, " +
        "are dropped by the rooms module's 'account:removed' handler (RoomService.removeUser); rooms it created stay with their other owners",
      clean: async () => {}, // the rooms module's account:removed handler
    },
  ],
  [
    'kv:upload',
    {
      what: "the user's uploaded files (XEP-0363, deleted from the blob store), its unused slots and its daily volume counters",
      clean: (broker, user) => removeUserUploads(broker, user.toString()),
    },
  ],
  [
    'kv:push',
    {
      what: "the user's push registrations (XEP-0357 app server JIDs, nodes and publish-options secrets), under `<bare JID>/`",
      clean: async (broker, user) => {
        const store = broker.storage.kv('push');
        await store.batch(
          (await store.keys(`${user.toString()}/`)).map((key) => ({ type: 'del' as const, key })),
        );
      },
    },
  ],
  [
    'archive:rooms',
    {
      what:
        "kept: a room's timeline belongs to the room, and the user's messages stay in its history for the other members " +
        '(as in ejabberd and Prosody); they carry the nick and the bare address the user had',
      clean: async () => {},
    },
  ],
]);

/**
 * Remove an account and every trace of it: credentials, sessions (closed with
 * `not-authorized`, text "account removed"), its item in every other roster
 * (with a roster push and `unsubscribed` / `unsubscribe` / `unavailable`
 * presence to those users, as ejabberd's remove_user does), its roster,
 * pending requests both ways, offline queue; then the `account:removed`
 * hook, every handler awaited. Throws item-not-found for an unknown account.
 */
export async function removeAccount(broker: Broker, username: string): Promise<void> {
  const user = broker.accounts.address(username);
  await broker.accounts.remove(username);
  const u = user.toString();
  const reason = closeReason('not-authorized', 'account removed');
  for (const s of broker.sessions.sessionsOf(user)) {
    await broker.sessions.unbind(s, reason);
    s.close(reason);
  }
  const ctx: RemovalContext = {
    ownItems: (await broker.roster.get(u)).items,
    listedBy: await broker.roster.listedBy(u),
  };
  for (const owner of ctx.listedBy) {
    const before = await broker.roster.removeContact(owner, u);
    if (before) await broker.presence.contactRemoved(Address.parse(owner), user, before);
  }
  for (const cleanup of PER_USER_STORES.values()) await cleanup.clean(broker, user, ctx);
  await broker.hooks.all('account:removed', user.local);
}
