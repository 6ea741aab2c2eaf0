// The core's public surface: adapters import from here only.
export { Address } from './address.ts';
export {
  type ArchivedMessage,
  type ArchiveMode,
  type ArchivePrefs,
  type UserArchivePage,
  type UserArchiveQuery,
} from './archive.ts';
export {
  Broker,
  defaultLimits,
  type BrokerHooks,
  type BrokerLimits,
  type BrokerOptions,
  type LastLogin,
} from './broker.ts';
export {
  BrokerError,
  closeReason,
  type CloseKind,
  type CloseReason,
  type ErrorCondition,
  type ErrorType,
  type AppCondition,
} from './errors.ts';
export {
  fromRecord,
  isArchivable,
  isStorableMessage,
  toRecord,
  type ChatMeta,
  type Envelope,
  type EnvelopeRecord,
  type EnvelopeKind,
  type MarkerType,
} from './envelope.ts';
export { MESSAGE_TYPES, PRESENCE_TYPES, SHOW_VALUES, SUBSCRIPTION_TYPES } from './vocabulary.ts';
export { HookBus, type HookSignatures } from './hooks.ts';
export { claimOnce } from './claims.ts';
export { HostRegistry, type HostHandler } from './hosts.ts';
export { RemoteDomains, type RemoteRoute } from './remote.ts';
export { silentLogger, snippet, type Logger } from './logger.ts';
export {
  CounterMetrics,
  type Metrics,
  type MetricsReport,
  type ProtocolSample,
  type RateSample,
  type RateSource,
  type RecentError,
} from './metrics.ts';
export {
  defineModule,
  type ModuleContext,
  type ModuleDefinition,
  type OptionSpec,
  type SpecClaim,
} from './module.ts';
export type { RosterItem, Subscription } from './roster.ts';
export type { Ordered } from './router.ts';
export { MAX_PIPELINE, OriginPipeline } from './pipeline.ts';
export { sessionDefaults, type Session } from './session.ts';
export { SessionManager } from './session-manager.ts';
export { digest, hmac, saltedPassword, type ScramCredential, type ScramHash } from './accounts.ts';
export {
  AFFILIATIONS,
  ROLES,
  Room,
  RoomService,
  roomService,
  type Actor,
  type Affiliation,
  type Device,
  type DevicePresence,
  type JoinRequest,
  type Occupant,
  type PresenceInterest,
  type Reason,
  type Role,
  type RoomConfig,
  type RoomEvent,
  type RoomMessage,
  type RoomProfile,
  type RoomRenderer,
} from './rooms.ts';
export type { RoomArchivePage, RoomArchiveQuery } from './room-archive.ts';
export { BROADCAST_ROLES, broadcastRoles } from './room-presence.ts';
export { RoomCluster, roomCluster, type RoomOp } from './room-cluster.ts';
export { rendezvous, type RoomLocator } from './room-home.ts';
export { roomSummary, type RoomSummary } from './room-directory.ts';
export {
  removeUserUploads,
  setUploadBackend,
  typeAllowed,
  UploadRefused,
  UploadService,
  uploadService,
  purgeUploads,
  validFilename,
  type Slot,
  type SlotRequest,
  type UploadBackend,
  type UploadRecord,
} from './upload.ts';
/** The operator's operations, shared by the CLI's admin socket, the admin page and XEP-0133 ad-hoc commands. */
export * as adminOps from './admin.ts';
export { isAdmin, setAdmins } from './admin.ts';
export {
  UnreadService,
  unreadService,
  type DisplayedSource,
  type UnreadCounts,
} from './modules/unread.ts';
