import { xml, type Element } from '@xmpp/xml';
import { Address, defineModule, unreadService } from '../../../broker/index.ts';
import { NS_MDS, NS_SID } from '../ns.ts';
import { pepService } from './pep.ts';

/** [XEP-0490 4] the node configuration a client publishes with; the server's own publishes use the same. */
const NODE_OPTIONS = (): Map<string, string[]> =>
  new Map([
    ['pubsub#persist_items', ['true']],
    ['pubsub#max_items', ['max']],
    ['pubsub#send_last_published_item', ['never']],
    ['pubsub#access_model', ['whitelist']],
  ]);

/**
 * XEP-0490 Message Displayed Synchronization on the core's unread counts
 * (docs/conversations.md). The `urn:xmpp:mds:displayed:0` PEP node of each
 * account holds one item per conversation (item id = the peer's bare JID)
 * with the stanza-id of the last message displayed. A client's publish moves
 * the core's position (and the counts MQTT devices see); a displayed chat
 * marker from any device (XMPP or MQTT) moves it too, and this module then
 * publishes the item on the user's behalf, so the user's XMPP clients that
 * ask for `+notify` get it as a PEP notification.
 */
export default defineModule({
  name: 'mds',
  description:
    'Message Displayed Synchronization: the last displayed message per conversation over PEP, also moved by chat markers from any device',
  depends: ['pep'],
  options: {},
  specs: [
    {
      spec: 'XEP-0490',
      status: 'complete',
      note: "a displayed chat marker from any device (XMPP or MQTT) is published to the node on the user's behalf; positions feed the unread counts",
    },
    {
      spec: 'XEP-0333',
      status: 'complete',
      note: 'relayed (markers from MQTT devices as JSON), archived with their ids, carbon-copied; displayed markers move the unread counts',
    },
    {
      spec: 'XEP-0184',
      status: 'complete',
      note: 'requests and receipts relayed, archived with their ids, carbon-copied',
    },
    {
      spec: 'XEP-0085',
      status: 'complete',
      note: 'relayed, carbon-copied, never archived nor kept offline',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const pep = pepService(broker);
    const unread = unreadService(broker);
    if (!pep || !unread) return; // the core's unread module is off (it sets up before the XMPP modules)
    const fail = (err: unknown) => ctx.log.warn({ err }, 'mds: update failed');

    // A client's publish [XEP-0490 4]: item id = the conversation's bare JID, payload <displayed><stanza-id by=me/></displayed>
    const onPublished = async (
      owner: Address,
      node: string,
      id: string,
      payload: Element,
    ): Promise<void> => {
      if (node !== NS_MDS) return;
      const peer = Address.tryParse(id);
      const sid =
        payload.name === 'displayed' && payload.attrs.xmlns === NS_MDS
          ? payload.getChild('stanza-id', NS_SID)
          : undefined;
      if (!peer?.local || !peer.isBare || !sid?.attrs.id) return;
      // The archive id is the owner's own [XEP-0359 by]; anything else names no message of this archive.
      if (sid.attrs.by !== undefined && Address.tryParse(sid.attrs.by)?.equals(owner) !== true)
        return;
      unread.displayedArchiveId(owner, peer, sid.attrs.id as string).catch(fail);
    };
    pep.published.add(onPublished);
    ctx.onUnload(() => void pep.published.delete(onPublished));

    // A displayed marker from a device: the node follows, and the user's XMPP clients hear it.
    ctx.onUnload(
      unread.onDisplayed((user, peer, archiveId, source) => {
        if (source !== 'marker') return;
        const item: Element = xml(
          'displayed',
          { xmlns: NS_MDS },
          xml('stanza-id', { xmlns: NS_SID, by: user.toString(), id: archiveId }),
        );
        pep.publish(user, NS_MDS, peer.toString(), item, NODE_OPTIONS()).catch(fail);
      }),
    );
  },
});
