// Black-box, issue 20 "Also": passwords are never taken from the command
// line, where every local user sees them in ps, without a warning;
// PARLEY_PASSWORD and stdin are the documented ways (docs/configuration.md).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli, uniqueName } from '../helpers.ts';

describe('security: passwords on the command line (issue 20, Also)', function () {
  this.timeout(60_000);
  let dataDir: string;
  before(() => {
    dataDir = path.join(mkdtempSync(path.join(os.tmpdir(), 'parley-ops-pw-')), 'data');
  });
  after(() => rmSync(path.dirname(dataDir), { recursive: true, force: true }));

  const WARNING = /warning: a password given as an argument is visible to other local users/;

  it('`user add <name> <password>` works but warns on stderr that ps shows it', async () => {
    const r = await runCli(['--data-dir', dataDir, 'user', 'add', uniqueName('arg'), 's3cret']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, WARNING);
    assert.match(r.stderr, /PARLEY_PASSWORD or stdin/);
  });

  it('PARLEY_PASSWORD and stdin: no warning', async () => {
    let r = await runCli(['--data-dir', dataDir, 'user', 'add', uniqueName('env')], 30_000, {
      env: { PARLEY_PASSWORD: 's3cret' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, WARNING);
    r = await runCli(['--data-dir', dataDir, 'user', 'passwd', uniqueName('nobody')], 30_000, {
      input: 'new-pw\n',
    });
    assert.doesNotMatch(r.stderr, WARNING);
    assert.match(r.stderr, /no user/, 'the password came from stdin; the account does not exist');
  });
});
