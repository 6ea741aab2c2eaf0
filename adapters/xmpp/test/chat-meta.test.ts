import assert from 'node:assert/strict';
import { xml } from '@xmpp/xml';
import { Address, isArchivable, isStorableMessage } from '../../../broker/index.ts';
import { envelopeXml, toEnvelope } from '../stanza.ts';

const alice = Address.parse('alice@example.com/phone');
const bob = Address.parse('bob@example.com');
const msg = (...children: ReturnType<typeof xml>[]) =>
  toEnvelope(
    xml('message', { to: bob.toString(), type: 'chat', id: 'm1' }, ...children),
    alice,
    bob,
  );

describe("conversation elements ↔ the envelope's chat meta", () => {
  it('reads receipts, markers, retraction and correction off the stanza and writes the same elements back [XEP-0184] [XEP-0333] [XEP-0424] [XEP-0308]', () => {
    const env = msg(
      xml('body', {}, 'hi'),
      xml('request', { xmlns: 'urn:xmpp:receipts' }),
      xml('markable', { xmlns: 'urn:xmpp:chat-markers:0' }),
      xml('replace', { xmlns: 'urn:xmpp:message-correct:0', id: 'm0' }),
      xml('origin-id', { xmlns: 'urn:xmpp:sid:0', id: 'o1' }),
    );
    assert.deepEqual(env.chat, { request: true, markable: true, replace: 'm0', originId: 'o1' });
    assert.deepEqual(
      env.extensions,
      ['<origin-id xmlns="urn:xmpp:sid:0" id="o1"/>'],
      'origin-id stays as sent; the rest is in the meta',
    );
    const out = envelopeXml(env, bob);
    for (const s of [
      "<request xmlns='urn:xmpp:receipts'/>",
      "<markable xmlns='urn:xmpp:chat-markers:0'/>",
      "<replace xmlns='urn:xmpp:message-correct:0' id='m0'/>",
    ])
      assert.ok(out.includes(s), `${s} in ${out}`);
  });

  it("a marker or receipt without an id stays opaque; a client's <retracted/> is dropped (only the archive says it) [XEP-0424 5]", () => {
    const env = msg(
      xml('displayed', { xmlns: 'urn:xmpp:chat-markers:0' }),
      xml('retracted', { xmlns: 'urn:xmpp:message-retract:1', stamp: '2020-01-01T00:00:00Z' }),
      xml('body', {}, 'x'),
    );
    assert.equal(env.chat, undefined);
    assert.equal(env.extensions.length, 1);
    assert.ok(env.extensions[0].startsWith('<displayed'));
  });

  it('hints: the most restrictive wins; no-store stores nothing, no-permanent-store only offline, store anything [XEP-0334 4]', () => {
    const h = (name: string) => xml(name, { xmlns: 'urn:xmpp:hints' });
    const both = msg(xml('body', {}, 'x'), h('store'), h('no-store'));
    assert.equal(both.chat?.hint, 'no-store');
    assert.equal(isStorableMessage(both), false);
    const npm = msg(xml('body', {}, 'x'), h('no-permanent-store'));
    assert.deepEqual([isStorableMessage(npm), isArchivable(npm)], [true, false]);
    const custom = msg(xml('x', { xmlns: 'urn:example' }), h('store'));
    assert.deepEqual([isStorableMessage(custom), isArchivable(custom)], [true, true]);
    const state = msg(xml('composing', { xmlns: 'http://jabber.org/protocol/chatstates' }));
    assert.equal(isStorableMessage(state), false, 'chat states alone [XEP-0085 5.6]');
    const marker = msg(xml('displayed', { xmlns: 'urn:xmpp:chat-markers:0', id: 'm0' }));
    assert.deepEqual([isStorableMessage(marker), isArchivable(marker)], [true, true]);
  });
});
