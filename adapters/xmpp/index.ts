// The XMPP adapter's public surface for bin/.
import roster from './modules/roster.ts';
import { disco, legacySession, ping, version } from './modules/basics.ts';
import mam from './modules/mam.ts';

export { XmppServer } from './server.ts';
export { BoshService, defaultBoshOptions, type BoshOptions } from './bosh.ts';
export { XmppConnection, type Transport } from './connection.ts';
export { defaultXmppOptions, type XmppOptions } from './options.ts';
export { xmppHooks, type XmppHooks } from './hooks.ts';
/** Envelope → stanza XML (bin/: `parley archive export --format xml`) */
export { envelopeXml } from './stanza.ts';

/** The XMPP feature modules, in load order. */
export const xmppModules = [disco, ping, version, roster, legacySession, mam];
