// Closed-loop (window) and fixed-rate drivers shared by the chat-like workloads.
// A message body is "<flow> <send time ms>"; the receiver hands it back here.
import { writeFileSync } from 'node:fs';
import { cpuMicros, now, percentiles, sleep, syscallCounts } from './common.ts';

/** PARLEY_BENCH_LAT_DUMP=FILE: write every measured message's send time and latency there (analysis aid). */
const DUMP = process.env.PARLEY_BENCH_LAT_DUMP;

export interface FlowOptions {
  flows: number;
  /** 'window': each flow keeps `window` messages in flight; 'rate': `rate` msgs/s in total, spread over flows */
  mode: 'window' | 'rate';
  window: number;
  rate: number;
  warmupMs: number;
  durationMs: number;
  /** how many receipts one message produces (fan-out) */
  copies?: number;
  /** fan-out: one latency per message, send → its last copy (else one per copy) */
  lastCopy?: boolean;
  send: (flow: number, body: string) => void;
  /** the server's pid: its CPU time over the measured window is reported per message received */
  serverPid?: number;
}

/** The server's CPU time in µs; NaN when there is none to read (no pid, or it is gone). */
function serverCpu(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    return cpuMicros(pid);
  } catch {
    return NaN;
  }
}

/** The server's read and write system calls so far; undefined when there is nothing to read. */
function serverSyscalls(pid: number | undefined): { reads: number; writes: number } | undefined {
  if (!pid) return undefined;
  try {
    return syscallCounts(pid);
  } catch {
    return undefined;
  }
}

export class FlowDriver {
  private readonly o: FlowOptions;
  private readonly inflight: Int32Array;
  private running = false;
  private measuring = false;
  private received = 0;
  private sent = 0;
  private readonly lat: number[] = [];
  private readonly sendAt: number[] = [];
  private nextFlow = 0;
  private readonly pending: Int32Array;
  /** copies seen per message in flight (lastCopy), by its send stamp */
  private readonly copiesSeen = new Map<string, number>();
  /** messages whose last copy arrived while measuring */
  private completed = 0;

  constructor(o: FlowOptions) {
    this.o = o;
    this.inflight = new Int32Array(o.flows);
    this.pending = new Int32Array(o.flows);
  }

  private sendOne(flow: number): void {
    this.inflight[flow] += this.o.copies ?? 1;
    this.o.send(flow, `${flow} ${now().toFixed(3)}`);
  }

  /** Hand a received body back. */
  receive(body: string): void {
    const sp = body.indexOf(' ');
    const flow = Number(body.slice(0, sp));
    const t = Number(body.slice(sp + 1));
    const n = now();
    this.inflight[flow]--;
    let last = true;
    if (this.o.lastCopy && (this.o.copies ?? 1) > 1) {
      const key = body.slice(sp + 1);
      const seen = (this.copiesSeen.get(key) ?? 0) + 1;
      last = seen >= (this.o.copies ?? 1);
      if (last) this.copiesSeen.delete(key);
      else this.copiesSeen.set(key, seen);
    }
    if (this.measuring) {
      this.received++;
      if (last) {
        this.completed++;
        this.lat.push(n - t);
        if (DUMP) this.sendAt.push(t);
      }
    }
    if (this.running && this.o.mode === 'window') {
      // one new message once all copies of one message came back
      const copies = this.o.copies ?? 1;
      if (++this.pending[flow] >= copies) {
        this.pending[flow] = 0;
        this.sendOne(flow);
      }
    }
  }

  async run(): Promise<Record<string, unknown>> {
    const o = this.o;
    this.running = true;
    let timer: NodeJS.Timeout | undefined;
    const start = now();
    if (o.mode === 'window') {
      for (let f = 0; f < o.flows; f++) for (let k = 0; k < o.window; k++) this.sendOne(f);
    } else {
      timer = setInterval(() => {
        const due = Math.floor(((now() - start) * o.rate) / 1000) - this.sent;
        for (let k = 0; k < due; k++) {
          this.sendOne(this.nextFlow);
          this.nextFlow = (this.nextFlow + 1) % o.flows;
        }
        this.sent += Math.max(0, due);
      }, 1);
    }
    await sleep(o.warmupMs);
    this.measuring = true;
    const t0 = now();
    const cpu0 = serverCpu(o.serverPid);
    const own0 = process.cpuUsage();
    const io0 = serverSyscalls(o.serverPid);
    await sleep(o.durationMs);
    const t1 = now();
    const cpu1 = serverCpu(o.serverPid);
    const own = process.cpuUsage(own0);
    const io1 = serverSyscalls(o.serverPid);
    this.measuring = false;
    const received = this.received;
    this.running = false;
    if (timer) clearInterval(timer);
    // let in-flight messages land so the next run starts on a quiet server
    const drainUntil = now() + 3000;
    while (now() < drainUntil && this.inflight.some((x) => x > 0)) await sleep(20);
    if (DUMP) {
      // raw samples for analysis: send time on the monotonic clock (µs, as V8's --cpu-prof timestamps) and latency (ms)
      const off = Number(process.hrtime.bigint() / 1000n) - now() * 1000;
      writeFileSync(
        DUMP,
        this.lat
          .map((l, i) => `${Math.round(this.sendAt[i] * 1000 + off)} ${l.toFixed(3)}`)
          .join('\n') + '\n',
      );
    }
    const lost = this.inflight.reduce((a, b) => a + b, 0);
    return {
      msgsPerSec: Math.round((received / (t1 - t0)) * 1000),
      received,
      ...(this.o.lastCopy ? { messagesCompleted: this.completed } : {}),
      latencyMs: percentiles(this.lat),
      undrained: lost,
      mode: o.mode,
      window: o.mode === 'window' ? o.window : undefined,
      offeredRate: o.mode === 'rate' ? o.rate : undefined,
      measuredSec: Math.round(t1 - t0) / 1000,
      // Server CPU (all its threads) per message received in the measured window, and the share of one core it used.
      serverCpuUsPerMsg:
        o.serverPid && received > 0 ? Math.round(((cpu1 - cpu0) / received) * 10) / 10 : undefined,
      serverCpuShare: o.serverPid
        ? Math.round(((cpu1 - cpu0) / ((t1 - t0) * 1000)) * 100) / 100
        : undefined,
      // the generator's own share of a core: near 1, the generator (not the server) is the limit
      generatorCpuShare: Math.round(((own.user + own.system) / ((t1 - t0) * 1000)) * 100) / 100,
      // Read and write system calls of the server (sockets and its store; /proc/PID/io) per message received.
      serverSyscallsPerMsg:
        io0 && io1 && received > 0
          ? {
              reads: Math.round(((io1.reads - io0.reads) / received) * 100) / 100,
              writes: Math.round(((io1.writes - io0.writes) / received) * 100) / 100,
            }
          : undefined,
    };
  }
}
