// Development aid, not part of the runner: the embedded archive's append path
// alone, in process, as the chat uses it (two owners per record, 100
// conversations, a burst of appends in flight as one group commit takes them).
// Reports the process's CPU time (all threads: LevelDB's too) per append, per
// chunk, so that layouts can be compared on a machine other work is loading.
//   taskset -c 0 node --import tsx bench/archive-append.ts [--records 200000] [--chunk 50000]
//     [--pairs 100] [--in-flight 400] [--repo DIR (the checkout whose storage/ is measured)]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { num, parseFlags } from './lib/common.ts';

const f = parseFlags();
const repo = path.resolve(f.repo ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const { EmbeddedStorage } = (await import(
  pathToFileURL(path.join(repo, 'storage/embedded.ts')).href
)) as typeof import('../storage/embedded.ts');
const records = num(f, 'records', 200_000);
const chunk = num(f, 'chunk', 50_000);
const pairs = num(f, 'pairs', 100);
const inFlight = num(f, 'in-flight', 400);
const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-append-'));
const storage = new EmbeddedStorage({ dir });
await storage.open();
const archive = storage.archive<Record<string, unknown>>('chat');

/** One chat message between users 2k+1 and 2k+2, as broker/archive.ts appends it. */
function input(i: number) {
  const k = i % pairs;
  const dirn = (i / pairs) & 1;
  const a = `u${2 * k + 1}@localhost`;
  const b = `u${2 * k + 2}@localhost`;
  const [from, to] = dirn ? [b, a] : [a, b];
  const timestamp = Date.now();
  return {
    conversation: `chat:${a}|${b}`,
    timestamp,
    owners: [from, to],
    with: from,
    id: `m${i}`,
    value: {
      kind: 'message',
      from: `${from}/chat`,
      to,
      extensions: [],
      type: 'chat',
      id: `m${i}`,
      body: `${k} ${(i * 1.37).toFixed(3)}`,
      timestamp,
    },
  };
}

let done = 0;
const out: { records: number; cpuUsPerAppend: number; wallUsPerAppend: number }[] = [];
while (done < records) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const end = Math.min(records, done + chunk);
  while (done < end) {
    const burst: Promise<unknown>[] = [];
    for (let j = 0; j < inFlight && done < end; j++) burst.push(archive.append(input(done++)));
    await Promise.all(burst);
  }
  const c = process.cpuUsage(c0);
  const n = chunk;
  out.push({
    records: done,
    cpuUsPerAppend: Math.round(((c.user + c.system) / n) * 10) / 10,
    wallUsPerAppend: Math.round((((performance.now() - t0) * 1000) / n) * 10) / 10,
  });
  console.error(JSON.stringify(out[out.length - 1]));
}
await storage.close();
rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ ok: true, repo, records, pairs, inFlight, chunks: out }));
