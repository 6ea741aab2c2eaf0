// `parley --json …` for the CLI suites: every answer parsed with a schema
// (issue 25: every command's --json output is validated), failures included.
import assert from 'node:assert/strict';
import { z } from 'zod';
import { runCli } from '../helpers.ts';

/** What every command prints on stdout with --json when it fails (exit code non-zero). */
export const Failure = z.strictObject({
  ok: z.literal(false),
  error: z.string(),
  code: z.string().optional(),
});

/** `parley --data-dir DIR --json ARGS`: exit 0 and stdout parsed with `schema`. */
export async function cliJson<T extends z.ZodType>(
  schema: T,
  dataDir: string,
  args: string[],
): Promise<z.infer<T>> {
  const r = await runCli(['--data-dir', dataDir, '--json', ...args]);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return schema.parse(JSON.parse(r.stdout));
}

/** `parley --data-dir DIR --json ARGS` that must fail: exit 1 and the typed failure; returns its `code`. */
export async function cliFailure(dataDir: string, args: string[]): Promise<string | undefined> {
  const r = await runCli(['--data-dir', dataDir, '--json', ...args]);
  assert.equal(r.code, 1, `${args.join(' ')} should fail: ${r.stderr}${r.stdout}`);
  return Failure.parse(JSON.parse(r.stdout)).code;
}
