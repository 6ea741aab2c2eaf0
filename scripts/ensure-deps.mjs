// Runs before `npm start`: a fresh clone has no node_modules yet.
// Plain JS on purpose: it must run before tsx is installed.
import { existsSync } from 'node:fs';
import { execSync } from 'node:child_process';

if (!existsSync(new URL('../node_modules/tsx/package.json', import.meta.url))) {
  console.error('installing dependencies…');
  const cwd = new URL('..', import.meta.url);
  try {
    execSync('npm ci --no-audit --no-fund', { stdio: 'inherit', cwd });
  } catch {
    // A lock file written by another npm version can be refused by `npm ci`.
    execSync('npm install --no-audit --no-fund', { stdio: 'inherit', cwd });
  }
}
