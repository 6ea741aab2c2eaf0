// Raw-wire XEP-0198 stream management for tests: log in and enable a
// resumable session, resume it on a fresh stream (on the same node or, in a
// cluster, on another one). Used by conformance/xmpp/stream-management.test.ts
// and conformance/cross/cluster-sm.test.ts.
import assert from 'node:assert/strict';
import { rawLogin, RawConn } from './helpers.ts';

export const NS_SM = 'urn:xmpp:sm:3';

/** Log in raw, bind `resource`, enable SM (resumable) and send initial presence; returns the connection and the resumption id. */
export async function smLogin(
  port: number,
  user: string,
  password: string,
  resource: string,
  max: number,
): Promise<{ c: RawConn; id: string }> {
  const c = await rawLogin(port, user, password, 'SCRAM-SHA-256', resource);
  c.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
  const enabled = await c.waitFor(/<enabled [^>]*\/>/);
  const id = /id='([^']+)'/.exec(enabled)?.[1];
  assert.ok(id, `no id in ${enabled}`);
  assert.ok(!/location=/.test(enabled), 'location is left out (any node resumes) [XEP-0198 3]');
  assert.match(enabled, new RegExp(`max='${max}'`), 'max is the configured resume timeout');
  c.send(`<presence/>`);
  return { c, id };
}

/** Resume on a fresh raw stream: STARTTLS, SASL, then <resume/> instead of bind. */
export async function rawResume(
  port: number,
  user: string,
  password: string,
  previd: string,
  h: number,
  timeoutMs = 3000,
): Promise<{ c: RawConn; reply: string }> {
  const c = await RawConn.connect(port);
  await c.openStream();
  await c.startTls();
  await c.openStream();
  const { outcome } = await c.auth('SCRAM-SHA-256', user, password);
  assert.match(outcome, /<success/);
  const features = await c.openStream();
  assert.match(
    features,
    new RegExp(`<sm xmlns=['"]${NS_SM}['"]`),
    'sm offered after authentication [XEP-0198 2]',
  );
  c.send(`<resume xmlns='${NS_SM}' previd='${previd}' h='${h}'/>`);
  const reply = await c.waitFor(/<resumed [^>]*\/>|<failed[\s\S]*?<\/failed>/, timeoutMs);
  return { c, reply };
}

/** The bodies of the messages in raw stream text, in order. */
export const bodies = (text: string): string[] =>
  [...text.matchAll(/<body>([^<]*)<\/body>/g)].map((m) => m[1]);
