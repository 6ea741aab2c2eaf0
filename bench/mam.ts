// MAM workload [XEP-0313]: pages of 50 from a 100,000-message user archive,
// over the wire, one query in flight; queries/s and latency percentiles.
//
//   node --import tsx bench/mam.ts [--messages 100000] [--queries 2000] [--noise 20000]
//
// The archive is written straight into the node's embedded store before the
// node starts (through the core's ArchiveService, as the router would: the
// same records, owner index and ids), so filling it takes seconds rather than
// the minutes 100,000 messages over XMPP would. The node then runs pinned to
// core 0 as in bench/run.ts, and this generator logs in u1 over plaintext
// XMPP and asks, in turn: the last page (<before/>), a page after a random id
// of the archive, and a page with one contact (`with`) after a random id.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Address } from '../broker/address.ts';
import { ArchiveService } from '../broker/archive.ts';
import type { Envelope, EnvelopeRecord } from '../broker/envelope.ts';
import { EmbeddedStorage } from '../storage/embedded.ts';
import { now, num, parseFlags, percentiles, run } from './lib/common.ts';
import { XmppClient } from './lib/xmpp.ts';
import { ParleyServer } from './servers.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DOMAIN = 'localhost';

async function fill(storeDir: string, messages: number, noise: number): Promise<string[]> {
  const storage = new EmbeddedStorage({ dir: storeDir });
  await storage.open();
  const archive = new ArchiveService(storage.archive<EnvelopeRecord>('chat'));
  const u1 = Address.of('u1', DOMAIN);
  const contacts = Array.from({ length: 10 }, (_, i) => Address.of(`u${i + 2}`, DOMAIN));
  const ids: string[] = [];
  const t0 = Date.now() - messages - noise; // one ms apart, in the past
  const batch = 1000;
  for (let i = 0; i < messages + noise; i += batch) {
    const appends: Promise<unknown>[] = [];
    for (let k = i; k < Math.min(i + batch, messages + noise); k++) {
      // u1 talks with ten contacts, both directions; the noise is between others (never read by u1's queries).
      const other = contacts[k % contacts.length];
      const mine = k < messages;
      const [from, to] = mine
        ? k % 2
          ? [u1, other]
          : [other, u1]
        : [contacts[k % 10], contacts[(k + 1) % 10]];
      const env: Envelope = {
        kind: 'message',
        type: 'chat',
        from: from.withResource('r'),
        to,
        id: `b${k}`,
        body: `message ${k} with a body of ordinary length`,
        extensions: [],
        timestamp: t0 + k,
      };
      appends.push(
        archive.appendChat(env).then(() => {
          if (mine && env.archive) ids.push(env.archive.id);
        }),
      );
    }
    await Promise.all(appends);
  }
  await storage.close();
  return ids;
}

run(async () => {
  const f = parseFlags();
  const messages = num(f, 'messages', 100_000);
  const noise = num(f, 'noise', 20_000);
  const queries = num(f, 'queries', 2000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-bench-mam-'));
  const server = new ParleyServer(dir, REPO, false);
  try {
    const fillStart = Date.now();
    const ids = await fill(path.join(dir, 'data', 'store'), messages, noise);
    const fillMs = Date.now() - fillStart;
    await server.start();
    await server.seed(11);
    const c = await XmppClient.login({
      host: '127.0.0.1',
      port: server.ports.xmpp!,
      domain: DOMAIN,
      user: 'u1',
      password: 'pw',
      resource: 'bench',
      tls: false,
      mech: 'SCRAM-SHA-1',
      presence: true,
    });
    // Our own reader: the page's 50 results, then the IQ result with <fin/>.
    c.sock.removeAllListeners('data');
    let buf = '';
    let pending: { id: string; resolve: (results: number) => void } | undefined;
    c.sock.on('data', (d: string | Buffer) => {
      buf += d.toString();
      if (!pending) return;
      const at = buf.indexOf(`id='${pending.id}'`);
      if (at === -1) return;
      const end = buf.indexOf('</iq>', at);
      if (end === -1) return;
      const page = buf.slice(0, end);
      buf = buf.slice(end + 5);
      const p = pending;
      pending = undefined;
      p.resolve(page.split('<result ').length - 1);
    });
    const ask = (n: number): Promise<number> => {
      const id = `q${n}`;
      const kind = n % 3;
      const after = ids[Math.floor(Math.random() * (ids.length - 60))];
      const form =
        kind === 2
          ? `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field><field var='with'><value>u${2 + Math.floor(Math.random() * 10)}@${DOMAIN}</value></field></x>`
          : '';
      const set =
        kind === 0
          ? `<set xmlns='http://jabber.org/protocol/rsm'><max>50</max><before/></set>`
          : `<set xmlns='http://jabber.org/protocol/rsm'><max>50</max><after>${after}</after></set>`;
      return new Promise((resolve) => {
        pending = { id, resolve };
        c.write(
          `<iq type='set' id='${id}'><query xmlns='urn:xmpp:mam:2' queryid='${id}'>${form}${set}</query></iq>`,
        );
      });
    };
    for (let i = 0; i < 50; i++) await ask(-1 - i); // warm-up
    const lat: number[] = [];
    let results = 0;
    const start = now();
    for (let i = 0; i < queries; i++) {
      const t = now();
      results += await ask(i);
      lat.push(now() - t);
    }
    const seconds = (now() - start) / 1000;
    c.destroy();
    const p = percentiles(lat);
    return {
      ok: true,
      workload: 'mam-page-50',
      messages,
      noise,
      fillMs,
      queries,
      resultsPerQuery: results / queries,
      queriesPerSec: Math.round(queries / seconds),
      p50Ms: +p.p50.toFixed(2),
      p90Ms: +p.p90.toFixed(2),
      p99Ms: +p.p99.toFixed(2),
      maxMs: +p.max.toFixed(2),
    };
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}, 600_000);
