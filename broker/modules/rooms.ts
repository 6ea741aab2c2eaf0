import { defineModule } from '../module.ts';
import { BROADCAST_ROLES, broadcastRoles } from '../room-presence.ts';
import { RoomCluster, setRoomCluster } from '../room-cluster.ts';
import {
  defaultRoomConfig,
  RoomService,
  setRoomService,
  type RoomConfig,
  type RoomProfile,
  type RoomRecord,
} from '../rooms.ts';

/**
 * Groupchat core (docs/groupchat.md): the protocol-neutral room service that
 * the XMPP `muc` module (XEP-0045) and the MQTT `rooms/` topics render.
 */
export default defineModule({
  name: 'rooms',
  description: 'Groupchat rooms (the core the muc module and MQTT rooms/ share)',
  options: {
    host: {
      type: 'string',
      default: 'conference.{domain}',
      nullable: true,
      doc: "domain of room addresses (`{domain}` is the node's domain); `null` turns groupchat off on every protocol",
    },
    maxRoomsPerUser: {
      type: 'number',
      default: 100,
      min: 0,
      doc: 'rooms one user may have created that still exist (0 = unlimited); more: resource-constraint',
    },
    maxOccupants: {
      type: 'number',
      default: 0,
      min: 0,
      doc: "cap on any room's occupants (0 = unlimited; a room's own max occupants applies below it)",
    },
    nickMaxBytes: {
      type: 'number',
      default: 1023,
      min: 1,
      max: 1023,
      doc: 'longest nick in UTF-8 bytes (a nick is a resourcepart [RFC7622 3.4])',
    },
    subjectMaxBytes: {
      type: 'number',
      default: 4096,
      min: 0,
      doc: 'longest subject in UTF-8 bytes; longer: not-acceptable',
    },
    descriptionMaxBytes: {
      type: 'number',
      default: 4096,
      min: 0,
      doc: 'longest room description in UTF-8 bytes; longer: not-acceptable',
    },
    nameMaxBytes: {
      type: 'number',
      default: 1024,
      min: 0,
      doc: 'longest room name (the natural-language one) in UTF-8 bytes',
    },
    passwordMaxBytes: {
      type: 'number',
      default: 1024,
      min: 0,
      doc: 'longest room password in UTF-8 bytes',
    },
    maxHistory: {
      type: 'number',
      default: 1000,
      min: 0,
      doc: "cap on a room's history length, on the messages one join or one archive page returns and on the ids one archive query names",
    },
    fanoutSlice: {
      type: 'number',
      default: 256,
      min: 1,
      doc: 'deliveries of a room event per turn of the event loop; a large room yields between slices',
    },
    voiceRequestInterval: {
      type: 'number',
      default: 1800,
      min: 0,
      doc: 'seconds between two voice requests of one user in one room (as ejabberd); sooner: resource-constraint',
    },
    defaultPersistent: {
      type: 'boolean',
      default: false,
      doc: 'new rooms are persistent (kept when empty, across restarts)',
    },
    defaultPublic: {
      type: 'boolean',
      default: true,
      doc: "new rooms are listed in the service's disco items",
    },
    defaultMembersOnly: { type: 'boolean', default: false, doc: 'new rooms are members-only' },
    defaultModerated: {
      type: 'boolean',
      default: false,
      doc: 'new rooms are moderated (visitors have no voice)',
    },
    defaultWhois: {
      type: 'string',
      default: 'moderators',
      doc: "who sees real addresses in new rooms: 'moderators' (semi-anonymous) or 'anyone'",
    },
    defaultAllowInvites: {
      type: 'boolean',
      default: false,
      doc: 'participants of new rooms may invite (moderators always may)',
    },
    defaultAllowPrivateMessages: {
      type: 'boolean',
      default: true,
      doc: 'occupants of new rooms may send each other private messages',
    },
    defaultChangeSubject: {
      type: 'boolean',
      default: false,
      doc: 'participants of new rooms may change the subject',
    },
    defaultHistoryLength: {
      type: 'number',
      default: 20,
      min: 0,
      doc: 'messages a joining occupant gets from the room timeline by default',
    },
    defaultArchive: {
      type: 'boolean',
      default: true,
      doc: 'new rooms serve their timeline to members through XEP-0313 on the room (history on join is sent either way)',
    },
    defaultPresenceBroadcast: {
      type: 'strings',
      default: [...BROADCAST_ROLES],
      doc: "roles whose presence the other occupants of new rooms see (muc#roomconfig_presencebroadcast [XEP-0045 15.5.3]): any of 'moderator', 'participant', 'visitor'; `[moderator]` lets a room of 10,000 XMPP occupants skip N²/2 presence stanzas",
    },
  },
  specs: [],
  async setup(ctx) {
    const { broker, options: o } = ctx;
    if (o.host === null) return; // groupchat off
    if (o.defaultWhois !== 'moderators' && o.defaultWhois !== 'anyone')
      throw new Error("modules.rooms.defaultWhois: expected 'moderators' or 'anyone'");
    const presenceBroadcast = broadcastRoles(o.defaultPresenceBroadcast);
    if (!presenceBroadcast)
      throw new Error(
        "modules.rooms.defaultPresenceBroadcast: expected roles among 'moderator', 'participant', 'visitor'",
      );
    const defaults: RoomConfig = {
      ...defaultRoomConfig,
      persistent: o.defaultPersistent,
      public: o.defaultPublic,
      membersOnly: o.defaultMembersOnly,
      moderated: o.defaultModerated,
      whois: o.defaultWhois,
      allowInvites: o.defaultAllowInvites,
      allowPrivateMessages: o.defaultAllowPrivateMessages,
      changeSubject: o.defaultChangeSubject,
      historyLength: Math.min(o.defaultHistoryLength, o.maxHistory),
      archive: o.defaultArchive,
      presenceBroadcast,
    };
    const service = new RoomService(
      broker,
      broker.storage.kv<RoomRecord>('rooms'),
      broker.storage.archive('rooms'),
      {
        host: o.host.replace('{domain}', broker.domain),
        maxRoomsPerUser: o.maxRoomsPerUser,
        maxOccupants: o.maxOccupants,
        nickMaxBytes: o.nickMaxBytes,
        subjectMaxBytes: o.subjectMaxBytes,
        descriptionMaxBytes: o.descriptionMaxBytes,
        nameMaxBytes: o.nameMaxBytes,
        passwordMaxBytes: o.passwordMaxBytes,
        maxHistory: o.maxHistory,
        fanoutSlice: o.fanoutSlice,
        voiceRequestInterval: o.voiceRequestInterval,
        defaults,
      },
      broker.storage.kv<RoomProfile>('roomprofiles'),
    );
    const n = await service.restore();
    if (n) ctx.log.info({ rooms: n }, 'persistent rooms restored');
    setRoomService(broker, service);
    // Cluster: each room has a home node; requests and events cross the bus (docs/cluster.md, "Rooms").
    const cluster = new RoomCluster(broker, service);
    setRoomCluster(broker, cluster);
    ctx.onUnload(() => {
      service.shutdown();
      cluster.stop();
      setRoomCluster(broker, undefined);
      setRoomService(broker, undefined);
    });
    // A device whose session ended is out of every room (also when it sent no unavailable).
    ctx.onUnload(
      broker.hooks.on('session:unbound', (s) => {
        service.leaveAll(s.address.toString());
        cluster.deviceGone(s.address.toString());
      }),
    );
    // Cluster: the devices of a node found dead leave too; rooms homed there are gone for this node's devices.
    ctx.onUnload(
      broker.hooks.on('node:down', (node, sessions) => {
        // nodeDown first: the leaves' events must not go to the dead node's other devices (its
        // sessions are gone, and a node that was only cut off would get them once it heals).
        cluster.nodeDown(node);
        sessions.forEach((e) => service.leaveAll(`${e.user}/${e.resource}`));
      }),
    );
    // Cluster: this node was reaped while cut off; the rooms homed elsewhere dropped its devices.
    ctx.onUnload(broker.hooks.on('node:reaped-self', () => cluster.reapedSelf()));
    ctx.onUnload(
      broker.hooks.on('account:removed', (username) =>
        service.removeUser(`${username}@${broker.domain}`),
      ),
    );
  },
});
