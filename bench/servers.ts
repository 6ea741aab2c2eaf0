// Start, seed and stop the servers the runner compares. Every server binds
// 127.0.0.1 only, runs pinned to core 0 (`taskset -c 0`) and is stopped by
// the pid or control command of the instance we started.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { sleep } from './lib/common.ts';

export const SERVER_CORE = '0';
export const GENERATOR_CORE = '1';

export interface Ports {
  xmpp?: number;
  mqtt?: number;
  /** HTTPS with an XEP-0363 upload service at upload.localhost */
  https?: number;
  /** plain HTTP (Parley: /metrics) */
  http?: number;
}

export interface Server {
  readonly name: string;
  readonly protocols: ('xmpp' | 'mqtt')[];
  /** does the MQTT side need CONNECT credentials (accounts u1…) */
  readonly mqttAuth: boolean;
  ports: Ports;
  pid: number;
  /** the CA (or self-signed certificate) its HTTPS listener's certificate checks against, when it has one */
  caFile?: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** accounts u1…uN with password pw, created the server's own way */
  seed(n: number): Promise<void>;
  /** how bench/lib/mem-probe.ts forces a full collection in it and reads its heap (XMPP servers) */
  readonly memProbe?: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitPort(port: number, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect({ host: '127.0.0.1', port });
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`port ${port} did not open`);
}

function sh(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

async function waitExit(child: ChildProcess | undefined, ms: number): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  await Promise.race([exited, sleep(ms)]);
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  // the next start of the same data directory needs its lock (LevelDB) released: wait for the exit
  await Promise.race([exited, sleep(10_000)]);
}

function users(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `u${i + 1}`);
}

/**
 * Node flags for plain aedes: the GC flag Parley's launcher (bin/parley;
 * docs/configuration.md "Node runtime flags") picks for a process pinned to
 * one core, and the semi-space size that measured best for aedes (32 MB;
 * Parley's 64 MB was a few per cent slower for it, bench/README.md).
 */
export const NODE_FLAGS = ['--max-semi-space-size=32', '--single-threaded-gc'];

/** Parley from this checkout: `bin/parley start` (the launcher `npm start` runs), plaintext allowed (requireTls: false), warn logs. */
export class ParleyServer implements Server {
  readonly name = 'parley';
  readonly protocols: ('xmpp' | 'mqtt')[];
  readonly mqttAuth = true;
  ports: Ports = {};
  pid = 0;
  /** start with Node's inspector on 127.0.0.1 (a free port), for bench/lib/mem-probe.ts; the runner sets it for the MUC memory workloads */
  inspect = false;
  private inspectPort = 0;
  get memProbe(): string | undefined {
    return this.inspectPort ? `parley:${this.inspectPort}` : undefined;
  }
  private child?: ChildProcess;
  constructor(
    private readonly dir: string,
    private readonly repo: string,
    private readonly mqtt: boolean,
    private readonly cpuProfDir?: string,
    /** extra node flags and a file for stdout (bench/dev-server.ts) */
    private readonly dev: { nodeArgs?: string[]; stdoutFd?: number } = {},
  ) {
    this.protocols = mqtt ? ['xmpp', 'mqtt'] : ['xmpp'];
    mkdirSync(dir, { recursive: true });
    // uploads: no quota or daily volume, so the upload workloads can run as long as they like
    writeFileSync(
      path.join(dir, 'parley.yaml'),
      `xmpp: { requireTls: false }\nmodules: { upload: { quotaBytes: 0, dailyBytes: 0, maxAgeDays: 1 } }\n${process.env.PARLEY_BENCH_CONFIG ?? ''}\n`,
    );
    this.caFile = path.join(dir, 'data', 'tls', 'ca.pem'); // the local CA the node generates on first start
  }
  caFile: string;
  async start(): Promise<void> {
    this.ports = { xmpp: await freePort(), mqtt: this.mqtt ? await freePort() : undefined };
    // The launcher picks the Node flags (one core here: --single-threaded-gc) and execs node: same pid.
    const args = ['-c', SERVER_CORE, path.join(this.repo, 'bin/parley')];
    this.inspectPort = this.inspect ? await freePort() : 0;
    const extra = [
      ...(this.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', this.cpuProfDir] : []),
      ...(this.inspectPort ? [`--inspect=127.0.0.1:${this.inspectPort}`] : []),
      ...(this.dev.nodeArgs ?? []),
    ];
    args.push(
      '--config',
      path.join(this.dir, 'parley.yaml'),
      '--data-dir',
      path.join(this.dir, 'data'),
    );
    args.push(
      '--host',
      '127.0.0.1',
      '--xmpp-port',
      String(this.ports.xmpp),
      '--xmpps-port',
      String(await freePort()),
    );
    if (this.mqtt)
      args.push('--mqtt-port', String(this.ports.mqtt), '--mqtts-port', String(await freePort()));
    // --host alone would put HTTP and HTTPS on 5280 and 5443: a second server, or anything else there, would collide
    this.ports.https = await freePort();
    this.ports.http = await freePort();
    args.push('--http-port', String(this.ports.http), '--https-port', String(this.ports.https));
    args.push(
      '--admin-socket',
      path.join(this.dir, 'admin.sock'),
      '--log-level',
      process.env.PARLEY_BENCH_LOG ?? 'warn',
      'start',
    );
    this.child = spawn('taskset', args, {
      stdio: ['ignore', this.dev.stdoutFd ?? 'ignore', 'inherit'],
      cwd: this.repo,
      env: { ...process.env, PARLEY_NODE_ARGS: extra.join(' ') },
    });
    this.pid = this.child.pid!; // taskset execs sh, which execs node: same pid
    await waitPort(this.ports.xmpp!);
    if (this.ports.mqtt) await waitPort(this.ports.mqtt);
    // The admin socket is bound after the listeners; seeding right away once failed with ENOENT.
    const sock = path.join(this.dir, 'admin.sock');
    for (let i = 0; i < 200 && !existsSync(sock); i++) await sleep(50);
    if (!existsSync(sock)) throw new Error(`parley: no admin socket at ${sock}`);
  }
  async stop(): Promise<void> {
    this.child?.kill('SIGTERM');
    // closing 10,000 sessions takes longer than 10 s on a loaded machine
    await waitExit(this.child, 30_000);
  }
  /** Through the admin socket `parley user add` uses, one JSON request per line, batched. */
  async seed(n: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(path.join(this.dir, 'admin.sock'));
      let got = 0;
      s.on('connect', () =>
        s.write(
          users(n)
            .map((u) => JSON.stringify({ cmd: 'user.add', username: u, password: 'pw' }) + '\n')
            .join(''),
        ),
      );
      s.on('data', (d) => {
        got += d.toString().split('\n').length - 1;
        if (got >= n) {
          s.end();
          resolve();
        }
      });
      s.on('error', reject);
    });
  }
}

/** Prosody 0.12 from Debian: internal storage, mod_mam (archive everything), mod_offline, mod_pep (in Debian's default config too). */
export class ProsodyServer implements Server {
  readonly name: string;
  readonly protocols: ('xmpp' | 'mqtt')[] = ['xmpp'];
  readonly mqttAuth = false;
  ports: Ports = {};
  pid = 0;
  private child?: ChildProcess;
  constructor(
    private readonly dir: string,
    private readonly cert: { cert: string; key: string },
    /** false: a reference instance with mod_mam left out (Prosody's default module set) */
    private readonly mam = true,
  ) {
    this.name = mam ? 'prosody' : 'prosody-nomam';
  }
  private get cfg(): string {
    return path.join(this.dir, 'prosody.cfg.lua');
  }
  get caFile(): string {
    return this.cert.cert; // self-signed
  }
  get memProbe(): string {
    return `prosody:${this.cfg}`;
  }
  async start(): Promise<void> {
    mkdirSync(path.join(this.dir, 'data'), { recursive: true });
    this.ports = { xmpp: await freePort(), https: await freePort() };
    const d = this.dir;
    writeFileSync(
      this.cfg,
      `-- generated by bench/servers.ts
run_as_root = true
daemonize = false
pidfile = "${d}/prosody.pid"
data_path = "${d}/data"
log = { error = "${d}/error.log" }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { ${this.ports.xmpp} }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { ${this.ports.https} }
https_interfaces = { "127.0.0.1" }
https_ssl = { certificate = "${this.cert.cert}", key = "${this.cert.key}" }
admin_socket = "${d}/admin.sock"
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "presence", "message", "iq", "offline", "pep", ${this.mam ? '"mam", ' : ''}"admin_shell" }
modules_disabled = { "s2s" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
storage = "internal"
default_archive_policy = true
archive_expires_after = "1w"
max_archive_query_results = 50
ssl = { certificate = "${this.cert.cert}", key = "${this.cert.key}" }
VirtualHost "localhost"
  ssl = { certificate = "${this.cert.cert}", key = "${this.cert.key}" }
-- XEP-0363 for the upload workloads: 60 MB files, no daily or global quota to speak of
Component "upload.localhost" "http_file_share"
  http_file_share_size_limit = 60*1000*1000
  http_file_share_daily_quota = 1000*1000*1000*1000
  http_file_share_global_quota = 1000*1000*1000*1000
  http_file_share_expires_after = 3600
-- groupchat as Parley's defaults: history 20, every room archived (mod_muc_mam), no occupant limit
Component "conference.localhost" "muc"
  modules_enabled = { ${this.mam ? '"muc_mam"' : ''} }
  muc_log_all_rooms = true
  muc_room_default_history_length = 20
  max_history_messages = 20
`,
    );
    this.child = spawn('taskset', ['-c', SERVER_CORE, 'prosody', '--config', this.cfg, '-F'], {
      stdio: 'ignore',
    });
    this.pid = this.child.pid!;
    await waitPort(this.ports.xmpp!);
  }
  async stop(): Promise<void> {
    this.child?.kill('SIGTERM');
    await waitExit(this.child, 10_000);
  }
  /** `prosodyctl shell` against the running server, one user:create per line. */
  async seed(n: number): Promise<void> {
    const out = sh(
      'prosodyctl',
      ['--config', this.cfg, 'shell'],
      users(n)
        .map((u) => `user:create("${u}@localhost", "pw")`)
        .join('\n') + '\n',
    );
    const ok = (out.match(/OK: User created|already exists/g) ?? []).length;
    if (ok < n) throw new Error(`prosodyctl created ${ok}/${n} users`);
  }
}

/** ejabberd 23.01 from Debian: mnesia, mod_mam (default: always), mod_offline, no c2s shaper, one scheduler. */
export class EjabberdServer implements Server {
  readonly name: string;
  readonly protocols: ('xmpp' | 'mqtt')[] = ['xmpp'];
  readonly mqttAuth = false;
  ports: Ports = {};
  pid = 0;
  private readonly node: string;
  constructor(
    private readonly dir: string,
    private readonly certBundle: string,
    /** false: a reference instance without mod_mam */
    private readonly mam = true,
    /** added to the Erlang node name (bench/run.ts --work) */
    suffix = '',
  ) {
    this.name = mam ? 'ejabberd' : 'ejabberd-nomam';
    this.node = mam ? `ejbench${suffix}@localhost` : `ejbenchnomam${suffix}@localhost`;
  }
  get memProbe(): string {
    return `ejabberd:${this.node}`;
  }
  /**
   * ejabberdctl run directly as the ejabberd user. Run as root it switches
   * user through `su`, whose pam_limits resets the open-file limit to init's
   * (1,024 here), so 10,000 sessions failed at ~1,000; started as the user it
   * inherits the runner's raised limit.
   */
  private ctl(...args: string[]): string {
    const d = this.dir;
    const argv = [
      '-c',
      SERVER_CORE,
      'ejabberdctl',
      '-c',
      `${d}/ctl.cfg`,
      '-s',
      `${d}/spool`,
      '-l',
      `${d}/logs`,
      ...args,
    ];
    const asUser =
      process.getuid?.() === 0
        ? {
            uid: uid('ejabberd'),
            gid: gid('ejabberd'),
            cwd: d,
            env: { ...process.env, HOME: home('ejabberd'), USER: 'ejabberd', LOGNAME: 'ejabberd' },
          }
        : {};
    const r = spawnSync('taskset', argv, { encoding: 'utf8', timeout: 300_000, ...asUser });
    if (r.status !== 0)
      throw new Error(`ejabberdctl ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
    return r.stdout;
  }
  async start(): Promise<void> {
    const d = this.dir;
    mkdirSync(`${d}/spool`, { recursive: true });
    mkdirSync(`${d}/logs`, { recursive: true });
    this.ports = { xmpp: await freePort() };
    writeFileSync(
      `${d}/ejabberd.yml`,
      `# generated by bench/servers.ts
hosts: [localhost]
loglevel: warning
certfiles: ["${this.certBundle}"]
listen:
  - port: ${this.ports.xmpp}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 1024
    starttls: true
    max_stanza_size: 262144
    shaper: none
    access: c2s
access_rules:
  c2s: { allow: all }
  local: { allow: all }
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 1000
  c2s_shaper: none
auth_method: internal
auth_password_format: scram
default_db: mnesia
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_offline: { access_max_user_messages: max_user_offline_messages }
${this.mam ? '  mod_mam: { default: always, db_type: mnesia }\n' : ''}  mod_muc:
    access_create: all
    history_size: 20
    max_users: 20000
    default_room_options: { mam: ${this.mam}, max_users: 20000 }
`,
    );
    writeFileSync(
      `${d}/ctl.cfg`,
      `ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 +S 1:1 +SDio 1"\nERLANG_NODE=${this.node}\nEJABBERD_CONFIG_PATH=${d}/ejabberd.yml\nEJABBERD_PID_PATH=${d}/ejabberd.pid\nERL_MAX_PORTS=32000\n# 10,000 sessions need more than 1,024 descriptors\nulimit -n "$(ulimit -Hn)" 2>/dev/null || true\n`,
    );
    for (const p of [d, `${d}/spool`, `${d}/logs`, `${d}/ejabberd.yml`, `${d}/ctl.cfg`])
      chownSync(p, uid('ejabberd'), gid('ejabberd'));
    this.ctl('start');
    this.ctl('started');
    await waitPort(this.ports.xmpp!);
    const pids = sh('pgrep', ['-f', this.node]).trim().split('\n');
    const beam = pids
      .map(Number)
      .find(
        (p) =>
          existsSync(`/proc/${p}/comm`) &&
          readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('beam'),
      );
    if (!beam) throw new Error('ejabberd beam process not found');
    this.pid = beam;
  }
  async stop(): Promise<void> {
    try {
      this.ctl('stop');
      this.ctl('stopped');
    } catch {
      if (this.pid) process.kill(this.pid, 'SIGKILL');
    }
  }
  /** `ejabberdctl import_piefxis` of a XEP-0227 file (ejabberdctl register costs ~0.8 s per call). */
  async seed(n: number): Promise<void> {
    const file = `${this.dir}/users.xml`;
    writeFileSync(
      file,
      `<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>${users(
        n,
      )
        .map((u) => `<user name='${u}' password='pw'/>`)
        .join('')}</host></server-data>\n`,
    );
    chownSync(file, uid('ejabberd'), gid('ejabberd'));
    this.ctl('import_piefxis', file);
    const have = this.ctl('registered_users', 'localhost').trim().split('\n').length;
    if (have < n) throw new Error(`ejabberd has ${have}/${n} users`);
  }
}

/** Mosquitto 2.0 from Debian: anonymous, no persistence (no accounts in Parley's MQTT sense). */
export class MosquittoServer implements Server {
  readonly name = 'mosquitto';
  readonly protocols: ('xmpp' | 'mqtt')[] = ['mqtt'];
  readonly mqttAuth = false;
  ports: Ports = {};
  pid = 0;
  private child?: ChildProcess;
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }
  async start(): Promise<void> {
    this.ports = { mqtt: await freePort() };
    const conf = path.join(this.dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      `listener ${this.ports.mqtt} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nmax_queued_messages 1000\n`,
    );
    this.child = spawn('taskset', ['-c', SERVER_CORE, 'mosquitto', '-c', conf], {
      stdio: 'ignore',
    });
    this.pid = this.child.pid!;
    await waitPort(this.ports.mqtt!);
  }
  async stop(): Promise<void> {
    this.child?.kill('SIGTERM');
    await waitExit(this.child, 10_000);
  }
  async seed(): Promise<void> {}
}

/** Plain aedes (bench/aedes-plain.ts): in-memory persistence, no auth. */
export class AedesServer implements Server {
  readonly name = 'aedes';
  readonly protocols: ('xmpp' | 'mqtt')[] = ['mqtt'];
  readonly mqttAuth = false;
  ports: Ports = {};
  pid = 0;
  private child?: ChildProcess;
  constructor(private readonly repo: string) {}
  async start(): Promise<void> {
    this.ports = { mqtt: await freePort() };
    this.child = spawn(
      'taskset',
      [
        '-c',
        SERVER_CORE,
        process.execPath,
        ...NODE_FLAGS,
        '--import',
        'tsx',
        path.join(this.repo, 'bench/aedes-plain.ts'),
        '--port',
        String(this.ports.mqtt),
      ],
      {
        stdio: 'ignore',
        cwd: this.repo,
      },
    );
    this.pid = this.child.pid!;
    await waitPort(this.ports.mqtt!);
  }
  async stop(): Promise<void> {
    this.child?.kill('SIGTERM');
    await waitExit(this.child, 5000);
  }
  async seed(): Promise<void> {}
}

function uid(user: string): number {
  return Number(sh('id', ['-u', user]).trim());
}
function gid(user: string): number {
  return Number(sh('id', ['-g', user]).trim());
}
function home(user: string): string {
  return sh('getent', ['passwd', user]).trim().split(':')[5] ?? '/';
}

/** A self-signed certificate for the peers (Parley generates its own in its data dir). */
export function makeCert(dir: string): { cert: string; key: string; bundle: string } {
  mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const bundle = path.join(dir, 'bundle.pem');
  if (!existsSync(cert)) {
    sh('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '30',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,DNS:upload.localhost',
    ]);
  }
  writeFileSync(bundle, readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'));
  for (const p of [dir, cert, key, bundle]) chownSync(p, 0, 0);
  spawnSync('chmod', ['755', dir]);
  spawnSync('chmod', ['644', cert, key, bundle]);
  return { cert, key, bundle };
}

export function wipe(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
