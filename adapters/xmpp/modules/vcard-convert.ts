import { createHash } from 'node:crypto';
import { xml, type Element } from '@xmpp/xml';
import { NS_VCARD } from '../ns.ts';
import { parseStored } from '../stanza.ts';

/**
 * Conversions between vcard-temp (XEP-0054), XEP-0084 avatars and vCard4
 * over PEP (XEP-0292), for the vcard-pep module: pure functions on
 * elements. What is converted is listed in docs/pep.md.
 */

export const NS_AVATAR_DATA = 'urn:xmpp:avatar:data';
export const NS_AVATAR_METADATA = 'urn:xmpp:avatar:metadata';
export const NS_VCARD4 = 'urn:ietf:params:xml:ns:vcard-4.0';
/** the XEP-0292 PEP node */
export const NODE_VCARD4 = 'urn:xmpp:vcard4';

export { parseStored };

/** An image: its MIME type and bytes. */
export interface Photo {
  type: string;
  bytes: Buffer;
}

/** The avatar hash of XEP-0153 and the item id of XEP-0084: SHA-1 of the image bytes, hex [XEP-0153 4.2, XEP-0084 4.2]. */
export function photoHash(bytes: Buffer): string {
  return createHash('sha1').update(bytes).digest('hex');
}

const b64 = (text: string): Buffer | undefined => {
  const clean = text.replace(/\s+/g, '');
  if (!clean || !/^[A-Za-z0-9+/]*={0,2}$/.test(clean)) return undefined;
  return Buffer.from(clean, 'base64');
};

/** The embedded photo of a vcard-temp (`<PHOTO><TYPE/><BINVAL/></PHOTO>`), if any [XEP-0054, XEP-0153 3.1]. */
export function vcardPhoto(vcard: Element): Photo | undefined {
  const photo = vcard.getChild('PHOTO');
  const bin = photo?.getChildText('BINVAL');
  if (!photo || !bin) return undefined;
  const bytes = b64(bin);
  if (!bytes?.length) return undefined;
  return { type: photo.getChildText('TYPE')?.trim() || 'image/png', bytes };
}

/** A copy of a vcard-temp with `name` set to `value` (undefined: removed). */
function withField(vcard: Element, name: string, value: Element | undefined): Element {
  const out = xml('vCard', { xmlns: NS_VCARD });
  let placed = false;
  for (const c of vcard.children) {
    if (typeof c !== 'string' && c.name === name) {
      if (value && !placed) out.append(value);
      placed = true;
      continue;
    }
    out.append(c);
  }
  if (value && !placed) out.append(value);
  return out;
}

/** A copy of a vcard-temp with this photo, or none. */
export function withPhoto(vcard: Element, photo: Photo | undefined): Element {
  return withField(
    vcard,
    'PHOTO',
    photo &&
      xml(
        'PHOTO',
        {},
        xml('TYPE', {}, photo.type),
        xml('BINVAL', {}, photo.bytes.toString('base64')),
      ),
  );
}

/** The fields vcard-temp and vCard4 share here [XEP-0292 5]: FN and NICKNAME. */
export interface SharedFields {
  fn?: string;
  nickname?: string;
}

export function tempFields(vcard: Element): SharedFields {
  const text = (n: string) => {
    const t = vcard.getChildText(n);
    return t === null || t === undefined || t === '' ? undefined : t;
  };
  return { fn: text('FN'), nickname: text('NICKNAME') };
}

/** A copy of a vcard-temp with FN and NICKNAME from vCard4. */
export function withTempFields(vcard: Element, f: SharedFields): Element {
  const a = withField(vcard, 'FN', f.fn === undefined ? undefined : xml('FN', {}, f.fn));
  return withField(
    a,
    'NICKNAME',
    f.nickname === undefined ? undefined : xml('NICKNAME', {}, f.nickname),
  );
}

/** FN and NICKNAME of a vCard4 (`<fn><text/></fn>`) [RFC6351, XEP-0292]. */
export function vcard4Fields(vcard4: Element): SharedFields {
  const text = (n: string) => {
    const t = vcard4.getChild(n)?.getChildText('text');
    return t === null || t === undefined || t === '' ? undefined : t;
  };
  return { fn: text('fn'), nickname: text('nickname') };
}

/**
 * A vCard4 with FN, NICKNAME and PHOTO (as a `data:` URI [RFC6350 6.2.4])
 * taken from vcard-temp; the other properties of `previous` (the node's
 * current item) are kept.
 */
export function vcard4From(vcard: Element, previous: Element | undefined): Element {
  const out = xml('vcard', { xmlns: NS_VCARD4 });
  const f = tempFields(vcard);
  if (f.fn !== undefined) out.append(xml('fn', {}, xml('text', {}, f.fn)));
  if (f.nickname !== undefined) out.append(xml('nickname', {}, xml('text', {}, f.nickname)));
  const photo = vcardPhoto(vcard);
  if (photo)
    out.append(
      xml(
        'photo',
        {},
        xml('uri', {}, `data:${photo.type};base64,${photo.bytes.toString('base64')}`),
      ),
    );
  for (const c of previous?.children ?? []) {
    if (typeof c === 'string' || c.name === 'fn' || c.name === 'nickname' || c.name === 'photo')
      continue;
    out.append(c);
  }
  return out;
}

/** The avatar a XEP-0084 metadata payload announces: its id and type; null for `<metadata/>` (no avatar) [XEP-0084 4.2, 4.5]. */
export function metadataInfo(metadata: Element): { id: string; type: string } | null {
  const info = metadata
    .getChildren('info')
    .find((i) => typeof i.attrs.id === 'string' && i.attrs.id !== '');
  if (!info) return null;
  return {
    id: info.attrs.id as string,
    type: (info.attrs.type as string | undefined) || 'image/png',
  };
}

/** The image bytes of a XEP-0084 data payload. */
export function avatarBytes(data: Element): Buffer | undefined {
  return b64(data.getText());
}

/** The XEP-0084 data and metadata payloads of a photo. */
export function avatarPayloads(photo: Photo): { id: string; data: Element; metadata: Element } {
  const id = photoHash(photo.bytes);
  return {
    id,
    data: xml('data', { xmlns: NS_AVATAR_DATA }, photo.bytes.toString('base64')),
    metadata: xml(
      'metadata',
      { xmlns: NS_AVATAR_METADATA },
      xml('info', { id, bytes: String(photo.bytes.length), type: photo.type }),
    ),
  };
}
