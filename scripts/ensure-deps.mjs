// Runs before `npm start`: a fresh clone has no node_modules yet.
// Plain JS on purpose: it must run before tsx is installed.
import { existsSync } from 'node:fs';
import { execSync } from 'node:child_process';

if (!existsSync(new URL('../node_modules/tsx/package.json', import.meta.url))) {
  console.error('installing dependencies (npm ci)…');
  execSync('npm ci --no-audit --no-fund', { stdio: 'inherit', cwd: new URL('..', import.meta.url) });
}
