// Black-box, the admin Unix socket (issue 20 "Also"): unknown commands and
// malformed requests get typed errors, a line has a size bound, and none of
// it disturbs the node.
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { startNode, type TestNode } from '../helpers.ts';

interface Answer {
  ok: boolean;
  error?: string;
  code?: string;
  result?: unknown;
}

/** Write `bytes` to the admin socket; every answer line until `count` lines came or the socket closed. */
function talk(
  node: TestNode,
  bytes: string | Buffer,
  count: number,
): Promise<{ answers: Answer[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(path.join(node.dataDir, 'admin.sock'));
    let buf = '';
    const answers: Answer[] = [];
    const t = setTimeout(() => {
      c.destroy();
      reject(new Error(`no ${count} answers in time; got ${buf}`));
    }, 10_000);
    const done = (closed: boolean) => {
      clearTimeout(t);
      c.destroy();
      resolve({ answers, closed });
    };
    c.setEncoding('utf8');
    c.on('connect', () => c.write(bytes));
    c.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        answers.push(JSON.parse(buf.slice(0, nl)) as Answer);
        buf = buf.slice(nl + 1);
      }
      if (answers.length >= count) done(false);
    });
    c.on('end', () => done(true));
    c.on('error', () => done(true));
  });
}

describe('security: the admin socket answers typed errors (issue 20)', function () {
  this.timeout(30_000);
  let node: TestNode;
  before(async function () {
    this.timeout(60_000);
    node = await startNode({ config: 'admin:\n  maxRequestBytes: 2048\n' });
  });
  after(() => node?.dispose());

  it('an unknown command is an error (ok:false, code unknown-command), not ok:true', async () => {
    const { answers } = await talk(
      node,
      '{"cmd":"user.delete-everything"}\n{"cmd":"__proto__"}\n{"nocmd":1}\n',
      3,
    );
    for (const a of answers) {
      assert.equal(a.ok, false, JSON.stringify(a));
      assert.equal(a.code, 'unknown-command');
    }
  });

  it('malformed requests get a typed message, never raw TypeError text', async () => {
    const lines = [
      'not json',
      'null',
      '[]',
      '42',
      '{"cmd":"user.add","username":5,"password":"x"}',
      '{"cmd":"user.add","username":"kim"}',
      '{"cmd":"user.passwd","username":{},"password":[]}',
    ];
    const { answers } = await talk(node, lines.join('\n') + '\n', lines.length);
    assert.equal(answers.length, lines.length);
    for (const [i, a] of answers.entries()) {
      assert.equal(a.ok, false, lines[i]);
      assert.ok(
        ['bad-json', 'bad-request'].includes(a.code ?? ''),
        `${lines[i]}: ${JSON.stringify(a)}`,
      );
      assert.doesNotMatch(a.error ?? '', /TypeError|is not a function|Cannot read prop/, lines[i]);
    }
  });

  it('a broker error keeps its condition: adding an existing user is code conflict', async () => {
    const add = '{"cmd":"user.add","username":"dup-admin-sock","password":"pw-1"}\n';
    assert.equal((await talk(node, add, 1)).answers[0].ok, true);
    const again = (await talk(node, add, 1)).answers[0];
    assert.equal(again.ok, false);
    assert.equal(again.code, 'conflict');
  });

  it('a line over admin.maxRequestBytes is answered too-large and the socket closed; the node still answers', async () => {
    const { answers, closed } = await talk(node, 'x'.repeat(10_000), 1);
    assert.equal(answers[0]?.code, 'too-large');
    assert.equal(closed || answers.length === 1, true);
    const status = (await talk(node, '{"cmd":"status"}\n', 1)).answers[0];
    assert.equal(status.ok, true);
  });
});
