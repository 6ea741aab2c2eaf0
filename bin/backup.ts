import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { Level } from 'level';
import { BrokerError, type Broker } from '../broker/index.ts';

/**
 * Backups of the embedded store (`parley backup DIR`, `parley restore DIR`).
 *
 * A backup is a directory: `store/`, a LevelDB database holding every record
 * of the node's store as it was at one instant (EmbeddedStorage.backup: one
 * iterator reads LevelDB's snapshot while the node keeps serving), and
 * `parley-backup.json`, what it is. Restoring copies `store/` into the data
 * directory of a stopped node; the store it replaces is kept beside it.
 * MQTT state (`dataDir/mqtt`, a LevelDB database of its own: retained
 * messages, persistent sessions and their queues, wills) goes to `mqtt/` the
 * same way, from its own snapshot (docs/operations.md).
 */
export const MANIFEST = 'parley-backup.json';

export interface BackupManifest {
  format: 1;
  createdAt: string;
  domain: string;
  version: string;
  records: number;
  /** records of the MQTT database in `mqtt/`; absent: the backup has no MQTT state (none on the node, or an older backup) */
  mqttRecords?: number;
}

/** Copy a LevelDB database record by record into a new one at `dir`, from one iterator (its snapshot). */
export async function copyLevel(
  db: Level<string, Buffer>,
  dir: string,
): Promise<{ records: number }> {
  const target = new Level<Buffer, Buffer>(dir, {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
    errorIfExists: true,
  });
  await target.open();
  let records = 0;
  const it = db.iterator<Buffer, Buffer>({ keyEncoding: 'buffer', valueEncoding: 'buffer' });
  try {
    for (;;) {
      const entries = await it.nextv(1000);
      if (entries.length === 0) break;
      await target.batch(entries.map(([key, value]) => ({ type: 'put' as const, key, value })));
      records += entries.length;
    }
  } finally {
    await it.close();
    await target.close();
  }
  return { records };
}

type MqttBackup = (dir: string) => Promise<{ records: number }>;
const mqttBackups = new WeakMap<Broker, MqttBackup>();

/** How `backup` copies the MQTT state of this broker's node: the running node's open database (bin/mqtt.ts), or the files when none runs. */
export function setMqttBackup(broker: Broker, fn: MqttBackup): void {
  mqttBackups.set(broker, fn);
}

export function mqttBackupOf(broker: Broker): MqttBackup | undefined {
  return mqttBackups.get(broker);
}

/** With no node running: open `dataDir/mqtt` (LevelDB's lock: nobody else has it) and copy it; nothing when there is none. */
export function offlineMqttBackup(dataDir: string): MqttBackup | undefined {
  const src = path.join(dataDir, 'mqtt');
  if (!existsSync(path.join(src, 'CURRENT'))) return undefined;
  return async (dir) => {
    const db = new Level<string, Buffer>(src, { valueEncoding: 'buffer', createIfMissing: false });
    await db.open();
    try {
      return await copyLevel(db, dir);
    } finally {
      await db.close();
    }
  };
}

function emptyOrAbsent(dir: string): boolean {
  return !existsSync(dir) || readdirSync(dir).length === 0;
}

/** Make the backup directory (0700: it holds SCRAM keys and messages) and copy the store into it. */
export async function backupStore(
  backup: (dir: string) => Promise<{ records: number }>,
  dir: string,
  meta: { domain: string; version: string },
  mqtt?: MqttBackup,
): Promise<BackupManifest & { dir: string }> {
  if (!path.isAbsolute(dir))
    throw new BrokerError('bad-request', `backup directory must be an absolute path: ${dir}`);
  if (!emptyOrAbsent(dir))
    throw new BrokerError('conflict', `backup directory ${dir} exists and is not empty`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { records } = await backup(path.join(dir, 'store'));
  // Two databases, two snapshots a moment apart: each is consistent in itself (an MQTT session never refers to a store record).
  const mqttRecords = mqtt ? (await mqtt(path.join(dir, 'mqtt'))).records : undefined;
  const manifest: BackupManifest = {
    format: 1,
    createdAt: new Date().toISOString(),
    domain: meta.domain,
    version: meta.version,
    records,
    ...(mqttRecords !== undefined && { mqttRecords }),
  };
  writeFileSync(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 2) + '\n', {
    mode: 0o600,
  });
  return { ...manifest, dir };
}

/**
 * Put a backup in place of the store of `dataDir` (the node must be stopped:
 * the caller checks). The current store, if any, is renamed to
 * `store.before-restore-<time>` rather than deleted.
 */
export function restoreStore(
  dir: string,
  dataDir: string,
): { manifest: BackupManifest; replaced?: string; mqttReplaced?: string } {
  const file = path.join(dir, MANIFEST);
  if (!existsSync(file) || !existsSync(path.join(dir, 'store')))
    throw new Error(`${dir} is not a parley backup (no ${MANIFEST} and store/)`);
  const manifest = JSON.parse(readFileSync(file, 'utf8')) as BackupManifest;
  if (manifest.format !== 1)
    throw new Error(`${file}: unknown backup format ${String(manifest.format)}`);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  /** Put `name` of the backup in place of the data directory's, keeping the old one beside it. */
  const put = (name: string): string | undefined => {
    const target = path.join(dataDir, name);
    let kept: string | undefined;
    if (!emptyOrAbsent(target)) {
      kept = `${target}.before-restore-${stamp}`;
      renameSync(target, kept);
    }
    cpSync(path.join(dir, name), target, { recursive: true });
    return kept;
  };
  const replaced = put('store');
  // MQTT state only when the backup has it: an older backup leaves the node's MQTT state alone.
  const mqttReplaced = existsSync(path.join(dir, 'mqtt')) ? put('mqtt') : undefined;
  return { manifest, ...(replaced && { replaced }), ...(mqttReplaced && { mqttReplaced }) };
}
