// The MQTT adapter's public surface for bin/.
// First: mqtt-packet (loaded by aedes below) must find `debug` already quieted.
import './quiet-debug.ts';
export { MqttServer } from './server.ts';
export { MqttSession } from './session.ts';
export {
  defaultMqttOptions,
  type MqttListener,
  type MqttOptions,
  type SessionEraser,
} from './options.ts';
export { defaultAcl, ClientAcl, validateAcl, type AclIdentity, type AclRule } from './acl.ts';
export {
  chatEnvelope,
  chatJson,
  parsePresence,
  presenceJson,
  type PresenceCommand,
} from './mapping.ts';
export {
  MemoryRetainedStore,
  ownerOf,
  type RetainedMessage,
  type RetainedStore,
} from './retained.ts';
export { nodeLocalTopic } from './topics.ts';
