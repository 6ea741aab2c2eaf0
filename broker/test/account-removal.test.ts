/**
 * Account removal must reach every per-user store (issue 20 item 9). The
 * stores are listed at runtime from a real EmbeddedStorage under a broker
 * with every module of a node; a store the removal path does not know fails
 * the test, and so does a new kind of store in the Storage interface.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allModules } from '../../bin/node.ts';
import { LocalBus, LocalRegistry } from '../../cluster/local.ts';
import { EmbeddedStorage } from '../../storage/embedded.ts';
import type { Storage } from '../../storage/types.ts';
import { PER_USER_STORES, SHARED_STORES } from '../account-removal.ts';
import { Address } from '../address.ts';
import { Broker } from '../broker.ts';
import { FakeSession } from './helpers.ts';
import { Readable } from 'node:stream';
import { DiskBlobStore } from '../../storage/blobs-disk.ts';
import { setUploadBackend, uploadService } from '../upload.ts';

/** Methods of a Storage that open a store; anything else but the lifecycle is a new kind the removal must learn. */
const STORE_KINDS = new Set(['kv', 'archive', 'queue']);
// backup: a copy of the whole store (bin/backup.ts), no store of its own
const LIFECYCLE = new Set(['constructor', 'open', 'close', 'ping', 'backup']);

/** Wraps a storage so that every store opened through it is recorded as `kind:name`. */
function recording(storage: Storage, opened: Set<string>): Storage {
  return new Proxy(storage, {
    get(obj, prop, receiver) {
      const v = Reflect.get(obj, prop, receiver);
      if (typeof v !== 'function') return v;
      if (STORE_KINDS.has(String(prop))) {
        return (name: string) => {
          opened.add(`${String(prop)}:${name}`);
          return (v as (n: string) => unknown).call(obj, name);
        };
      }
      return v.bind(obj);
    },
  });
}

describe('account removal reaches every store', function () {
  this.timeout(20_000);
  let dir: string;
  let storage: EmbeddedStorage;
  let broker: Broker;
  const opened = new Set<string>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parley-removal-'));
    storage = new EmbeddedStorage({ dir });
    broker = new Broker({
      domain: 'localhost',
      storage: recording(storage, opened),
      cluster: { bus: new LocalBus('n1'), registry: new LocalRegistry() },
      limits: { scramIterations: 4096 },
      modules: allModules.map((def) => ({ def })),
    });
    setUploadBackend(broker, {
      blobs: new DiskBlobStore(join(dir, 'upload')),
      secret: Buffer.alloc(32, 7),
    });
    await broker.start();
  });
  after(async () => {
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('every method of a real EmbeddedStorage is the lifecycle or a store kind the removal knows', () => {
    const methods = Object.getOwnPropertyNames(Object.getPrototypeOf(storage)).filter(
      (n) => typeof (storage as unknown as Record<string, unknown>)[n] === 'function',
    );
    const unknown = methods.filter((m) => !LIFECYCLE.has(m) && !STORE_KINDS.has(m));
    assert.deepEqual(
      unknown,
      [],
      'a new kind of store: teach broker/account-removal.ts how to clean it, then list it here',
    );
    for (const kind of STORE_KINDS)
      assert.ok(methods.includes(kind), `Storage.${kind} is gone: update this test`);
  });

  it('every store the core and the modules open is cleaned on removal or declared shared', () => {
    assert.ok(opened.size >= 4, `stores seen: ${[...opened].join(', ')}`);
    const forgotten = [...opened].filter((s) => !PER_USER_STORES.has(s) && !SHARED_STORES.has(s));
    assert.deepEqual(
      forgotten,
      [],
      'stores the removal path does not clean: add them to PER_USER_STORES (or SHARED_STORES, saying why)',
    );
  });

  it('after removal no store holds a key of the user, other rosters lose their item, and the hook ran', async () => {
    const domain = 'localhost';
    await broker.accounts.create('alice', 'pw');
    await broker.accounts.create('kim', 'pw');
    await broker.accounts.create('bob', 'pw');
    const kim = Address.of('kim', domain);
    const alice = Address.of('alice', domain);
    const bob = Address.of('bob', domain);
    // alice and kim are contacts both ways; kim has a request waiting at bob and bob's request waits at kim
    await broker.presence.fromSession(session(alice), {
      kind: 'presence',
      type: 'subscribe',
      from: alice,
      to: kim,
      extensions: [],
    });
    await broker.presence.fromSession(session(kim), {
      kind: 'presence',
      type: 'subscribed',
      from: kim,
      to: alice,
      extensions: [],
    });
    await broker.presence.fromSession(session(kim), {
      kind: 'presence',
      type: 'subscribe',
      from: kim,
      to: alice,
      extensions: [],
    });
    await broker.presence.fromSession(session(alice), {
      kind: 'presence',
      type: 'subscribed',
      from: alice,
      to: kim,
      extensions: [],
    });
    await broker.presence.fromSession(session(kim), {
      kind: 'presence',
      type: 'subscribe',
      from: kim,
      to: bob,
      extensions: [],
    });
    await broker.presence.fromSession(session(bob), {
      kind: 'presence',
      type: 'subscribe',
      from: bob,
      to: kim,
      extensions: [],
    });
    await broker.offline.enqueue({
      kind: 'message',
      type: 'chat',
      from: alice,
      to: kim,
      body: 'queued',
      extensions: [],
    });
    await broker.archive.appendChat({
      kind: 'message',
      type: 'chat',
      from: alice,
      to: kim,
      body: 'archived',
      extensions: [],
    });
    const chat = storage.archive('chat');
    assert.equal((await chat.queryOwner('kim@localhost', { count: true })).count, 1);
    assert.equal(
      (await broker.roster.item('alice@localhost', 'kim@localhost'))?.subscription,
      'both',
    );
    // kim uploaded a file (XEP-0363) and holds an unused slot
    const up = uploadService(broker)!;
    up.baseUrl = 'https://localhost:1';
    const token = (u: string) => new URL(u).pathname.split('/')[2];
    const put = (await up.requestSlot('kim@localhost', { filename: 'a.txt', size: 3 })).put;
    await up.requestSlot('kim@localhost', { filename: 'b.txt', size: 3 });
    const file = (await up.resolve(token(put), 'a.txt'))!;
    await up.blobs.write(file.id, Readable.from([Buffer.from('abc')]), 3);
    await up.markStored(file.id, file.rec);
    const kimSession = session(Address.of('kim', domain, 'phone'));
    await broker.sessions.bind(kimSession);
    let hooked: string | undefined;
    const off = broker.hooks.on('account:removed', async (u) => {
      hooked = u;
    });

    await broker.removeAccount('kim');
    off();

    assert.equal(hooked, 'kim');
    assert.deepEqual(kimSession.closedWith, { kind: 'not-authorized', text: 'account removed' });
    assert.equal(await broker.accounts.get('kim'), undefined);
    assert.equal(await broker.roster.item('alice@localhost', 'kim@localhost'), undefined);
    assert.equal((await broker.roster.get('alice@localhost')).items.length, 0);
    assert.equal(await broker.offline.count(kim), 0);
    for (const name of opened) {
      const [kind, store] = name.split(':') as [string, string];
      if (kind !== 'kv') continue;
      const left = (await storage.kv(store).keys()).filter(
        (k) => k === 'kim' || k.includes('kim@'),
      );
      assert.deepEqual(left, [], `${name} still holds keys of kim`);
    }
    assert.deepEqual(
      await storage.kv('upload').keys(),
      [],
      "kim's files, slots and counters are gone",
    );
    assert.equal(await up.blobs.stat(file.id), undefined, "kim's file is deleted");
    // kim's own archive is gone; alice keeps her history with kim
    assert.equal((await chat.queryOwner('kim@localhost', { count: true })).count, 0);
    assert.equal((await chat.queryOwner('alice@localhost', { count: true })).count, 1);
  });
});

function session(address: Address): FakeSession {
  const s = new FakeSession(address);
  s.available = true;
  s.interested = true;
  return s;
}
