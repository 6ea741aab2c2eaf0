import { chmodSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../broker/index.ts';

/** Thrown when the node must not start on this directory; the message says why and what to run. */
export class UnsafeDirectoryError extends Error {}

const octal = (mode: number) => (mode & 0o777).toString(8).padStart(4, '0');

/** Who besides the owner may write in a directory of this mode, or undefined. */
function othersWrite(mode: number): string | undefined {
  if (mode & 0o002) return 'every local user';
  if (mode & 0o020) return 'its group';
  return undefined;
}

/**
 * Refuse a directory others can write in: they could replace the store, the
 * certificate or the admin socket (and collect the passwords the CLI sends
 * through it). The node never loosens or fixes this itself: a directory
 * someone else could write in may already hold their files.
 */
function refuseWritableByOthers(dir: string, what: string): void {
  const st = statSync(dir);
  if (!st.isDirectory()) throw new UnsafeDirectoryError(`${what} ${dir} is not a directory`);
  const who = othersWrite(st.mode);
  if (who) {
    throw new UnsafeDirectoryError(
      `${what} ${dir} is writable by ${who} (mode ${octal(st.mode)}); refusing to start. Run: chmod go-w ${dir} (or chmod 700 ${dir})`,
    );
  }
}

/**
 * The data directory holds SCRAM keys, message bodies, the TLS key and the
 * admin socket: it is created 0700 (files in it are 0600 through the umask
 * bin/parley.ts sets, and explicit modes where the node writes them), a
 * group- or world-writable one is refused, and one others can read or enter
 * (an older install under umask 022) is closed to 0700 with a warning.
 */
export function prepareDataDir(dataDir: string, adminSocket: string, log: Logger): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  refuseWritableByOthers(dataDir, 'data directory');
  const mode = statSync(dataDir).mode;
  if (mode & 0o077) {
    chmodSync(dataDir, 0o700);
    log.warn(
      { dir: dataDir, was: octal(mode) },
      'data directory was open to other local users: now 0700',
    );
  }
  const socketDir = path.dirname(adminSocket);
  if (path.resolve(socketDir) !== path.resolve(dataDir)) {
    mkdirSync(socketDir, { recursive: true, mode: 0o700 });
    refuseWritableByOthers(socketDir, 'admin socket directory');
  }
}
