import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BrokerError } from '../broker/index.ts';

/**
 * Backups of the embedded store (`parley backup DIR`, `parley restore DIR`).
 *
 * A backup is a directory: `store/`, a LevelDB database holding every record
 * of the node's store as it was at one instant (EmbeddedStorage.backup: one
 * iterator reads LevelDB's snapshot while the node keeps serving), and
 * `parley-backup.json`, what it is. Restoring copies `store/` into the data
 * directory of a stopped node; the store it replaces is kept beside it.
 * MQTT state (`dataDir/mqtt`: retained messages, persistent sessions) is not
 * part of it (docs/operations.md).
 */
export const MANIFEST = 'parley-backup.json';

export interface BackupManifest {
  format: 1;
  createdAt: string;
  domain: string;
  version: string;
  records: number;
}

function emptyOrAbsent(dir: string): boolean {
  return !existsSync(dir) || readdirSync(dir).length === 0;
}

/** Make the backup directory (0700: it holds SCRAM keys and messages) and copy the store into it. */
export async function backupStore(
  backup: (dir: string) => Promise<{ records: number }>,
  dir: string,
  meta: { domain: string; version: string },
): Promise<BackupManifest & { dir: string }> {
  if (!path.isAbsolute(dir)) throw new BrokerError('bad-request', `backup directory must be an absolute path: ${dir}`);
  if (!emptyOrAbsent(dir)) throw new BrokerError('conflict', `backup directory ${dir} exists and is not empty`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { records } = await backup(path.join(dir, 'store'));
  const manifest: BackupManifest = { format: 1, createdAt: new Date().toISOString(), domain: meta.domain, version: meta.version, records };
  writeFileSync(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600 });
  return { ...manifest, dir };
}

/**
 * Put a backup in place of the store of `dataDir` (the node must be stopped:
 * the caller checks). The current store, if any, is renamed to
 * `store.before-restore-<time>` rather than deleted.
 */
export function restoreStore(dir: string, dataDir: string): { manifest: BackupManifest; replaced?: string } {
  const file = path.join(dir, MANIFEST);
  if (!existsSync(file) || !existsSync(path.join(dir, 'store'))) throw new Error(`${dir} is not a parley backup (no ${MANIFEST} and store/)`);
  const manifest = JSON.parse(readFileSync(file, 'utf8')) as BackupManifest;
  if (manifest.format !== 1) throw new Error(`${file}: unknown backup format ${String(manifest.format)}`);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const store = path.join(dataDir, 'store');
  let replaced: string | undefined;
  if (!emptyOrAbsent(store)) {
    replaced = `${store}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    renameSync(store, replaced);
  }
  cpSync(path.join(dir, 'store'), store, { recursive: true });
  return { manifest, ...(replaced && { replaced }) };
}
