// Shared setup of the XMPP inbound flood tests (xmpp-flood.test.ts over TCP,
// xmpp-flood-ws.test.ts over WebSocket, xmpp-flood-bosh.test.ts over BOSH).
import assert from 'node:assert/strict';
import { NS_CLIENT, RawConn, rawLogin, type TestNode } from '../helpers.ts';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The body of one flood message: 2 KB. */
export const BODY = 'x'.repeat(2048);

/** One 2 KB chat message to `to`. */
export const message = (to: string) =>
  `<message xmlns='${NS_CLIENT}' type='chat' to='${to}@localhost'><body>${BODY}</body></message>`;

/** One sample of the node's /metrics. */
export async function metric(node: TestNode, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.ports.http}/metrics`)).text();
  const re = new RegExp(
    `^${name}${labels ? `\\{[^}]*${labels}[^}]*\\}` : '(?:\\{[^}]*\\})?'} (\\S+)$`,
    'm',
  );
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

/** How many XMPP stanzas the node has read so far. */
export const stanzasIn = (node: TestNode) =>
  metric(node, 'parley_stanzas_total', 'protocol="xmpp",direction="in"');

/** The node's resident memory, 0 where the platform does not report it. */
export const rss = (node: TestNode) => metric(node, 'parley_process_resident_memory_bytes');

/** A ping round trip [XEP-0199] in milliseconds. */
export async function ping(c: RawConn, id: string): Promise<number> {
  const t0 = Date.now();
  c.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  await c.waitFor(new RegExp(`id='${id}'`), 10_000);
  return Date.now() - t0;
}

/** A recipient that stops reading its socket after saying it is available. */
export async function deafRecipient(
  node: TestNode,
  user: string,
  password: string,
): Promise<RawConn> {
  const rcpt = await rawLogin(node.ports.xmpp, user, password, 'PLAIN', 'sink');
  rcpt.send(`<presence/>`);
  await sleep(200);
  rcpt.socket.pause();
  return rcpt;
}

/** After a flood: a bystander's ping is still answered and the node's memory grew by less than 150 MiB since `rss0`. */
export async function assertStillServing(
  node: TestNode,
  bystander: RawConn,
  pingId: string,
  rss0: number,
): Promise<void> {
  const rtt = await ping(bystander, pingId);
  assert.ok(rtt < 5000, `ping took ${rtt} ms`);
  const rss1 = await rss(node);
  if (rss0 > 0)
    assert.ok(
      rss1 - rss0 < 150 * 1024 * 1024,
      `RSS grew by ${Math.round((rss1 - rss0) / 1048576)} MiB`,
    );
}
