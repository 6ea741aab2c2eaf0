// Every XML namespace the XMPP adapter speaks, defined once. Modules and the
// stream code import from here; nothing else spells a namespace URI.

// RFC 6120 / 6121 (core, IM)
export const NS_STREAM = 'http://etherx.jabber.org/streams';
export const NS_CLIENT = 'jabber:client';
/** server-to-server streams [RFC6120 4.8.3] */
export const NS_SERVER = 'jabber:server';
/** [XEP-0220] Server Dialback: the elements and the stream feature */
export const NS_DIALBACK = 'jabber:server:dialback';
export const NS_DIALBACK_FEATURE = 'urn:xmpp:features:dialback';
export const NS_STREAMS_ERR = 'urn:ietf:params:xml:ns:xmpp-streams';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
export const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
/** RFC 3921 session establishment (legacy) */
export const NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session';
export const NS_ROSTER = 'jabber:iq:roster';
export const NS_ROSTERVER = 'urn:xmpp:features:rosterver';

// Transports
export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
export const NS_HTTPBIND = 'http://jabber.org/protocol/httpbind';
export const NS_XBOSH = 'urn:xmpp:xbosh';

// XEPs
export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
export const NS_VERSION = 'jabber:iq:version';
export const NS_PING = 'urn:xmpp:ping';
export const NS_DELAY = 'urn:xmpp:delay';
export const NS_SID = 'urn:xmpp:sid:0';
export const NS_FORWARD = 'urn:xmpp:forward:0';
export const NS_SM = 'urn:xmpp:sm:3';
export const NS_CARBONS = 'urn:xmpp:carbons:2';
export const NS_HINTS = 'urn:xmpp:hints';
export const NS_CSI = 'urn:xmpp:csi:0';
export const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
/** [XEP-0184] Message Delivery Receipts */
export const NS_RECEIPTS = 'urn:xmpp:receipts';
/** [XEP-0333] Chat Markers */
export const NS_MARKERS = 'urn:xmpp:chat-markers:0';
/** [XEP-0424] Message Retraction */
export const NS_RETRACT = 'urn:xmpp:message-retract:1';
/** [XEP-0425] Moderated Message Retraction */
export const NS_MODERATE = 'urn:xmpp:message-moderate:1';
/** [XEP-0308] Last Message Correction */
export const NS_CORRECT = 'urn:xmpp:message-correct:0';
/** [XEP-0490] Message Displayed Synchronization (a PEP node) */
export const NS_MDS = 'urn:xmpp:mds:displayed:0';

// Groupchat (XEP-0045 and friends)
export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_MUC_ROOMINFO = 'http://jabber.org/protocol/muc#roominfo';
export const NS_MUC_ROOMCONFIG = 'http://jabber.org/protocol/muc#roomconfig';
export const NS_MUC_REGISTER = 'http://jabber.org/protocol/muc#register';
export const NS_MUC_REQUEST = 'http://jabber.org/protocol/muc#request';
export const NS_DATA = 'jabber:x:data';
export const NS_REGISTER = 'jabber:iq:register';
export const NS_CONFERENCE = 'jabber:x:conference';
export const NS_MAM = 'urn:xmpp:mam:2';
export const NS_RSM = 'http://jabber.org/protocol/rsm';
export const NS_VCARD = 'vcard-temp';
export const NS_VCARD_UPDATE = 'vcard-temp:x:update';
export const NS_CAPS = 'http://jabber.org/protocol/caps';
export const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
export const NS_PUBSUB_OWNER = 'http://jabber.org/protocol/pubsub#owner';
export const NS_PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event';
export const NS_PUBSUB_ERRORS = 'http://jabber.org/protocol/pubsub#errors';
export const NS_PRIVATE = 'jabber:iq:private';
export const NS_BOOKMARKS = 'storage:bookmarks';
export const NS_BOOKMARKS2 = 'urn:xmpp:bookmarks:1';
export const NS_BLOCKING = 'urn:xmpp:blocking';
export const NS_BLOCKING_ERRORS = 'urn:xmpp:blocking:errors';
export const NS_TIME = 'urn:xmpp:time';
export const NS_LAST = 'jabber:iq:last';
/** [XEP-0363] HTTP File Upload */
export const NS_HTTP_UPLOAD = 'urn:xmpp:http:upload:0';
/** [XEP-0357] Push Notifications */
export const NS_PUSH = 'urn:xmpp:push:0';
export const NS_PUSH_SUMMARY = 'urn:xmpp:push:summary';
export const NS_PUBSUB_PUBLISH_OPTIONS = 'http://jabber.org/protocol/pubsub#publish-options';
/** [XEP-0215] External Service Discovery (STUN/TURN) */
export const NS_EXTDISCO = 'urn:xmpp:extdisco:2';
/** [XEP-0157] Contact Addresses for XMPP Services: the FORM_TYPE of the serverinfo form */
export const NS_SERVERINFO = 'http://jabber.org/network/serverinfo';
/** [XEP-0065] SOCKS5 Bytestreams */
export const NS_BYTESTREAMS = 'http://jabber.org/protocol/bytestreams';
