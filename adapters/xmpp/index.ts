// The XMPP adapter's public surface for bin/.
import httpUpload from './modules/http-upload.ts';
import push from './modules/push.ts';
import externalServices from './modules/external-services.ts';
import contactInfo from './modules/contact-info.ts';
import proxy65 from './modules/proxy65.ts';
import roster from './modules/roster.ts';
import { disco, legacySession, ping, version } from './modules/basics.ts';
import streamManagement from './modules/stream-management.ts';
import carbons from './modules/carbons.ts';
import csi from './modules/csi.ts';
import serverPing from './modules/server-ping.ts';
import muc from './modules/muc.ts';
import mucModerationRetract from './modules/muc-moderation-retract.ts';
import mam from './modules/mam.ts';
import caps from './modules/caps.ts';
import pep from './modules/pep.ts';
import privateStorage from './modules/private.ts';
import blocking from './modules/blocking.ts';
import mds from './modules/mds.ts';
import vcard from './modules/vcard.ts';
import vcardPep from './modules/vcard-pep.ts';
import entityTime from './modules/entity-time.ts';
import lastActivity from './modules/last-activity.ts';
import register from './modules/register.ts';
import adhoc from './modules/adhoc.ts';

export { XmppServer } from './server.ts';
export { S2sService } from './s2s/service.ts';
export { defaultS2sOptions, type S2sOptions } from './s2s/options.ts';
export { BoshService, defaultBoshOptions, type BoshOptions } from './bosh.ts';
export { XmppConnection, type Transport } from './connection.ts';
export { defaultXmppOptions, type XmppOptions } from './options.ts';
export { xmppHooks, type XmppHooks } from './hooks.ts';
/** Envelope → stanza XML (bin/: `parley archive export --format xml`) */
export { envelopeXml } from './stanza.ts';

/** The XMPP feature modules, in load order. */
export const xmppModules = [
  disco,
  ping,
  version,
  roster,
  legacySession,
  mam,
  streamManagement,
  carbons,
  csi,
  serverPing,
  caps,
  pep,
  mds,
  privateStorage,
  blocking,
  vcard,
  vcardPep,
  entityTime,
  lastActivity,
  register,
  adhoc,
  muc,
  mucModerationRetract,
  httpUpload,
  push,
  externalServices,
  contactInfo,
  proxy65,
];
