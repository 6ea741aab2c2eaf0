import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package's name and version, read once from package.json: the nearest
 * one above this file (bin/ in a checkout, dist/bin/ once compiled). The node
 * reports it (XEP-0092, /healthz, the start log); adapters get it through the
 * broker, never by importing bin/.
 */
function readPackage(): { name: string; version: string } {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const f = path.join(dir, 'package.json');
    if (existsSync(f)) {
      const pkg = JSON.parse(readFileSync(f, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'parley' && typeof pkg.version === 'string')
        return { name: pkg.name, version: pkg.version };
    }
    const up = path.dirname(dir);
    if (up === dir) return { name: 'parley', version: '0.0.0-unknown' };
    dir = up;
  }
}

export const PACKAGE = readPackage();
