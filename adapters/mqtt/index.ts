// The MQTT adapter's public surface for bin/.
export { MqttServer } from './server.ts';
export { MqttSession } from './session.ts';
export { defaultMqttOptions, type MqttListener, type MqttOptions } from './options.ts';
export { defaultAcl, ClientAcl, validateAcl, type AclIdentity, type AclRule } from './acl.ts';
export { chatEnvelope, chatJson, parsePresence, presenceJson, type PresenceCommand } from './mapping.ts';
