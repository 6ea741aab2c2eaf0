import { escapeXML, xml, type Element } from '@xmpp/xml';
import { Address, BrokerError, defineModule } from '../../../broker/index.ts';
import { NS_VCARD, NS_VCARD_UPDATE } from '../ns.ts';
import { discoFeature } from './basics.ts';
import { pepService } from './pep.ts';
import { vcardService } from './vcard.ts';
import {
  avatarBytes,
  avatarPayloads,
  metadataInfo,
  NODE_VCARD4,
  NS_AVATAR_DATA,
  NS_AVATAR_METADATA,
  parseStored,
  photoHash,
  tempFields,
  vcard4Fields,
  vcard4From,
  vcardPhoto,
  withPhoto,
  withTempFields,
} from './vcard-convert.ts';

const NS_CONVERSION = 'urn:xmpp:pep-vcard-conversion:0';
/** Nodes a conversion creates are open, like the vCard anyone may read (Prosody's node_defaults); existing nodes keep their configuration. */
const OPEN = new Map([['pubsub#access_model', ['open']]]);

/**
 * vCard and PEP profiles kept in step, as Prosody's mod_vcard_legacy:
 *
 * - XEP-0153: every available presence an XMPP session sends carries
 *   `<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>` with the
 *   account's current avatar hash (`<photo/>`: none), unless the client
 *   put a `<photo/>` there itself (left alone, as Prosody does).
 * - XEP-0398: a vcard-temp PHOTO is published as a XEP-0084 avatar (data,
 *   then metadata); a XEP-0084 metadata item (with its data item) becomes
 *   the vcard-temp PHOTO; `<metadata/>` or a vCard without the PHOTO it had
 *   removes the avatar on the other side.
 * - XEP-0292: FN and NICKNAME of vcard-temp are published to the
 *   `urn:xmpp:vcard4` node (with PHOTO as a data: URI), keeping the node's
 *   other properties; a vCard4 published there sets FN and NICKNAME of
 *   vcard-temp.
 *
 * Conversions happen when something is written; each side is stored as it
 * is (kv:vcard, kv:pep), so reads cost nothing extra.
 */
export default defineModule({
  name: 'vcard-pep',
  description:
    'Avatar hashes in presence (XEP-0153) and conversion between vcard-temp, PEP avatars (XEP-0398) and vCard4 (XEP-0292)',
  depends: ['vcard', 'pep'],
  options: {
    hashCacheSize: {
      type: 'number',
      default: 10_000,
      min: 1,
      doc: 'avatar hashes kept in memory for presence (one per account); a miss reads the PEP metadata or the vCard',
    },
    hashCacheSeconds: {
      type: 'number',
      default: 60,
      min: 0,
      doc: 'how long a cached avatar hash is trusted (changes made on other cluster nodes show after at most this long)',
    },
  },
  specs: [
    {
      spec: 'XEP-0153',
      status: 'complete',
      note: 'the server adds the hash to available presence of XMPP sessions that carry none, as Prosody',
    },
    {
      spec: 'XEP-0398',
      status: 'complete',
      note: 'on writes: vcard-temp PHOTO ↔ XEP-0084 data and metadata (publish, retract, purge, delete)',
    },
    {
      spec: 'XEP-0292',
      status: 'partial',
      note: 'the urn:xmpp:vcard4 PEP node stored and served; FN and NICKNAME converted both ways, PHOTO from vcard-temp; other properties not converted',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const pep = pepService(broker);
    if (!pep) throw new Error('vcard-pep needs the pep module');
    const vcards = vcardService(broker);
    if (!vcards) throw new Error('vcard-pep needs the vcard module');

    // ---- avatar hash per account, for presence [XEP-0153] ----
    const cache = new Map<string, { hash: string; until: number }>();
    const forget = (owner: Address) => void cache.delete(owner.toString());

    /** The avatar hash: from the XEP-0084 metadata node if there is one, else the vCard PHOTO; '' for none. */
    const currentHash = async (owner: Address): Promise<string> => {
      const key = owner.toString();
      const hit = cache.get(key);
      if (hit && hit.until > Date.now()) return hit.hash;
      let hash = '';
      const meta = await pep.meta(owner, NS_AVATAR_METADATA);
      if (meta?.ids.length) {
        const rec = await pep.item(owner, NS_AVATAR_METADATA, meta.ids[meta.ids.length - 1]!);
        const el = rec && parseStored(rec.payload);
        hash = (el && metadataInfo(el)?.id) ?? '';
      } else if (!meta) {
        const stored = await vcards.get(owner);
        const el = stored ? parseStored(stored) : undefined;
        const photo = el && vcardPhoto(el);
        if (photo) hash = photoHash(photo.bytes);
      }
      if (cache.size >= ctx.options.hashCacheSize) cache.delete(cache.keys().next().value!);
      cache.set(key, { hash, until: Date.now() + ctx.options.hashCacheSeconds * 1000 });
      return hash;
    };

    // [XEP-0153 3.2] the hash in each available presence of the account's XMPP sessions
    ctx.onUnload(
      broker.hooks.on('presence:outgoing', async (presence, session) => {
        if (session.protocol !== 'xmpp') return undefined;
        const i = presence.extensions.findIndex(
          (x) => x.includes(NS_VCARD_UPDATE) && parseStored(x)?.attrs.xmlns === NS_VCARD_UPDATE,
        );
        const theirs = i === -1 ? undefined : parseStored(presence.extensions[i]!);
        if (theirs?.getChild('photo')) return undefined; // the client's own hash is left alone, as Prosody does [XEP-0153 4.1]
        const hash = await currentHash(session.address.bare());
        const extensions = presence.extensions.filter((_, j) => j !== i);
        extensions.push(
          `<x xmlns='${NS_VCARD_UPDATE}'>${hash ? `<photo>${escapeXML(hash)}</photo>` : '<photo/>'}</x>`,
        );
        return { ...presence, extensions };
      }),
    );

    // ---- vcard-temp set → PEP avatar and vCard4 [XEP-0398, XEP-0292] ----
    const onVcardSet = async (
      owner: Address,
      vcard: Element,
      previousXml: string | undefined,
    ): Promise<void> => {
      forget(owner);
      const photo = vcardPhoto(vcard);
      const previous = previousXml ? parseStored(previousXml) : undefined;
      if (photo) {
        const a = avatarPayloads(photo);
        const meta = await pep.meta(owner, NS_AVATAR_METADATA);
        if (meta?.ids[meta.ids.length - 1] !== a.id) {
          const dataMeta = await pep.meta(owner, NS_AVATAR_DATA);
          await pep.publish(owner, NS_AVATAR_DATA, a.id, a.data, dataMeta ? undefined : OPEN); // [XEP-0084 4.1] data before metadata
          await pep.publish(owner, NS_AVATAR_METADATA, a.id, a.metadata, meta ? undefined : OPEN);
        }
      } else if (previous && vcardPhoto(previous)) {
        await pep.publish(
          owner,
          NS_AVATAR_METADATA,
          'current',
          xml('metadata', { xmlns: NS_AVATAR_METADATA }),
          undefined,
        ); // [XEP-0084 4.5] no avatar any more
      }
      const v4meta = await pep.meta(owner, NODE_VCARD4);
      const f = tempFields(vcard);
      if (!v4meta && f.fn === undefined && f.nickname === undefined && !photo) return;
      const prevRec = v4meta?.ids.length
        ? await pep.item(owner, NODE_VCARD4, v4meta.ids[v4meta.ids.length - 1]!)
        : undefined;
      const v4 = vcard4From(vcard, prevRec ? parseStored(prevRec.payload) : undefined);
      if (prevRec?.payload === v4.toString()) return;
      await pep.publish(owner, NODE_VCARD4, 'current', v4, v4meta ? undefined : OPEN); // [XEP-0292 3] item id 'current'
    };

    // ---- PEP → vcard-temp [XEP-0398, XEP-0292] ----
    const onPublished = async (
      owner: Address,
      node: string,
      _id: string,
      payload: Element,
    ): Promise<void> => {
      if (node !== NS_AVATAR_METADATA && node !== NODE_VCARD4) return;
      forget(owner);
      const stored = await vcards.get(owner);
      const current = (stored && parseStored(stored)) || xml('vCard', { xmlns: NS_VCARD });
      let next: Element | undefined;
      if (node === NS_AVATAR_METADATA) {
        const info = metadataInfo(payload);
        const had = vcardPhoto(current);
        if (!info) {
          if (had) next = withPhoto(current, undefined);
        } else if (!had || photoHash(had.bytes) !== info.id) {
          const data = await pep.item(owner, NS_AVATAR_DATA, info.id);
          const bytes = data && avatarBytes(parseStored(data.payload) ?? xml('data'));
          if (bytes && photoHash(bytes) === info.id)
            next = withPhoto(current, { type: info.type, bytes }); // only a photo that matches its id
        }
      } else {
        const f = vcard4Fields(payload);
        const was = tempFields(current);
        if (f.fn !== was.fn || f.nickname !== was.nickname) next = withTempFields(current, f);
      }
      if (!next) return;
      try {
        await vcards.put(owner, next, true);
      } catch (err) {
        // a photo too large for a vCard stays a PEP avatar only
        if (!(err instanceof BrokerError)) throw err;
        ctx.log.info(
          { owner: owner.toString(), err: err.message },
          'PEP profile not converted to vcard-temp',
        );
      }
    };

    vcards.changed.add(onVcardSet);
    ctx.onUnload(() => void vcards.changed.delete(onVcardSet));
    pep.published.add(onPublished);
    ctx.onUnload(() => void pep.published.delete(onPublished));

    // Items retracted, the node purged or deleted: the current avatar is what is left, or none [XEP-0084 4.5]
    const onEmptied = async (owner: Address, node: string): Promise<void> => {
      if (node !== NS_AVATAR_METADATA) return;
      forget(owner);
      const meta = await pep.meta(owner, NS_AVATAR_METADATA);
      const last = meta?.ids.length
        ? await pep.item(owner, NS_AVATAR_METADATA, meta.ids[meta.ids.length - 1]!)
        : undefined;
      await onPublished(
        owner,
        node,
        '',
        (last && parseStored(last.payload)) || xml('metadata', { xmlns: NS_AVATAR_METADATA }),
      );
    };
    pep.emptied.add(onEmptied);
    ctx.onUnload(() => void pep.emptied.delete(onEmptied));
    discoFeature(ctx, NS_CONVERSION); // [XEP-0398 3]
  },
});
