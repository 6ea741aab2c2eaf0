import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * A fresh process (the patch is process-wide and depends on load order, which
 * this test process, with mqtt.js loaded, does not have): import the adapter's
 * entry as bin/ does, then let mqtt-packet parse a PINGREQ through the same
 * `debug` and report what the loggers are.
 */
const child = `
import { MqttServer } from './adapters/mqtt/index.ts';
import { loadedTooEarly, quietLogger } from './adapters/mqtt/quiet-debug.ts';
import { createRequire } from 'node:module';
const fromAedes = createRequire(createRequire(import.meta.url).resolve('aedes'));
const mqttPacket = fromAedes('mqtt-packet');
const debug = createRequire(fromAedes.resolve('mqtt-packet'))('debug');
const parser = mqttPacket.parser();
let packets = 0;
parser.on('packet', () => packets++);
parser.parse(Buffer.from([0xc0, 0x00]));
const other = debug('parley:test');
other('other namespace says hi');
console.log(JSON.stringify({
  server: typeof MqttServer,
  packets,
  loadedTooEarly,
  parserQuiet: debug('mqtt-packet:parser') === quietLogger,
  otherQuiet: other === quietLogger,
  api: [typeof debug.enable, typeof debug.disable, typeof debug.enabled, debug.default === debug],
}));
`;

async function inChild(
  DEBUG: string | undefined,
): Promise<{ out: Record<string, unknown>; stderr: string }> {
  const env = { ...process.env };
  delete env.DEBUG;
  if (DEBUG !== undefined) env.DEBUG = DEBUG;
  const { stdout, stderr } = await run(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', child],
    {
      cwd: repo,
      env,
      timeout: 60_000,
    },
  );
  return { out: JSON.parse(stdout.trim().split('\n').pop()!), stderr };
}

describe('mqtt: quiet debug loggers (quiet-debug.ts)', function () {
  this.timeout(60_000);

  it('mqtt-packet gets an empty logger when its namespace is off, loaded after the patch', async () => {
    const { out, stderr } = await inChild(undefined);
    assert.equal(out.server, 'function');
    assert.equal(out.packets, 1, 'mqtt-packet still parses');
    assert.deepEqual(out.loadedTooEarly, []);
    assert.equal(out.parserQuiet, true);
    assert.equal(out.otherQuiet, true);
    assert.deepEqual(
      out.api,
      ['function', 'function', 'function', true],
      "the rest of debug's export is the original's",
    );
    assert.equal(stderr, '');
  });

  it('DEBUG=mqtt-packet:* still traces packets; other namespaces stay quiet', async () => {
    const { out, stderr } = await inChild('mqtt-packet:*');
    assert.equal(out.parserQuiet, false);
    assert.equal(out.otherQuiet, true);
    assert.match(stderr, /mqtt-packet:parser/);
    assert.doesNotMatch(stderr, /other namespace says hi/);
  });

  it('DEBUG for another namespace gives that one a real logger and mqtt-packet none', async () => {
    const { out, stderr } = await inChild('parley:*');
    assert.equal(out.parserQuiet, true);
    assert.equal(out.otherQuiet, false);
    assert.match(stderr, /parley:test other namespace says hi/);
    assert.doesNotMatch(stderr, /mqtt-packet/);
  });
});
