import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { FunctionsHost, type LogRecord } from '../../../local/host/functionsHost';

const fixtureDir = path.resolve(__dirname, '..', '..', 'fixtures', 'hostApp');

describe('local functions host runs @azure/functions v4 registrations', () => {
  let host: FunctionsHost;
  const logs: LogRecord[] = [];
  let timerRuns: Array<{ isPastDue: boolean; at: number; hasSchedule: boolean }>;

  before(async () => {
    fs.writeFileSync(path.join(fixtureDir, 'package.json'), JSON.stringify({ main: 'app.js' }));
    fs.writeFileSync(
      path.join(fixtureDir, 'host.json'),
      JSON.stringify({ version: '2.0', extensions: { http: { routePrefix: 'api' } } }),
    );
    host = await new FunctionsHost({
      appDir: fixtureDir,
      logSink: (r) => logs.push(r),
      // Small limits so the guards can be shown without 100 MB bodies or minute-long waits.
      limits: { maxRequestBytes: 64 * 1024, headersTimeoutMs: 1000, requestTimeoutMs: 2000, maxConnections: 16 },
    }).start();
    // The fixture's own module instance (the host loaded it with require), to read what it recorded.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    timerRuns = (require(path.join(fixtureDir, 'app.js')) as { timerRuns: typeof timerRuns }).timerRuns;
  });
  after(async () => {
    await host.close();
  });

  it('registers every function through the injected core module', () => {
    assert.deepEqual(host.functions.map((f) => f.name).sort(), [
      'binary',
      'boom',
      'echo',
      'everySecond',
      'literalWins',
    ]);
  });

  it('passes route params, query, headers and a JSON body, and returns status, headers and cookies', async () => {
    const res = await fetch(`${host.apiUrl}/echo/bob/42?x=1&y=a%20b`, {
      method: 'POST',
      headers: { 'x-test': 'hello', 'content-type': 'application/json' },
      body: JSON.stringify({ a: 1 }),
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('x-echo-method'), 'POST');
    assert.match(res.headers.get('set-cookie') ?? '', /^c1=v1; HttpOnly; SameSite=Strict$/);
    const body = (await res.json()) as Record<string, unknown>;
    assert.deepEqual(body.params, { name: 'bob', n: '42' });
    assert.deepEqual(body.query, { x: '1', y: 'a b' });
    assert.equal(body.header, 'hello');
    assert.equal(Buffer.from(body.bodyHex as string, 'hex').toString(), '{"a":1}');
    assert.match(String(body.url), /^http:\/\/127\.0\.0\.1:\d+\/api\/echo\/bob\/42\?x=1/);
  });

  it('honours an optional constrained param and prefers literal segments', async () => {
    const opt = (await (await fetch(`${host.apiUrl}/echo/alice`)).json()) as { params: unknown };
    assert.deepEqual(opt.params, { name: 'alice' });
    assert.equal((await fetch(`${host.apiUrl}/echo/alice/notanint`)).status, 404);
    assert.equal(await (await fetch(`${host.apiUrl}/echo/literal`)).text(), 'literal');
  });

  it('round-trips a binary body', async () => {
    const input = Buffer.from([0, 1, 2, 250, 255]);
    const res = await fetch(`${host.apiUrl}/bytes`, {
      method: 'POST',
      body: input,
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), Buffer.from([255, 250, 2, 1, 0]));
  });

  it('answers 405 for a method the function does not accept and 404 for an unknown route', async () => {
    assert.equal((await fetch(`${host.apiUrl}/bytes`)).status, 405);
    assert.equal((await fetch(`${host.apiUrl}/nothing/here`)).status, 404);
  });

  it('answers 500 with no internals when a handler throws, and logs the error', async () => {
    const res = await fetch(`${host.apiUrl}/boom`);
    assert.equal(res.status, 500);
    assert.doesNotMatch(await res.text(), /kaboom/);
    assert.ok(logs.some((l) => /kaboom/.test(l.message)));
  });

  it('forwards context logs with the function name', () => {
    assert.ok(logs.some((l) => l.functionName === 'echo' && l.message === 'echo bob' && l.category === 'user'));
  });

  it('runs a timer on its NCRONTAB schedule and reports a late occurrence as past due', async () => {
    const deadline = Date.now() + 10_000;
    while (timerRuns.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(timerRuns.length >= 3, `timer ran ${timerRuns.length} times`);
    assert.equal(timerRuns[0].isPastDue, false);
    assert.equal(timerRuns[1].isPastDue, true, 'the run after an overlong one is past due');
    assert.ok(timerRuns.every((r) => r.hasSchedule));
    assert.equal(timerRuns.filter((r) => r.isPastDue).length >= 1, true);
  });

  it('runs a timer function on demand through the admin endpoint', async () => {
    const before = timerRuns.length;
    const res = await fetch(`${host.baseUrl}/admin/functions/everySecond`, {
      method: 'POST',
      body: '{}',
      headers: { 'x-functions-key': host.systemKey },
    });
    assert.equal(res.status, 202);
    const deadline = Date.now() + 5000;
    while (timerRuns.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(timerRuns.length > before);
  });

  it('refuses /admin without the system key (401 problem+json) and takes it as header or code query', async () => {
    const before = timerRuns.length;
    const url = `${host.baseUrl}/admin/functions/everySecond`;
    for (const init of [{}, { headers: { 'x-functions-key': 'not-the-key' } }]) {
      const res = await fetch(url, { method: 'POST', ...init });
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('content-type'), 'application/problem+json');
      assert.equal(((await res.json()) as { code: string }).code, 'unauthenticated');
    }
    assert.equal((await fetch(`${url}?code=wrong`, { method: 'POST' })).status, 401);
    assert.equal(timerRuns.length, before, 'no keyless call ran the timer');
    const keyed = await fetch(`${url}?code=${encodeURIComponent(host.systemKey)}`, { method: 'POST' });
    assert.equal(keyed.status, 202);
  });

  it('refuses a declared body over the limit with 413 before reading it', async () => {
    // 1 GB declared, 5 bytes sent: the answer comes without waiting for the rest.
    const head = await rawExchange(
      host.port,
      'POST /api/bytes HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1073741824\r\n\r\nhello',
    );
    assert.match(head, /^HTTP\/1\.1 413 /);
    assert.match(head, /application\/problem\+json/);
  });

  it('refuses a streamed body with 413 as soon as it passes the limit, without the rest', async () => {
    const socket = net.connect(host.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let answer = '';
    socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    socket.on('error', () => undefined);
    socket.write('POST /api/bytes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
    const chunk = Buffer.alloc(16 * 1024, 1);
    // 1 MB offered in 16 KiB chunks: the 64 KiB limit is passed at the 5th; stop once answered.
    for (let i = 0; i < 64 && !answer && !socket.destroyed; i++) {
      socket.write(`${chunk.length.toString(16)}\r\n`);
      socket.write(chunk);
      socket.write('\r\n');
      await new Promise((r) => setTimeout(r, 10));
    }
    for (let i = 0; i < 200 && !answer; i++) await new Promise((r) => setTimeout(r, 10));
    socket.destroy();
    assert.match(answer, /^HTTP\/1\.1 413 /);
  });

  it('answers 408 when the headers or the body do not arrive in time', async () => {
    const noHeaders = await rawExchange(host.port, 'GET /api/echo/x HTTP/1.1\r\nHost: x\r\n');
    assert.match(noHeaders, /^HTTP\/1\.1 408 /);
    const slowBody = await rawExchange(
      host.port,
      'POST /api/bytes HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\nonly ten b',
    );
    assert.match(slowBody, /^HTTP\/1\.1 408 /);
  });

  it('caps open connections: one past the cap is refused, and served again once others close', async () => {
    const sockets: net.Socket[] = [];
    let served = 0;
    let refused = 0;
    for (let i = 0; i < 24 && refused === 0; i++) {
      const s = net.connect(host.port, '127.0.0.1');
      sockets.push(s);
      const outcome = await new Promise<'served' | 'refused'>((resolve) => {
        s.once('data', () => resolve('served'));
        s.once('close', () => resolve('refused'));
        s.once('error', () => resolve('refused'));
        s.write('GET /api/echo/cap HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      if (outcome === 'served') served++;
      else refused++;
    }
    for (const s of sockets) s.destroy();
    assert.equal(refused, 1, 'a connection past the cap is refused');
    assert.ok(served <= 16, `${served} connections served at once`);
    await new Promise((r) => setTimeout(r, 50));
    assert.ok((await fetch(`${host.apiUrl}/echo/again`)).ok, 'served again');
  });
});

/** Writes raw bytes, then returns whatever the server answers before it closes (bounded). */
async function rawExchange(port: number, text: string): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  let answer = '';
  socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
  socket.on('error', () => undefined);
  socket.write(text);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10_000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  socket.destroy();
  return answer;
}
