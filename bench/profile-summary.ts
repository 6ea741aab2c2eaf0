// Summarise a V8 .cpuprofile (node --cpu-prof): self time by function, by
// file/package, and inclusive time of functions. Usable alone:
//   node --import tsx bench/profile-summary.ts FILE.cpuprofile
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

function where(url: string, repo: string): string {
  if (!url) return '(native/vm)';
  let u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm !== -1) {
    const rest = u.slice(nm + 13).split('/');
    return `npm:${rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (u.startsWith('node:')) return u;
  if (u.startsWith(repo)) u = path.relative(repo, u);
  return u;
}

export function summarizeProfile(file: string, repo: string, top = 15): string {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: ProfNode[];
    startTime: number;
    endTime: number;
    samples: number[];
  };
  const total = prof.samples.length || 1;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (n: ProfNode) =>
    `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url, repo)}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const byFile = new Map<string, number>();
  const incl = new Map<string, number>();
  for (const n of prof.nodes) {
    const h = n.hitCount ?? 0;
    if (!h) continue;
    self.set(label(n), (self.get(label(n)) ?? 0) + h);
    const w = n.callFrame.url ? where(n.callFrame.url, repo) : n.callFrame.functionName;
    byFile.set(w, (byFile.get(w) ?? 0) + h);
    // inclusive: every distinct function on this node's stack gets the hits once
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const l = label(byId.get(id)!);
      if (!seen.has(l)) {
        seen.add(l);
        incl.set(l, (incl.get(l) ?? 0) + h);
      }
    }
  }
  const pct = (h: number) => `${((h / total) * 100).toFixed(1).padStart(5)}%`;
  const lines: string[] = [
    `${total} samples over ${((prof.endTime - prof.startTime) / 1e6).toFixed(1)} s`,
    '',
    'Self time by function:',
  ];
  for (const [k, h] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top))
    lines.push(`  ${pct(h)}  ${k}`);
  lines.push('', 'Self time by file / package:');
  for (const [k, h] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, top))
    lines.push(`  ${pct(h)}  ${k}`);
  lines.push('', 'Inclusive time, Parley code (excluding the event loop roots):');
  const ours = [...incl]
    .filter(([k]) => /\s(adapters|broker|storage|cluster|bin)\//.test(k))
    .sort((a, b) => b[1] - a[1]);
  for (const [k, h] of ours.slice(0, top + 10)) lines.push(`  ${pct(h)}  ${k}`);
  lines.push('', 'Inclusive time, dependencies and runtime:');
  const deps = [...incl].filter(([k]) => /\s(npm:|node:)/.test(k)).sort((a, b) => b[1] - a[1]);
  for (const [k, h] of deps.slice(0, top)) lines.push(`  ${pct(h)}  ${k}`);
  return lines.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: profile-summary.ts FILE.cpuprofile [REPO]');
    process.exit(2);
  }
  console.log(
    summarizeProfile(
      file,
      path.resolve(
        process.argv[3] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'),
      ),
    ),
  );
}
