// The admin page: polls api/stats (the same numbers as /metrics) and draws
// them. Plain DOM and inline SVG; every value from the server is set as text,
// never as markup.
'use strict';

const POLL_MS = 2000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);
// The same colours as the legend in admin.html.
const COLORS = { messages: '#2f6fde', stanzasIn: '#2f9e68', stanzasOut: '#d9822b', connections: '#2f6fde' };

function el(name, attrs = {}, text) {
  const e = name.startsWith('svg:') ? document.createElementNS(SVG_NS, name.slice(4)) : document.createElement(name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

function card(label, n, cls, id) {
  const c = el('div', { class: `card ${cls}` });
  c.append(el('div', { class: 'n', ...(id ? { id } : {}) }, String(n)), el('div', { class: 'l' }, label));
  return c;
}

function drawConnections(c) {
  const box = $('connections');
  const cards = [card('total', c.total, 'total', 'conn-total')];
  for (const [protocol, n] of Object.entries(c.byProtocol).sort()) {
    const transports = c.byTransport.filter((t) => t.protocol === protocol).map((t) => `${t.transport} ${t.count}`).join(', ');
    const k = card(`${protocol}${transports ? ` (${transports})` : ''}`, n, '', `conn-${protocol}`);
    k.dataset.protocol = protocol;
    cards.push(k);
  }
  box.replaceChildren(...cards);
}

/** Lines over time in an SVG with a y grid; series: sample keys. */
function lineChart(svg, samples, series, windowMs) {
  const [, , W, H] = svg.getAttribute('viewBox').split(' ').map(Number);
  const left = 40, right = 8, top = 8, bottom = 20;
  const w = W - left - right, h = H - top - bottom;
  const now = samples.length ? samples[samples.length - 1].t : Date.now();
  const from = now - windowMs;
  let max = 1;
  for (const s of samples) for (const key of series) max = Math.max(max, s[key]);
  const step = niceStep(max / 4);
  max = Math.ceil(max / step) * step;
  const x = (t) => left + ((t - from) / windowMs) * w;
  const y = (v) => top + h - (v / max) * h;
  const parts = [];
  for (let v = 0; v <= max + 1e-9; v += step) {
    parts.push(el('svg:line', { class: 'grid', x1: left, x2: left + w, y1: y(v), y2: y(v) }));
    parts.push(el('svg:text', { x: left - 4, y: y(v) + 3, 'text-anchor': 'end' }, fmt(v)));
  }
  const minutes = Math.round(windowMs / 60000);
  for (let m = 0; m <= minutes; m += minutes > 5 ? 2 : 1) {
    const t = now - m * 60000;
    parts.push(el('svg:text', { x: x(t), y: H - 5, 'text-anchor': m === 0 ? 'end' : 'middle' }, m === 0 ? 'now' : `-${m}m`));
  }
  for (const key of series) {
    const pts = samples.filter((s) => s.t >= from).map((s) => `${x(s.t).toFixed(1)},${y(s[key]).toFixed(1)}`);
    if (pts.length) parts.push(el('svg:polyline', { points: pts.join(' '), fill: 'none', stroke: COLORS[key], 'stroke-width': 1.6, 'stroke-linejoin': 'round', 'data-series': key }));
  }
  svg.replaceChildren(...parts);
}

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-9)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return Math.max(m * p, raw < 1 ? 0.25 : 1);
  return 10 * p;
}

function fmt(v) {
  return v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : String(Math.round(v * 100) / 100);
}

function drawUsers(users) {
  $('user-count').textContent = String(users.length);
  const list = $('users');
  if (!users.length) return list.replaceChildren(el('li', { class: 'empty' }, 'nobody online'));
  list.replaceChildren(...users.map((u) => el('li', {}, u)));
}

function drawErrors(errors) {
  const body = $('errors');
  if (!errors.length) {
    const tr = el('tr');
    tr.append(el('td', { class: 'empty', colspan: 3 }, 'none'));
    return body.replaceChildren(tr);
  }
  body.replaceChildren(
    ...errors.map((e) => {
      const tr = el('tr');
      tr.append(el('td', { class: 'time' }, clock(e.time)), el('td', { class: 'src' }, e.source), el('td', {}, e.text));
      return tr;
    }),
  );
}

function draw(s) {
  $('node').textContent = `${s.node.domain} · up ${duration(s.node.now - s.node.startedAt)} · ${s.sessions} session${s.sessions === 1 ? '' : 's'}`;
  drawConnections(s.connections);
  const samples = s.rates.samples;
  const windowMs = Math.max(60000, Math.min(10 * 60000, Math.ceil((samples.length * s.rates.intervalMs) / 60000) * 60000));
  $('window').textContent = `${Math.round(windowMs / 60000)} min`;
  lineChart($('rates'), samples, ['stanzasIn', 'stanzasOut', 'messages'], windowMs);
  lineChart($('conn-chart'), samples, ['connections'], windowMs);
  drawUsers(s.users);
  drawErrors(s.errors);
}

async function poll() {
  const status = $('status');
  try {
    const r = await fetch('api/stats', { cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    draw(await r.json());
    status.textContent = `updated ${clock(Date.now())}`;
    status.className = '';
  } catch (err) {
    status.textContent = `cannot reach the node: ${err.message}`;
    status.className = 'bad';
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
