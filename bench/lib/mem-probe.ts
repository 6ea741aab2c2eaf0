// Force a full garbage collection in a running server and read how much heap it then holds: the memory
// figure that neither uncollected garbage nor an allocator's free lists move. One spec per server, made by
// bench/servers.ts (`Server.memProbe`):
//   parley:PORT       Node's inspector on 127.0.0.1:PORT (the server started with --inspect):
//                     HeapProfiler.collectGarbage (the collection bin/reclaim.ts runs, which also returns
//                     freed pages), then process.memoryUsage().heapUsed
//   prosody:CONFIG    `prosodyctl --config CONFIG shell`: collectgarbage("collect") twice, then
//                     collectgarbage("count") (the Lua heap; KiB)
//   ejabberd:NODE     erl_call on the node (as the ejabberd user, whose cookie the node has):
//                     garbage_collect() of every process, then erlang:memory(total)
// Returns undefined when the probe fails (the RSS figures stand alone then); never throws.
import { spawnSync } from 'node:child_process';
import WebSocket from 'ws';

async function parleyHeap(port: number): Promise<number> {
  const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as {
    webSocketDebuggerUrl: string;
  }[];
  const ws = new WebSocket(list[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  let id = 0;
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<any>((resolve, reject) => {
      const my = ++id;
      const onMsg = (d: WebSocket.RawData) => {
        const m = JSON.parse(d.toString());
        if (m.id !== my) return;
        ws.off('message', onMsg);
        if (m.error) reject(new Error(m.error.message));
        else resolve(m.result);
      };
      ws.on('message', onMsg);
      ws.send(JSON.stringify({ id: my, method, params }));
    });
  try {
    await call('HeapProfiler.collectGarbage');
    const r = await call('Runtime.evaluate', {
      expression: 'process.memoryUsage().heapUsed',
      returnByValue: true,
    });
    return Number(r.result.value);
  } finally {
    ws.close();
  }
}

function prosodyHeap(config: string): number {
  const r = spawnSync('prosodyctl', ['--config', config, 'shell'], {
    input:
      '>collectgarbage("collect"); collectgarbage("collect"); return collectgarbage("count")\n',
    encoding: 'utf8',
    timeout: 120_000,
  });
  const m = /(\d+(?:\.\d+)?)/.exec(r.stdout.split('\n').find((l) => /Result|\d/.test(l)) ?? '');
  if (!m) throw new Error(`prosodyctl shell: ${r.stdout}${r.stderr}`);
  return Math.round(Number(m[1]) * 1024);
}

function ejabberdHeap(node: string): number {
  const id = (flag: string) =>
    Number(spawnSync('id', [flag, 'ejabberd'], { encoding: 'utf8' }).stdout.trim());
  const home = spawnSync('getent', ['passwd', 'ejabberd'], { encoding: 'utf8' }).stdout.split(
    ':',
  )[5];
  const r = spawnSync('erl_call', ['-sname', node, '-e'], {
    input: '[erlang:garbage_collect(P) || P <- erlang:processes()], erlang:memory(total).\n',
    encoding: 'utf8',
    timeout: 120_000,
    ...(process.getuid?.() === 0
      ? { uid: id('-u'), gid: id('-g'), env: { ...process.env, HOME: home }, cwd: home }
      : {}),
  });
  const m = /\{ok,\s*(\d+)\}/.exec(r.stdout);
  if (!m) throw new Error(`erl_call: ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

export async function forceGcHeapBytes(spec: string): Promise<number | undefined> {
  const i = spec.indexOf(':');
  const kind = spec.slice(0, i);
  const arg = spec.slice(i + 1);
  try {
    if (kind === 'parley') return await parleyHeap(Number(arg));
    if (kind === 'prosody') return prosodyHeap(arg);
    if (kind === 'ejabberd') return ejabberdHeap(arg);
  } catch (e) {
    process.stderr.write(`mem probe ${spec}: ${(e as Error).message}\n`);
  }
  return undefined;
}
