import assert from 'node:assert/strict';
import { ClientAcl, defaultAcl, validateAcl, type AclRule } from '../acl.ts';
import { filterCovers, reserved, topicMatches } from '../topics.ts';

describe('mqtt topics', () => {
  it('matches filters to topic names [MQTT-4.7.1-2] [MQTT-4.7.1-3]', () => {
    const table: [string, string, boolean][] = [
      ['a/b', 'a/b', true],
      ['a/+', 'a/b', true],
      ['a/+', 'a/b/c', false],
      ['a/#', 'a', true], // '#' also matches the parent level
      ['a/#', 'a/b/c', true],
      ['+/+', '/x', true], // empty levels are levels
      ['#', 'a/b', true],
      ['a/b', 'a/c', false],
      ['a/+/c', 'a//c', true],
      // literal filters: only the identical name
      ['a/b', 'a/b/', false],
      ['a/b', 'a', false],
      ['$SYS/x', '$SYS/x', true],
      ['', '', true],
    ];
    for (const [f, t, want] of table) assert.equal(topicMatches(f, t), want, `${f} vs ${t}`);
  });

  it('never matches $ topics with a leading wildcard [MQTT-4.7.2-1]', () => {
    assert.equal(topicMatches('#', '$SYS/broker/uptime'), false);
    assert.equal(topicMatches('+/broker/uptime', '$SYS/broker/uptime'), false);
    assert.equal(topicMatches('$SYS/#', '$SYS/broker/uptime'), true);
  });

  it('decides whether one filter covers another', () => {
    const c = (p: string, f: string) => filterCovers(p.split('/'), f.split('/'));
    assert.equal(c('a/#', 'a/+/c'), true);
    assert.equal(c('a/+', 'a/#'), false);
    assert.equal(c('a/+', 'a/b'), true);
    assert.equal(c('a/b', 'a/+'), false);
    assert.equal(c('#', '$SYS/#'), false);
    assert.equal(c('#', '#'), true);
  });

  it('recognises the core-owned trees', () => {
    assert.deepEqual(reserved('chat/bob'), { tree: 'chat', user: 'bob' });
    assert.deepEqual(reserved('presence/+'), { tree: 'presence', user: undefined });
    assert.deepEqual(reserved('chat/bob/x'), { tree: 'chat', user: undefined });
    assert.equal(reserved('chats/bob'), undefined);
    assert.equal(reserved('sensors/chat'), undefined);
  });
});

describe('mqtt ACL', () => {
  const rules: AclRule[] = [
    { effect: 'deny', topic: 'secret/#', access: 'readwrite' },
    { effect: 'allow', topic: 'users/%u/#', access: 'readwrite' },
    { effect: 'allow', topic: 'devices/%c/state', access: 'write' },
    { effect: 'allow', topic: 'public/#', access: 'read' },
    { effect: 'allow', topic: 'admin/#', access: 'readwrite', users: ['root'] },
    { effect: 'allow', topic: 'lobby/#', access: 'readwrite', users: ['$anonymous'] },
  ];

  it('substitutes %u and %c', () => {
    const acl = new ClientAcl(rules, { username: 'alice', clientId: 'dev1' });
    assert.equal(acl.canWrite('users/alice/x'), true);
    assert.equal(acl.canWrite('users/bob/x'), false);
    assert.equal(acl.canWrite('devices/dev1/state'), true);
    assert.equal(acl.canRead('devices/dev1/state'), false, 'write-only rule');
    assert.equal(acl.canWrite('devices/dev2/state'), false);
  });

  it('first matching rule wins; nothing matching means deny', () => {
    const acl = new ClientAcl(rules, { username: 'alice', clientId: 'c' });
    assert.equal(acl.canRead('secret/a'), false);
    assert.equal(acl.canRead('public/a'), true);
    assert.equal(acl.canWrite('public/a'), false);
    assert.equal(acl.canRead('elsewhere'), false);
  });

  it('applies per-user rules and the $anonymous class', () => {
    assert.equal(
      new ClientAcl(rules, { username: 'root', clientId: 'c' }).canWrite('admin/x'),
      true,
    );
    assert.equal(
      new ClientAcl(rules, { username: 'alice', clientId: 'c' }).canWrite('admin/x'),
      false,
    );
    const anon = new ClientAcl(rules, { clientId: 'c' });
    assert.equal(anon.canWrite('lobby/x'), true);
    assert.equal(anon.canWrite('users/%u/x'), false);
  });

  it('refuses placeholders whose value holds wildcards or separators (CVE-2017-7650)', () => {
    const plus = new ClientAcl(rules, { username: 'a+b', clientId: '#' });
    assert.equal(plus.canWrite('users/a+b/x'), false);
    assert.equal(plus.canWrite('users/alice/x'), false);
    assert.equal(plus.canWrite('devices/#/state'), false);
  });

  it('checks a subscription filter by coverage, deny rules too', () => {
    const acl = new ClientAcl(rules, { username: 'alice', clientId: 'c' });
    assert.equal(acl.canSubscribe('users/alice/+'), true);
    assert.equal(acl.canSubscribe('users/+/x'), false);
    assert.equal(acl.canSubscribe('secret/x'), false);
    assert.equal(acl.canSubscribe('public/#'), true);
  });

  it('default rules: plain topics open, $SYS/broker readable by authenticated clients only', () => {
    const user = new ClientAcl(defaultAcl, { username: 'alice', clientId: 'c' });
    assert.equal(user.canSubscribe('#'), true);
    assert.equal(user.canSubscribe('$SYS/broker/#'), true);
    assert.equal(
      user.canSubscribe('$SYS/#'),
      false,
      'aedes client lists under $SYS/<id>/ stay private',
    );
    assert.equal(
      new ClientAcl(defaultAcl, { clientId: 'c' }).canSubscribe('$SYS/broker/uptime'),
      false,
    );
  });

  it('validates rule filters', () => {
    assert.deepEqual(validateAcl([{ effect: 'allow', topic: 'a/#/b', access: 'read' }]), [
      'acl.0.topic: not a valid MQTT topic filter [MQTT-4.7.1]',
    ]);
    assert.deepEqual(validateAcl([{ effect: 'allow', topic: 'a+/b', access: 'read' }]).length, 1);
    assert.deepEqual(validateAcl(defaultAcl), []);
  });

  it('shares one ACL among clients whose verdicts cannot differ, and never across identities that can', () => {
    const a = ClientAcl.for(defaultAcl, { username: 'alice', clientId: 'x' });
    assert.equal(ClientAcl.for(defaultAcl, { username: 'bob', clientId: 'y' }), a);
    const anon = ClientAcl.for(defaultAcl, { clientId: 'z' });
    assert.notEqual(anon, a);
    assert.equal(a.canRead('$SYS/broker/uptime'), true);
    assert.equal(anon.canRead('$SYS/broker/uptime'), false);
    const perUser: AclRule[] = [{ effect: 'allow', topic: 'home/%u/#', access: 'readwrite' }];
    const alice = ClientAcl.for(perUser, { username: 'alice', clientId: 'x' });
    assert.equal(ClientAcl.for(perUser, { username: 'alice', clientId: 'other' }), alice);
    assert.equal(
      ClientAcl.for(perUser, { username: 'bob', clientId: 'x' }).canWrite('home/alice/t'),
      false,
    );
    assert.equal(alice.canWrite('home/alice/t'), true);
    const perClient: AclRule[] = [{ effect: 'allow', topic: 'dev/%c', access: 'write' }];
    const c1 = ClientAcl.for(perClient, { username: 'alice', clientId: 'c1' });
    const c2 = ClientAcl.for(perClient, { username: 'alice', clientId: 'c2' });
    assert.notEqual(c1, c2);
    assert.equal(c1.canWrite('dev/c1'), true);
    assert.equal(c2.canWrite('dev/c1'), false);
  });
});
