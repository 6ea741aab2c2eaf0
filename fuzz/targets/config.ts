/**
 * bin/config.ts: a YAML or JSON config file → a validated Config, the way
 * bin/parley.ts loads it (file < environment < flags). Contract: only
 * ConfigError escapes readConfigFile and validateConfig, and a Config that
 * passes has the types the schema promises.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, merge, readConfigFile, validateConfig } from '../../bin/config.ts';
import { check, type FuzzTarget } from '../target.ts';

// The yaml package reports unresolved tags and the like through
// process.emitWarning; thousands of them would flood the terminal and slow
// the loop. This is the worker thread's own process object.
process.emitWarning = () => {};

const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-fuzz-config-'));
const yamlFile = path.join(dir, 'parley.yaml');
const jsonFile = path.join(dir, 'parley.json');

/** What the test harness passes as flags (--host and ports 0), merged over the file. */
const flags = {
  dataDir: dir,
  xmpp: { tcp: { host: '127.0.0.1', port: 0 } },
  mqtt: { tcp: { host: '127.0.0.1', port: 0 } },
};

export const target: FuzzTarget = {
  about: 'config loader: YAML/JSON text → only ConfigError escapes, a passing config is well-typed',
  cover: ['/bin/config.ts', '/adapters/mqtt/acl.ts', '/yaml/dist/', '/zod/'],
  dict: [
    'domain: ',
    'dataDir: ',
    'xmpp:\n  ',
    'mqtt:\n  acl:\n    - { effect: allow, topic: "a/#", access: read }\n',
    'web:\n  bosh:\n    maxWait: ',
    'limits:\n  rosterMaxItems: ',
    'storage:\n  backend: mongodb\n',
    'tls:\n  cert: x\n',
    'modules:\n  m:\n    k: ',
    '__proto__: ',
    'constructor: ',
    '&a ',
    '*a',
    '<<: ',
    '!!binary ',
    '!!set ',
    '!!omap ',
    '!!timestamp ',
    '!!float ',
    '? ',
    '- ',
    '---\n',
    '...\n',
    '%YAML 1.1\n',
    '%TAG ! tag:x,2000:\n',
    '{',
    '}',
    '[',
    ']',
    '"',
    "'",
    '|\n',
    '>-\n',
    '\n  ',
    '.inf',
    '.nan',
    '0x1F',
    '0o17',
    '~',
    'null',
    'yes',
  ],
  maxLen: 4096,
  fuzz(data) {
    // One byte picks the format: most inputs are YAML.
    const json = data.length > 0 && data[0] === 0x7b && data.length % 3 === 0;
    const file = json ? jsonFile : yamlFile;
    writeFileSync(file, data);
    try {
      const raw = readConfigFile(file);
      check(
        raw !== null && typeof raw === 'object' && !Array.isArray(raw),
        'readConfigFile returned a non-mapping',
      );
      const cfg = validateConfig(merge(raw, flags));
      check(typeof cfg.domain === 'string' && cfg.domain.length > 0, 'domain');
      check(
        Number.isInteger(cfg.xmpp.maxStanzaSize) && cfg.xmpp.maxStanzaSize >= 1024,
        'xmpp.maxStanzaSize',
      );
      check(Array.isArray(cfg.mqtt.acl), 'mqtt.acl');
      check(path.isAbsolute(cfg.dataDir), 'dataDir not absolute');
      check(cfg.mqtt.minKeepaliveSeconds <= cfg.mqtt.maxKeepaliveSeconds, 'keepalive bounds');
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
    }
  },
};
