// `npm run build`: compile the runtime (not the tests) to dist/ with tsc and
// copy what is not TypeScript (the web pages' static files). Plain JS so it
// runs without a TypeScript loader. dist/.built marks a finished build: the
// launcher bin/parley runs dist/ only when no source is newer than it.
import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
rmSync(`${root}/dist`, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', `${root}/tsconfig.build.json`], {
  stdio: 'inherit',
  cwd: root,
});
cpSync(`${root}/adapters/http/static`, `${root}/dist/adapters/http/static`, {
  recursive: true,
});
writeFileSync(`${root}/dist/.built`, `${new Date().toISOString()}\n`);
console.error('built dist/');
