/**
 * BOSH session logic without HTTP or XMPP [XEP-0124]: a BoshSession over a
 * fake stream, requests built by hand, every reply recorded.
 */
import assert from 'node:assert/strict';
import { silentLogger, type CloseReason } from '../../../broker/index.ts';
import { BoshSession, type BoshSessionParams, type BoshStream } from '../bosh-session.ts';
import {
  bodyXml,
  lowerVersion,
  NS_HTTPBIND,
  parseRequest,
  type BoshRequest,
} from '../bosh-wire.ts';

const LIMITS = { maxStanzaSize: 4096, maxDepth: 8 };
const tick = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Answer {
  xml: string;
  status: number;
}

/** A reply that records its single answer. */
function recorder(): { reply: (xml: string, status: number) => void; answers: Answer[] } {
  const answers: Answer[] = [];
  return { answers, reply: (xml, status) => void answers.push({ xml, status }) };
}

/** Stands in for XmppConnection: records input, closes through the transport like the real one. */
class FakeStream implements BoshStream {
  readonly input: string[] = [];
  closed?: CloseReason;
  constructor(private readonly session: () => BoshSession) {}
  data(text: string): void {
    if (text) this.input.push(text);
  }
  close(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = reason;
    const t = this.session().transport;
    t.closeStream(
      reason.kind === 'client-closed'
        ? undefined
        : `<stream:error><${reason.kind} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`,
    );
    t.end();
  }
}

function setup(over: Partial<BoshSessionParams> = {}) {
  const first = recorder();
  const events = { closed: 0, forgotten: 0 };
  const p: BoshSessionParams = {
    sid: 'sid1',
    rid: 100,
    wait: 0.3,
    hold: 1,
    requests: 2,
    polling: 0,
    inactivity: 0.5,
    ver: '1.11',
    legacy: false,
    contentType: 'text/xml; charset=utf-8',
    clientAcks: false,
    maxRequestsPerSecond: 100,
    domain: 'localhost',
    to: 'localhost',
    xmppVersion: '1.0',
    ip: '10.0.0.1',
    secure: false,
    log: silentLogger,
    onClosed: () => void events.closed++,
    onForget: () => void events.forgotten++,
    ...over,
  };
  const s = new BoshSession(p, first.reply);
  const stream = new FakeStream(() => s);
  s.attach(stream);
  return { s, stream, first, events };
}

const req = (rid: number, extra: Partial<BoshRequest> = {}): BoshRequest => ({
  attrs: {},
  sid: 'sid1',
  rid,
  terminate: false,
  restart: false,
  payloads: [],
  ...extra,
});

describe('BOSH session [XEP-0124]', function () {
  it('opens the XMPP stream with a synthetic header and answers creation with the first output [XEP-0206 §3-4]', async () => {
    const { s, stream, first } = setup();
    assert.match(
      stream.input[0],
      /^<stream:stream xmlns='jabber:client' [^>]*to='localhost' version='1.0'>$/,
    );
    s.transport.openStream({ id: 'stream-1', from: 'localhost' });
    s.transport.write('<stream:features/>');
    await tick();
    assert.equal(first.answers.length, 1);
    assert.match(
      first.answers[0].xml,
      /sid='sid1'[^>]* authid='stream-1' ack='100' xmpp:version='1.0' xmpp:restartlogic='true'/,
    );
    assert.match(
      first.answers[0].xml,
      /xmlns:stream='http:\/\/etherx.jabber.org\/streams'><stream:features\/><\/body>$/,
    );
  });

  it('feeds payloads in rid order whatever the arrival order [§14.2]', async () => {
    const { s, stream } = setup();
    s.transport.write('<f/>'); // creation answered: nothing held
    await tick();
    const a = recorder();
    const b = recorder();
    s.request(req(102, { payloads: ['<m2/>'] }), b.reply);
    assert.deepEqual(stream.input.slice(1), [], 'rid 102 waits for 101');
    s.request(req(101, { payloads: ['<m1/>'] }), a.reply);
    assert.deepEqual(stream.input.slice(1), ['<m1/>', '<m2/>']);
    assert.equal(a.answers.length, 1, 'hold=1: the older is answered at once');
    assert.match(a.answers[0].xml, /ack='102'/, '[§9.1] acknowledges the later rid');
  });

  it('a third simultaneous request with requests=2 → policy-violation for all of them [§11]', async () => {
    const { s } = setup({ wait: 5 });
    await tick(); // the creation request is still held: one
    const r = [recorder(), recorder()];
    s.request(req(102), r[0].reply); // two
    s.request(req(101), r[1].reply); // three
    for (const x of r) assert.match(x.answers[0].xml, /condition='policy-violation'/);
  });

  it('a gap never filled: the early requests get a recoverable error after wait [§17.3]', async () => {
    const { s } = setup({ wait: 0.05 });
    await tick();
    const early = recorder();
    s.request(req(102), early.reply);
    await sleep(120);
    assert.equal(early.answers.length, 1);
    assert.equal(early.answers[0].xml, bodyXml({ type: 'error' }));
  });

  it('buffered responses: a repeat gets the same text; one beyond the buffer gets item-not-found [§14.3]', async () => {
    const { s, events } = setup();
    await tick();
    const r = [101, 102, 103, 104].map(() => recorder());
    for (let i = 0; i < 4; i++) {
      s.request(req(101 + i), r[i].reply);
      s.transport.write(`<x n='${i}'/>`);
      await tick();
    }
    const again = recorder();
    s.request(req(103), again.reply);
    assert.equal(again.answers[0].xml, r[2].answers[0].xml);
    const gone = recorder();
    s.request(req(101), gone.reply);
    assert.match(gone.answers[0].xml, /type='terminate' condition='item-not-found'/);
    assert.equal(events.closed, 1);
  });

  it('legacy clients get HTTP codes for binding errors [§17.1]', async () => {
    const { s } = setup({ legacy: true });
    await tick();
    const r = recorder();
    s.request(req(110), r.reply);
    assert.equal(r.answers[0].status, 404);
  });

  it('terminate: payloads and the stream end are forwarded; the open request gets type=terminate [§13]', async () => {
    const { s, stream, events } = setup({ wait: 5 });
    s.transport.write('<stream:features/>');
    await tick();
    const t = recorder();
    s.request(req(101, { terminate: true, payloads: ["<presence type='unavailable'/>"] }), t.reply);
    assert.equal(stream.input.at(-1), "<presence type='unavailable'/></stream:stream>");
    assert.equal(t.answers.length, 0, 'answered when the stream has ended');
    stream.close({ kind: 'client-closed' });
    assert.deepEqual(t.answers, [
      { xml: `<body xmlns='${NS_HTTPBIND}' type='terminate'/>`, status: 200 },
    ]);
    assert.deepEqual(events, { closed: 1, forgotten: 1 });
  });

  it('the stream ends while nothing is held: the next request is told, then the sid is forgotten [XEP-0206 §6]', async () => {
    const { s, stream, events } = setup();
    s.transport.write('<f/>');
    await tick(); // creation answered: nothing held
    stream.close({ kind: 'session-taken-over' });
    assert.equal(events.forgotten, 0, 'kept to tell the client');
    const r = recorder();
    s.request(req(101), r.reply);
    assert.match(
      r.answers[0].xml,
      /type='terminate' condition='remote-stream-error'.*<stream:error><session-taken-over/,
    );
    assert.equal(events.forgotten, 1);
  });

  it('no request within inactivity: the stream is closed with idle-timeout, silently [§10]', async () => {
    const { stream, events, first } = setup({ inactivity: 0.1, wait: 0.01 });
    await sleep(250);
    assert.equal(first.answers.length, 1);
    assert.equal(stream.closed?.kind, 'idle-timeout');
    assert.deepEqual(events, { closed: 1, forgotten: 1 });
  });

  it("a client 'ack' below the last answered rid gets 'report' and 'time' at once [§9.2]", async () => {
    const { s } = setup({ wait: 5, clientAcks: true });
    s.transport.write('<f/>');
    await tick();
    const a = recorder();
    s.request(req(101, { ack: 100 }), a.reply);
    s.transport.write('<pong/>');
    await tick();
    const b = recorder();
    s.request(req(102, { ack: 100 }), b.reply);
    await tick();
    assert.match(b.answers[0]?.xml ?? '', /report='101' time='\d+'/);
  });

  it('a restart request is refused unless SASL succeeded, and feeds a new header after it [XEP-0206 §5]', async () => {
    const ok = setup({ wait: 5 });
    ok.s.transport.write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    await tick();
    ok.s.request(
      req(101, { restart: true, attrs: { to: 'localhost', 'xml:lang': 'de' } }),
      recorder().reply,
    );
    assert.match(ok.stream.input.at(-1)!, /^<stream:stream [^>]*xml:lang='de'>$/);
    const bad = setup();
    await tick();
    const r = recorder();
    bad.s.request(req(101, { restart: true }), r.reply);
    assert.match(r.answers[0].xml, /condition='bad-request'/);
  });
});

describe('BOSH wire [XEP-0124 §6]', function () {
  it('unqualified payloads are jabber:client; the restart attribute is found under any prefix [XEP-0206 §2, §5]', () => {
    const r = parseRequest(
      `<body xmlns='${NS_HTTPBIND}' xmlns:x='urn:xmpp:xbosh' rid='7' sid='s' x:restart='1'><message to='a@b'><body>hi</body></message></body>`,
      LIMITS,
    );
    assert.ok(r.ok);
    assert.equal(r.body.restart, true);
    assert.deepEqual(r.body.payloads, [
      `<message to="a@b" xmlns="jabber:client"><body>hi</body></message>`,
    ]);
  });

  const bad: [string, string][] = [
    ['partial body', `<body xmlns='${NS_HTTPBIND}' rid='1'>`],
    ['rid zero', `<body xmlns='${NS_HTTPBIND}' rid='0'/>`],
    ['ack not a number', `<body xmlns='${NS_HTTPBIND}' rid='1' ack='x'/>`],
    ['another root', `<stream xmlns='${NS_HTTPBIND}' rid='1'/>`],
  ];
  for (const [name, text] of bad) {
    it(`${name} → not ok`, () => assert.equal(parseRequest(text, LIMITS).ok, false));
  }

  it('content that breaks restricted XML or the size limit is kept as a stream failure [RFC6120 11.1, 4.9.3.14]', () => {
    const comment = parseRequest(
      `<body xmlns='${NS_HTTPBIND}' rid='1'><message><!--x--></message></body>`,
      LIMITS,
    );
    assert.ok(comment.ok && comment.body.failure?.condition === 'restricted-xml');
    const big = parseRequest(
      `<body xmlns='${NS_HTTPBIND}' rid='1'><message>${'x'.repeat(5000)}</message></body>`,
      LIMITS,
    );
    assert.ok(big.ok && big.body.failure?.condition === 'policy-violation');
    assert.equal(big.ok && big.body.payloads.length, 0, 'nothing of a failed body is forwarded');
  });

  it("'ver' negotiation takes the lower version, minor numbers as integers [§7.2]", () => {
    assert.equal(lowerVersion('1.6', '1.11'), '1.6');
    assert.equal(lowerVersion('1.20', '1.11'), '1.11');
    assert.equal(lowerVersion('2.0', '1.11'), '1.11');
    assert.equal(lowerVersion('garbage', '1.11'), '1.11');
  });
});
