// The web chat page: @xmpp/client's browser bundle (xmpp.min.js, the global
// XMPP) over XMPP-over-WebSocket [RFC7395]. Every value from the network is
// set as text, never as markup.
'use strict';

const $ = (id) => document.getElementById(id);
let config = { domain: location.hostname, websocketPath: '/xmpp-websocket' };
let xmpp;
let me = '';

// ------------------------------------------------------------ SCRAM ---
// The library's browser build ships PLAIN only, and the server offers PLAIN
// only on an encrypted stream (ws:// to localhost is not one). So the page
// adds SCRAM-SHA-256 [RFC7677] with WebCrypto, in the shape of the
// library's SASL factory (`saslmechanisms`); the library runs the exchange.
const enc = new TextEncoder();
const binary = (bytes) => String.fromCharCode(...bytes); // what btoa() and the library's encode() take
const b64 = (bytes) => btoa(binary(bytes));
const unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

async function hmac(key, data) {
  const k = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
  ]);
  return new Uint8Array(
    await crypto.subtle.sign('HMAC', k, typeof data === 'string' ? enc.encode(data) : data),
  );
}

async function saltedPassword(password, salt, iterations) {
  // SASLprep approximated by NFKC, as the server does.
  const k = await crypto.subtle.importKey(
    'raw',
    enc.encode(password.normalize('NFKC')),
    'PBKDF2',
    false,
    ['deriveBits'],
  );
  return new Uint8Array(
    await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, k, 256),
  );
}

function ScramSha256() {
  this.step = 0;
}
ScramSha256.prototype.name = 'SCRAM-SHA-256';
ScramSha256.prototype.clientFirst = true;
ScramSha256.prototype.challenge = function (chal) {
  this.serverFirst = new TextDecoder().decode(Uint8Array.from(chal, (c) => c.charCodeAt(0)));
  return this;
};
ScramSha256.prototype.response = async function (cred) {
  if (this.step++ === 0) {
    this.nonce = b64(crypto.getRandomValues(new Uint8Array(18)));
    this.firstBare = `n=${cred.username.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${this.nonce}`;
    return binary(enc.encode(`n,,${this.firstBare}`));
  }
  const attrs = Object.fromEntries(this.serverFirst.split(',').map((p) => [p[0], p.slice(2)]));
  if (!attrs.r || !attrs.r.startsWith(this.nonce))
    throw new Error('SCRAM: the server nonce does not extend ours');
  const salted = await saltedPassword(cred.password, unb64(attrs.s), Number(attrs.i));
  const clientKey = await hmac(salted, 'Client Key');
  const storedKey = new Uint8Array(await crypto.subtle.digest('SHA-256', clientKey));
  const withoutProof = `c=${btoa('n,,')},r=${attrs.r}`;
  const signature = await hmac(storedKey, `${this.firstBare},${this.serverFirst},${withoutProof}`);
  const proof = clientKey.map((b, i) => b ^ signature[i]);
  return `${withoutProof},p=${b64(proof)}`;
};

// --------------------------------------------------------------- UI ---
function setStatus(text, cls = '') {
  $('status').textContent = text;
  $('status').className = cls;
}

function showError(text) {
  $('error').textContent = text;
}

/** `bob` → `bob@domain`; a full address stays as typed. */
function address(name) {
  const n = name.trim();
  return n.includes('@') ? n : `${n}@${config.domain}`;
}

function addMessage(kind, who, body) {
  const li = document.createElement('li');
  li.className = kind;
  const w = document.createElement('span');
  w.className = 'who';
  w.textContent = `${who} · ${new Date().toLocaleTimeString([], { hour12: false })}`;
  const b = document.createElement('span');
  b.className = 'body';
  b.textContent = body;
  li.append(w, b);
  li.dataset.from = kind === 'out' ? me : who;
  $('messages').prepend(li);
}

function onStanza(stanza) {
  if (!stanza.is('message')) return;
  const from = (stanza.attrs.from || '').split('/')[0];
  if (stanza.attrs.type === 'error') {
    const cond = stanza
      .getChild('error')
      ?.children.find((c) => typeof c === 'object' && c.name !== 'text')?.name;
    addMessage('error', from, `not delivered: ${cond || 'error'}`);
    return;
  }
  const body = stanza.getChildText('body');
  if (body !== null) addMessage('in', from, body);
}

function showChat(online) {
  $('login-form').hidden = online;
  $('chat').hidden = !online;
  $('login').disabled = false;
  if (online) $('to').focus();
}

async function login(ev) {
  ev.preventDefault();
  showError('');
  if (!window.XMPP)
    return showError('The @xmpp/client browser bundle is not installed on the server.');
  const typed = $('username').value.trim();
  const [local, domain] = typed.includes('@') ? typed.split('@') : [typed, config.domain];
  const password = $('password').value;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  xmpp = window.XMPP.client({
    service: `${scheme}://${location.host}${config.websocketPath}`,
    domain,
    resource: `web-${b64(crypto.getRandomValues(new Uint8Array(4))).replace(/[^A-Za-z0-9]/g, '')}`,
    credentials: async (authenticate, mechanisms) => {
      const m = mechanisms.includes('SCRAM-SHA-256') ? 'SCRAM-SHA-256' : mechanisms[0];
      await authenticate({ username: local, password }, m);
    },
  });
  if (crypto.subtle) xmpp.saslFactory.use(ScramSha256); // WebCrypto exists only in secure contexts
  xmpp.reconnect.stop(); // a failed or kicked login stays on this page, visible
  xmpp.on('status', (s) => {
    if (s === 'online') return;
    setStatus(s, s === 'offline' || s === 'disconnect' ? 'bad' : '');
  });
  xmpp.on('error', (err) => showError(err.message || String(err)));
  xmpp.on('stanza', onStanza);
  xmpp.on('offline', () => showChat(false));
  xmpp.on('online', async (jid) => {
    me = jid.bare().toString();
    $('whoami').textContent = jid.toString();
    setStatus(`online as ${me}`, 'online');
    await xmpp.send(window.XMPP.xml('presence')); // available: messages to the bare JID reach this page
    showChat(true);
  });
  $('login').disabled = true;
  setStatus('connecting…');
  try {
    await xmpp.start();
  } catch (err) {
    const reason = err.condition || err.message || String(err);
    showError(`Login failed: ${reason}`);
    setStatus('offline', 'bad');
    $('login').disabled = false;
    xmpp.stop().catch(() => {});
  }
}

async function send(ev) {
  ev.preventDefault();
  const to = address($('to').value);
  const text = $('body').value;
  if (!text.trim()) return;
  const { xml } = window.XMPP;
  await xmpp.send(
    xml(
      'message',
      { to, type: 'chat', id: `web-${Date.now().toString(36)}` },
      xml('body', {}, text),
    ),
  );
  addMessage('out', `to ${to}`, text);
  $('body').value = '';
  $('body').focus();
}

$('login-form').addEventListener('submit', login);
$('send-form').addEventListener('submit', send);
$('body').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey) send(ev);
});
$('logout').addEventListener('click', async () => {
  await xmpp?.stop().catch(() => {});
  setStatus('offline');
});

fetch('config.json')
  .then((r) => (r.ok ? r.json() : config))
  .then((c) => {
    config = c;
    $('domain-hint').textContent = `name or name@${config.domain}`;
  })
  .catch(() => {});
