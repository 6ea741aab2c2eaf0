// Helpers for the web conformance suites: a raw RFC 7395 WebSocket, a strict
// namespace-aware parse of one frame, and a strict Prometheus text parser.
import { SaxesParser } from 'saxes';
import WebSocket from 'ws';

export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';

// ------------------------------------------------------------ XML frames ---

/** One element of a parsed frame, with namespaces resolved. */
export interface Node {
  name: string; // local name
  prefix: string;
  uri: string;
  attrs: Record<string, string>; // by qualified name, xmlns declarations included
  children: Node[];
  text: string;
  /** first child with this local name (and namespace, when given) */
  child(name: string, uri?: string): Node | undefined;
}

/**
 * Parse one WebSocket message as RFC 7395 §3.4 requires it: exactly one
 * complete element, every prefix declared inside the message itself (saxes
 * with namespaces fails on an unbound prefix), nothing but whitespace around.
 */
export function parseFrame(frame: string): Node {
  const sax = new SaxesParser({ xmlns: true, position: false });
  const stack: Node[] = [];
  const roots: Node[] = [];
  sax.on('error', (err) => {
    throw new Error(
      `frame is not well-formed XML with declared namespaces (${err.message}): ${frame}`,
    );
  });
  sax.on('opentag', (tag) => {
    const n: Node = {
      name: tag.local,
      prefix: tag.prefix,
      uri: tag.uri,
      attrs: Object.fromEntries(Object.entries(tag.attributes).map(([k, a]) => [k, a.value])),
      children: [],
      text: '',
      child(name, uri) {
        return this.children.find((c) => c.name === name && (uri === undefined || c.uri === uri));
      },
    };
    if (stack.length) stack[stack.length - 1].children.push(n);
    else roots.push(n);
    stack.push(n);
  });
  sax.on('text', (t) => {
    if (stack.length) stack[stack.length - 1].text += t;
    else if (t.trim()) throw new Error(`text outside the element: ${frame}`);
  });
  sax.on('closetag', () => void stack.pop());
  sax.write(frame).close();
  if (roots.length !== 1)
    throw new Error(`expected exactly one element, got ${roots.length}: ${frame}`);
  return roots[0];
}

// ------------------------------------------------------------- raw ws ---

/** A WebSocket speaking frames by hand. */
export class RawWs {
  readonly frames: string[] = [];
  closeCode?: number;
  private pos = 0;
  private wake: (() => void)[] = [];
  private isClosed = false;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d, isBinary) => {
      if (isBinary) throw new Error('binary frame from the server');
      this.frames.push(d.toString());
      for (const w of this.wake.splice(0)) w();
    });
    ws.on('close', (code) => {
      this.isClosed = true;
      this.closeCode = code;
      for (const w of this.wake.splice(0)) w();
    });
    ws.on('error', () => {});
  }

  /** Open with these subprotocols; rejects with `HTTP <status>` when the handshake is refused. */
  static connect(url: string, protocols: string[] = ['xmpp']): Promise<RawWs> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols);
      ws.once('open', () => resolve(new RawWs(ws)));
      ws.once('unexpected-response', (_req, res) => {
        reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode }));
        res.resume();
        ws.terminate();
      });
      ws.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  send(text: string): void {
    this.ws.send(text);
  }

  /** The next frame not read yet. */
  next(timeoutMs = 3000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.pos < this.frames.length) {
          clearTimeout(t);
          resolve(this.frames[this.pos++]);
        } else if (this.isClosed) {
          clearTimeout(t);
          reject(new Error(`socket closed; frames so far:\n  ${this.frames.join('\n  ')}`));
        } else this.wake.push(check);
      };
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `no frame within ${timeoutMs} ms; frames so far:\n  ${this.frames.join('\n  ')}`,
            ),
          ),
        timeoutMs,
      );
      check();
    });
  }

  /** Resolves with the close code once the server closed the WebSocket. */
  waitClosed(timeoutMs = 3000): Promise<number | undefined> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.isClosed) {
          clearTimeout(t);
          resolve(this.closeCode);
        } else this.wake.push(check);
      };
      const t = setTimeout(
        () => reject(new Error(`WebSocket still open after ${timeoutMs} ms`)),
        timeoutMs,
      );
      check();
    });
  }

  terminate(): void {
    this.ws.terminate();
  }
}

// ---------------------------------------------------------- Prometheus ---

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string;
  samples: Sample[];
}

const METRIC = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const SUFFIXES: Record<Family['type'], string[]> = {
  counter: ['', '_total'],
  gauge: [''],
  untyped: [''],
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
};

function parseValue(s: string, line: string): number {
  // Prometheus reads values with Go's strconv.ParseFloat, which ignores case in
  // NaN and Inf; prom-client writes `Nan` for an event-loop lag not yet measured.
  const special = s.toLowerCase();
  if (special === '+inf' || special === 'inf') return Infinity;
  if (special === '-inf') return -Infinity;
  if (special === 'nan') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s))
    throw new Error(`bad sample value ${JSON.stringify(s)} in: ${line}`);
  return Number(s);
}

/** `{a="x",b="y\"z"}` → labels; strict about quoting and escapes. */
function parseLabels(s: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    if (eq === -1) throw new Error(`bad labels in: ${line}`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`bad label name ${JSON.stringify(name)} in: ${line}`);
    if (name in labels) throw new Error(`label ${name} twice in: ${line}`);
    if (s[eq + 1] !== '"') throw new Error(`unquoted label value in: ${line}`);
    let v = '';
    let j = eq + 2;
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\') {
        const e = s[++j];
        if (e === 'n') v += '\n';
        else if (e === '\\' || e === '"') v += e;
        else throw new Error(`bad escape \\${e} in: ${line}`);
      } else v += s[j];
    }
    if (j >= s.length) throw new Error(`unterminated label value in: ${line}`);
    labels[name] = v;
    i = j + 1;
    if (i < s.length) {
      if (s[i] !== ',') throw new Error(`expected , between labels in: ${line}`);
      i++;
    }
  }
  return labels;
}

/**
 * A strict parser of the Prometheus text exposition format 0.0.4: HELP and
 * TYPE before a family's samples, sample names that belong to the declared
 * family, valid names, labels and values, no series twice, histogram
 * buckets cumulative and ending at +Inf = _count.
 */
export function parsePrometheus(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: Family | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) continue; // a plain comment
      const [, kind, name, rest] = m;
      if (!METRIC.test(name)) throw new Error(`bad metric name in: ${line}`);
      let f = families.get(name);
      if (!f) {
        f = { name, type: 'untyped', help: '', samples: [] };
        families.set(name, f);
      } else if (f !== current || f.samples.length)
        throw new Error(`${kind} for ${name} after its samples or twice: ${line}`);
      if (kind === 'TYPE') {
        if (!(rest in SUFFIXES)) throw new Error(`unknown type in: ${line}`);
        f.type = rest as Family['type'];
      } else f.help = rest;
      current = f;
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const [, name, , labelText, valueText] = m;
    if (!current || !SUFFIXES[current.type].some((suf) => name === current!.name + suf)) {
      throw new Error(`sample ${name} outside its family (current: ${current?.name ?? 'none'})`);
    }
    const labels = labelText ? parseLabels(labelText, line) : {};
    const key = `${name}{${Object.entries(labels)
      .sort()
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(',')}}`;
    if (seen.has(key)) throw new Error(`series twice: ${key}`);
    seen.add(key);
    current.samples.push({ name, labels, value: parseValue(valueText, line) });
  }
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, Sample[]>();
  const keyOf = (l: Record<string, string>) =>
    JSON.stringify(
      Object.entries(l)
        .filter(([k]) => k !== 'le')
        .sort(),
    );
  for (const s of f.samples) {
    const k = keyOf(s.labels);
    groups.set(k, [...(groups.get(k) ?? []), s]);
  }
  for (const samples of groups.values()) {
    const buckets = samples.filter((s) => s.name.endsWith('_bucket'));
    const count = samples.find((s) => s.name.endsWith('_count'));
    if (!count || !samples.some((s) => s.name.endsWith('_sum')))
      throw new Error(`${f.name}: _sum or _count missing`);
    let prevLe = -Infinity;
    let prevValue = 0;
    for (const b of buckets) {
      const le = parseValue(b.labels.le ?? '', `${f.name} le`);
      if (!(le > prevLe) || b.value < prevValue)
        throw new Error(`${f.name}: buckets not increasing and cumulative`);
      prevLe = le;
      prevValue = b.value;
    }
    if (prevLe !== Infinity || prevValue !== count.value)
      throw new Error(`${f.name}: the +Inf bucket must equal _count`);
  }
}

/** The value of one series (0 when absent: a counter not yet incremented). */
export function metric(
  families: Map<string, Family>,
  family: string,
  labels: Record<string, string> = {},
  sampleName = family,
): number {
  const f = families.get(family);
  if (!f) throw new Error(`no metric family ${family}`);
  return f.samples
    .filter(
      (s) => s.name === sampleName && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    )
    .reduce((n, s) => n + s.value, 0);
}

/** GET /metrics and parse it. */
export async function scrape(base: string): Promise<Map<string, Family>> {
  const r = await fetch(`${base}/metrics`);
  if (r.status !== 200) throw new Error(`/metrics: HTTP ${r.status}`);
  if (!/^text\/plain; version=0\.0\.4/.test(r.headers.get('content-type') ?? ''))
    throw new Error(`/metrics content-type ${r.headers.get('content-type')}`);
  return parsePrometheus(await r.text());
}
