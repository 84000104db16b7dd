import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
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
    host = await new FunctionsHost({ appDir: fixtureDir, logSink: (r) => logs.push(r) }).start();
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
    const res = await fetch(`${host.baseUrl}/admin/functions/everySecond`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 202);
    const deadline = Date.now() + 5000;
    while (timerRuns.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(timerRuns.length > before);
  });
});
