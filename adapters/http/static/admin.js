// The admin page: polls api/stats (the same numbers as /metrics) and draws
// them; manages accounts, sessions and rooms through api/command, the admin
// socket's API (the one `parley` uses). Plain DOM and inline SVG; every value
// from the server is set as text, never as markup.
'use strict';

const POLL_MS = 2000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);
// The same colours as the legend in admin.html.
const COLORS = {
  messages: '#2f6fde',
  stanzasIn: '#2f9e68',
  stanzasOut: '#d9822b',
  connections: '#2f6fde',
  xmpp: '#2f6fde',
  mqtt: '#8e44ad',
};
const OTHER_COLORS = ['#2f9e68', '#d9822b', '#c63d3d', '#6b7385'];
const colorOf = (key) =>
  COLORS[key] ?? (COLORS[key] = OTHER_COLORS[Object.keys(COLORS).length % OTHER_COLORS.length]);

function el(name, attrs = {}, text) {
  const e = name.startsWith('svg:')
    ? document.createElementNS(SVG_NS, name.slice(4))
    : document.createElement(name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400),
    h = Math.floor((s % 86400) / 3600),
    m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

function card(label, n, cls, id) {
  const c = el('div', { class: `card ${cls}` });
  c.append(
    el('div', { class: 'n', ...(id ? { id } : {}) }, String(n)),
    el('div', { class: 'l' }, label),
  );
  return c;
}

function drawConnections(c) {
  const box = $('connections');
  const cards = [card('total', c.total, 'total', 'conn-total')];
  for (const [protocol, n] of Object.entries(c.byProtocol).sort()) {
    const transports = c.byTransport
      .filter((t) => t.protocol === protocol)
      .map((t) => `${t.transport} ${t.count}`)
      .join(', ');
    const k = card(`${protocol}${transports ? ` (${transports})` : ''}`, n, '', `conn-${protocol}`);
    k.dataset.protocol = protocol;
    cards.push(k);
  }
  box.replaceChildren(...cards);
}

/** Lines over time in an SVG with a y grid; series: sample keys. */
function lineChart(svg, samples, series, windowMs) {
  const [, , W, H] = svg.getAttribute('viewBox').split(' ').map(Number);
  const left = 40,
    right = 8,
    top = 8,
    bottom = 20;
  const w = W - left - right,
    h = H - top - bottom;
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
    parts.push(
      el(
        'svg:text',
        { x: x(t), y: H - 5, 'text-anchor': m === 0 ? 'end' : 'middle' },
        m === 0 ? 'now' : `-${m}m`,
      ),
    );
  }
  for (const key of series) {
    const pts = samples
      .filter((s) => s.t >= from)
      .map((s) => `${x(s.t).toFixed(1)},${y(s[key]).toFixed(1)}`);
    if (pts.length)
      parts.push(
        el('svg:polyline', {
          points: pts.join(' '),
          fill: 'none',
          stroke: colorOf(key),
          'stroke-width': 1.6,
          'stroke-linejoin': 'round',
          'data-series': key,
        }),
      );
  }
  svg.replaceChildren(...parts);
}

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-9)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return Math.max(m * p, raw < 1 ? 0.25 : 1);
  return 10 * p;
}

function fmt(v) {
  return v >= 1000
    ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k`
    : String(Math.round(v * 100) / 100);
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
      tr.append(
        el('td', { class: 'time' }, clock(e.time)),
        el('td', { class: 'src' }, e.source),
        el('td', {}, e.text),
      );
      return tr;
    }),
  );
}

/** Per-protocol series from the samples: `pick` reads one number of a protocol's sample. */
function perProtocol(samples, pick) {
  const protocols = [...new Set(samples.flatMap((s) => Object.keys(s.byProtocol ?? {})))].sort();
  return {
    protocols,
    samples: samples.map((s) =>
      Object.fromEntries([
        ['t', s.t],
        ...protocols.map((p) => [p, s.byProtocol?.[p] ? pick(s.byProtocol[p]) : 0]),
      ]),
    ),
  };
}

function drawProtocols(samples, windowMs) {
  const conns = perProtocol(samples, (p) => p.connections);
  const traffic = perProtocol(samples, (p) => p.in + p.out);
  lineChart($('proto-conn'), conns.samples, conns.protocols, windowMs);
  lineChart($('proto-traffic'), traffic.samples, traffic.protocols, windowMs);
  $('proto-legend').replaceChildren(
    ...conns.protocols.map((p) => {
      const span = el('span');
      span.append(el('i', { style: `background: ${colorOf(p)}` }), p);
      return span;
    }),
  );
}

function draw(s) {
  $('node').textContent =
    `${s.node.domain} · up ${duration(s.node.now - s.node.startedAt)} · ${s.sessions} session${s.sessions === 1 ? '' : 's'}`;
  drawConnections(s.connections);
  const samples = s.rates.samples;
  const windowMs = Math.max(
    60000,
    Math.min(10 * 60000, Math.ceil((samples.length * s.rates.intervalMs) / 60000) * 60000),
  );
  $('window').textContent = `${Math.round(windowMs / 60000)} min`;
  lineChart($('rates'), samples, ['stanzasIn', 'stanzasOut', 'messages'], windowMs);
  lineChart($('conn-chart'), samples, ['connections'], windowMs);
  drawProtocols(samples, windowMs);
  drawUsers(s.users);
  drawErrors(s.errors);
}

// ---- the admin API: the admin socket's requests, as JSON ----

async function api(cmd, fields = {}) {
  const r = await fetch('api/command', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ cmd, ...fields }),
    cache: 'no-store',
  });
  let body;
  try {
    body = await r.json();
  } catch {
    throw new Error(`HTTP ${r.status}`);
  }
  if (!body.ok)
    throw Object.assign(new Error(body.error || `HTTP ${r.status}`), { code: body.code });
  return body.result;
}

let toastTimer;
function say(text, bad = false) {
  const t = $('toast');
  t.textContent = text;
  t.className = bad ? 'bad' : '';
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.textContent = ''), bad ? 8000 : 4000);
}

/** Run an action, say how it went; errors are shown, never thrown. */
async function act(what, fn) {
  try {
    const done = await fn();
    say(done ?? `${what}: done`);
    return true;
  } catch (err) {
    say(`${what}: ${err.message}`, true);
    return false;
  }
}

function button(label, cls, onClick, attrs = {}) {
  const b = el('button', { type: 'button', class: cls, ...attrs }, label);
  b.addEventListener('click', onClick);
  return b;
}

function emptyRow(cols, text) {
  const tr = el('tr');
  tr.append(el('td', { class: 'empty', colspan: cols }, text));
  return tr;
}

// ---- accounts ----

let accounts = [];
let selected;

async function loadAccounts() {
  accounts = await api('user.list');
  drawAccounts();
}

function drawAccounts() {
  $('account-count').textContent = String(accounts.length);
  const f = $('account-filter').value.trim().toLowerCase();
  const shown = accounts
    .filter((a) => !f || a.includes(f))
    .sort()
    .slice(0, 500);
  const body = $('accounts');
  if (!shown.length)
    return body.replaceChildren(
      emptyRow(2, accounts.length ? 'no account matches' : 'no accounts'),
    );
  body.replaceChildren(
    ...shown.map((a) => {
      const tr = el('tr', { 'data-user': a });
      const td = el('td');
      td.append(button('details', 'plain', () => showUser(a), { 'data-action': 'details' }));
      tr.append(el('td', { class: 'jid' }, a), td);
      return tr;
    }),
  );
}

$('account-filter').addEventListener('input', drawAccounts);

$('add-user').addEventListener('submit', async (e) => {
  e.preventDefault();
  const username = $('new-username').value.trim();
  const password = $('new-password').value;
  const ok = await act(`add ${username}`, async () => {
    await api('user.add', { username, password });
    return `account ${username} added`;
  });
  if (ok) {
    $('new-username').value = '';
    $('new-password').value = '';
    await loadAccounts().catch(() => {});
  }
});

function sessionRow(s, after) {
  const tr = el('tr', { 'data-jid': s.jid });
  const kick = el('td');
  kick.append(
    button(
      'kick',
      'danger',
      () =>
        act(`kick ${s.jid}`, async () => {
          const r = await api('session.kick', { jid: s.jid, reason: 'ended from the admin page' });
          await after();
          return `kicked ${r.kicked.join(', ')}`;
        }),
      { 'data-action': 'kick' },
    ),
  );
  tr.append(
    el('td', { class: 'jid' }, s.jid),
    el('td', {}, s.protocol),
    el('td', {}, s.transport),
    el('td', {}, s.address ?? '-'),
    el('td', { class: 'time' }, s.since ? clock(s.since) : '-'),
    kick,
  );
  return tr;
}

async function showUser(name) {
  selected = name;
  let info, roster;
  try {
    [info, roster] = await Promise.all([
      api('user.info', { username: name }),
      api('user.roster', { username: name }),
    ]);
  } catch (err) {
    say(`${name}: ${err.message}`, true);
    $('detail').hidden = true;
    return;
  }
  if (selected !== name) return;
  $('detail').hidden = false;
  $('detail-user').textContent = info.user;
  const last = info.lastLogin;
  $('detail-cards').replaceChildren(
    card('contacts', info.rosterSize, '', 'detail-roster-size'),
    card('sessions', info.sessions.length, '', 'detail-session-count'),
    card('offline messages', info.offline, '', 'detail-offline'),
    card(
      last ? `last login (${last.protocol}/${last.transport})` : 'last login',
      last ? clock(last.at) : 'never',
      '',
    ),
  );
  const sessions = $('detail-sessions');
  if (!info.sessions.length) sessions.replaceChildren(emptyRow(6, 'not online'));
  else sessions.replaceChildren(...info.sessions.map((s) => sessionRow(s, () => showUser(name))));
  const items = $('detail-roster');
  if (!roster.items.length) items.replaceChildren(emptyRow(4, 'no contacts'));
  else
    items.replaceChildren(
      ...roster.items.map((i) => {
        const tr = el('tr');
        tr.append(
          el('td', { class: 'jid' }, i.jid),
          el('td', {}, i.name ?? ''),
          el('td', {}, i.subscription + (i.ask ? ' (asked)' : '')),
          el('td', {}, i.groups.join(', ')),
        );
        return tr;
      }),
    );
}

$('reset-password').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = selected;
  const password = $('reset-value').value;
  if (
    await act(`password of ${name}`, async () => {
      await api('user.passwd', { username: name, password });
      return `password of ${name} changed`;
    })
  )
    $('reset-value').value = '';
});

$('remove-user').addEventListener('click', async () => {
  const name = selected;
  if (
    !name ||
    !confirm(
      `Remove the account ${name}, its roster, offline messages and archive? Its sessions are closed.`,
    )
  )
    return;
  if (
    await act(`remove ${name}`, async () => {
      await api('user.remove', { username: name });
      return `account ${name} removed`;
    })
  ) {
    $('detail').hidden = true;
    selected = undefined;
    await loadAccounts().catch(() => {});
  }
});

// ---- sessions and rooms, polled with the stats ----

async function drawSessions() {
  const list = await api('session.list');
  $('session-count').textContent = String(list.length);
  const body = $('sessions');
  if (!list.length) return body.replaceChildren(emptyRow(6, 'no sessions'));
  body.replaceChildren(
    ...list
      .sort((a, b) => a.jid.localeCompare(b.jid))
      .slice(0, 500)
      .map((s) => sessionRow(s, drawSessions)),
  );
}

/** messagesSinceStart of each room at the previous poll, for its rate */
let lastRooms = { t: 0, counts: new Map() };

async function drawRooms() {
  const body = $('rooms');
  let rooms;
  try {
    rooms = await api('room.list');
  } catch (err) {
    $('room-count').textContent = '0';
    return body.replaceChildren(
      emptyRow(
        6,
        err.code === 'service-unavailable' ? 'groupchat is off (modules.rooms.host)' : err.message,
      ),
    );
  }
  const now = Date.now();
  const dt = (now - lastRooms.t) / 1000;
  const counts = new Map(rooms.map((r) => [r.room, r.messagesSinceStart]));
  $('room-count').textContent = String(rooms.length);
  if (!rooms.length) body.replaceChildren(emptyRow(6, 'no rooms'));
  else
    body.replaceChildren(
      ...rooms
        .sort((a, b) => b.occupants - a.occupants || a.room.localeCompare(b.room))
        .slice(0, 500)
        .map((r) => {
          const before = lastRooms.counts.get(r.room);
          const rate =
            before === undefined || dt <= 0
              ? '-'
              : fmt(Math.max(0, r.messagesSinceStart - before) / dt);
          const tr = el('tr', { 'data-room': r.room });
          tr.append(
            el('td', { class: 'jid' }, r.room),
            el('td', {}, r.name ?? ''),
            el('td', { class: 'num occupants' }, String(r.occupants)),
            el('td', { class: 'num' }, String(r.devices)),
            el('td', { class: 'num messages' }, String(r.messagesSinceStart)),
            el('td', { class: 'num rate' }, rate),
          );
          return tr;
        }),
    );
  lastRooms = { t: now, counts };
}

$('announce').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = $('announce-text').value;
  const subject = $('announce-subject').value.trim();
  if (
    await act('announce', async () => {
      const r = await api('announce', { text, ...(subject && { subject }) });
      return `sent to ${r.sessions} session${r.sessions === 1 ? '' : 's'}`;
    })
  )
    $('announce-text').value = '';
});

async function poll() {
  const status = $('status');
  try {
    const r = await fetch('api/stats', { cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    draw(await r.json());
    await Promise.all([drawSessions(), drawRooms()]);
    status.textContent = `updated ${clock(Date.now())}`;
    status.className = '';
  } catch (err) {
    status.textContent = `cannot reach the node: ${err.message}`;
    status.className = 'bad';
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

loadAccounts().catch((err) => say(`accounts: ${err.message}`, true));
poll();
