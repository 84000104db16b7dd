// Clients and idle sessions on the whole local stack, through the built binary: a `connect` whose
// process is SIGKILLed has its session ended (client_gone) by the liveness sweep; a session nothing
// goes through ends as idle; the per-principal cap; operators list their own sessions; `sessions
// end` on an ended session says so; and `relay-broker audit` exports the run in its three formats.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalRuntime } from '../../local/runtime';
import { call } from '../support/http';
import { CliProcess, runCli } from '../integration/agent/cliProcess';

interface View {
  sessionId: string;
  status: string;
  reason?: string;
  endedBy?: string;
  clientSeenAt?: string;
  bytesToDevice?: number;
  bytesFromDevice?: number;
  openedBy?: string;
  cost?: { usd: number; listenerHours: number; pricesDate: string };
}

const CLIENT_GONE_SECONDS = 5;
const DEVICE = 'liveness-e2e';

describe('clients and idle sessions end to end', () => {
  let stateDir: string;
  let rt: LocalRuntime;
  let env: Record<string, string>;
  let admin: string;
  let agent: CliProcess;
  let echo: net.Server;
  let echoPort = 0;
  const procs: CliProcess[] = [];
  const sessionsOfRun: string[] = [];

  const sweep = async () => {
    const res = await fetch(`${rt.host!.baseUrl}/admin/functions/sessionLivenessTimer`, {
      method: 'POST',
      headers: { 'x-functions-key': rt.systemKey },
    });
    assert.equal(res.status, 202);
  };
  const view = async (id: string) => (await call<View>('GET', `${rt.apiUrl}/sessions/${id}`, { token: admin })).body;
  /** Sweeps and reads until the session is over; bounded. */
  const untilOver = async (id: string, timeoutMs: number): Promise<View> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await view(id);
      if (v.status === 'ended' || v.status === 'failed') return v;
      if (Date.now() > deadline) throw new Error(`session ${id} still ${v.status} after ${timeoutMs} ms`);
      await sweep();
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const connect = async (extra: string[] = []) => {
    const proc = new CliProcess(
      ['--json', 'connect', DEVICE, '--port', String(echoPort), '--status-poll-ms', '500', ...extra],
      { env },
    );
    procs.push(proc);
    const ready = await proc.waitForEvent('session.ready', () => true, 30_000);
    const id = String(ready.sessionId);
    sessionsOfRun.push(id);
    return { proc, id, port: (ready.listen as { port: number }).port };
  };

  before(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-liveness-e2e-'));
    rt = new LocalRuntime({
      disableTimers: true,
      prefillNamespaces: 5,
      logSink: () => {},
      stateDir,
      relayOptions: { createDelayMs: 0 },
      settings: { SESSION_CLIENT_GONE_SECONDS: String(CLIENT_GONE_SECONDS), SESSION_MAX_PER_PRINCIPAL: '2' },
    });
    await rt.start();
    admin = await rt.token('admin');
    await fs.writeFile(path.join(stateDir, 'local.json'), JSON.stringify(rt.localState()), { mode: 0o600 });
    env = { RELAY_BROKER_STATE_DIR: stateDir };
    echo = net.createServer((s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as net.AddressInfo).port;
    const enrollment = path.join(stateDir, 'device.json');
    const add = await runCli(['devices', 'add', DEVICE, '--out', enrollment], { env });
    assert.equal(add.code, 0, add.stderr);
    agent = new CliProcess(
      ['--json', 'agent', '--enrollment', enrollment, '--allow', String(echoPort), '--poll-ms', '200'],
      {
        env,
      },
    );
    await agent.waitForEvent('agent.started');
  });

  after(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGINT').catch(() => undefined)));
    await agent?.stop('SIGTERM');
    await new Promise<void>((resolve) => echo.close(() => resolve()));
    await rt?.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  // Opened first so its idle minute runs while the other tests do.
  let idle: { proc: CliProcess; id: string } | undefined;
  let goneId = '';

  it('ends the session of a SIGKILLed client bridge with client_gone, by system, with its bytes', async () => {
    idle = await connect(['--idle-minutes', '1']);
    const { proc, id, port } = await connect();
    // Something through it, so the report has bytes each way.
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(Buffer.alloc(50_000, 7));
    let got = 0;
    await new Promise<void>((resolve) =>
      socket.on('data', (c: Buffer) => {
        got += c.length;
        if (got >= 50_000) resolve();
      }),
    );
    socket.destroy();
    // The bridge reports every CLIENT_GONE_SECONDS / 4 s: wait for a beat that carries the bytes.
    const deadline = Date.now() + 30_000;
    while (((await view(id)).bytesFromDevice ?? 0) < 50_000) {
      if (Date.now() > deadline) throw new Error('no heartbeat with the bytes');
      await new Promise((r) => setTimeout(r, 250));
    }
    const killedAt = Date.now();
    await proc.stop('SIGKILL');
    goneId = id;
    const over = await untilOver(id, 60_000);
    const seconds = (Date.now() - killedAt) / 1000;
    assert.equal(over.status, 'ended');
    assert.equal(over.reason, 'client_gone');
    assert.equal(over.endedBy, 'system');
    assert.ok((over.bytesToDevice ?? 0) >= 50_000 && (over.bytesFromDevice ?? 0) >= 50_000);
    assert.equal(over.cost?.pricesDate, '2026-12-03');
    // The device's listener went with it: the agent closed its session.
    await agent.waitForEvent('session.closed', (e) => e.sessionId === id, 30_000);
    process.stderr.write(`# client_gone: session ended ${seconds.toFixed(1)} s after the SIGKILL\n`);
  });

  it('caps an operator’s open sessions with too_many_sessions and a hint, and lists their own, newest first', async () => {
    const operator = await rt.token('operator', 'op-1');
    const grant = await call('PUT', `${rt.apiUrl}/grants/op-1/${DEVICE}`, { token: admin });
    assert.ok(grant.status === 201 || grant.status === 200, grant.text);
    const opened: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await call<{ sessionId: string }>('POST', `${rt.apiUrl}/sessions`, {
        token: operator,
        body: { deviceId: DEVICE, port: echoPort },
      });
      assert.ok(r.status === 201 || r.status === 202, r.text);
      opened.push(r.body.sessionId);
    }
    // The cap is 2: the third open is refused, with the CLI's hint.
    const third = await runCli(['connect', DEVICE, '--port', String(echoPort)], {
      env: { RELAY_BROKER_URL: rt.apiUrl, RELAY_BROKER_TOKEN: operator },
    });
    assert.equal(third.code, 1, third.stderr);
    assert.match(third.stderr, /Too many open sessions/);
    assert.match(third.stderr, /relay-broker sessions end/);
    // Admins are not capped (the idle session and this one are the admin's).
    const adminMore = await connect(['--idle-minutes', '0']);

    const mine = await call<{ sessions: View[] }>('GET', `${rt.apiUrl}/sessions`, { token: operator });
    assert.equal(mine.status, 200, mine.text);
    assert.deepEqual(
      mine.body.sessions.map((s) => s.sessionId),
      [...opened].reverse(),
    );
    const newest = await call<{ sessions: View[] }>('GET', `${rt.apiUrl}/sessions?limit=1`, { token: operator });
    assert.deepEqual(
      newest.body.sessions.map((s) => s.sessionId),
      [opened[1]],
    );
    const all = await call<{ sessions: View[] }>('GET', `${rt.apiUrl}/sessions?limit=2`, { token: admin });
    assert.deepEqual(
      all.body.sessions.map((s) => s.sessionId),
      [adminMore.id, opened[1]],
      'the newest two of everyone’s',
    );
    for (const id of opened) {
      assert.equal((await call('DELETE', `${rt.apiUrl}/sessions/${id}`, { token: operator })).status, 202);
    }
    assert.equal(await adminMore.proc.stop('SIGINT'), 0);
  });

  it('`sessions end` on an ended session says how it ended and exits 0', async () => {
    const id = goneId;
    const r = await runCli(['sessions', 'end', id], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`session ${id} was already ended \\(client_gone\\) by system`));
    const api = await call<{ status: string; reason: string }>('DELETE', `${rt.apiUrl}/sessions/${id}`, {
      token: admin,
    });
    assert.equal(api.status, 200);
    assert.equal(api.body.status, 'ended');
  });

  it('ends a session nothing went through for its idle minutes', async () => {
    assert.ok(idle, 'opened by the first test');
    const over = await untilOver(idle.id, 150_000);
    assert.equal(over.reason, 'idle');
    assert.equal(over.endedBy, 'system');
    await idle.proc.waitForEvent('session.ended', (e) => e.reason === 'idle', 30_000);
    assert.equal(await idle.proc.exited, 1);
  });

  it('exports the audit trail of the day as a table, CSV and NDJSON', async () => {
    const day = new Date().toISOString().slice(0, 10);
    const ndjson = await runCli(['audit', '--since', day, '--until', day, '--format', 'ndjson'], { env });
    assert.equal(ndjson.code, 0, ndjson.stderr);
    const entries = ndjson.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { at: string; action: string; outcome: string; details: Record<string, unknown> });
    const times = entries.map((e) => e.at);
    assert.deepEqual(times, [...times].sort().reverse(), 'newest first');
    const actions = new Set(entries.map((e) => e.action));
    for (const a of ['device.add', 'grant.add', 'session.end', 'session']) assert.ok(actions.has(a), a);
    const gone = entries.find((e) => e.action === 'session' && e.details.reason === 'client_gone');
    assert.equal(gone?.details.endedBy, 'system');
    assert.ok(Number(gone?.details.bytesFromDevice) >= 50_000);
    const csv = await runCli(['audit', '--since', day, '--until', day, '--format', 'csv'], { env });
    const lines = csv.stdout.trim().split('\n');
    assert.match(lines[0], /^at,action,principal,deviceId,sessionId,outcome,/);
    assert.equal(lines.length, entries.length + 1);
    const onlyOp = await runCli(['audit', '--since', '1h', '--principal', 'op-1', '--format', 'ndjson'], {
      env,
    });
    const principals = onlyOp.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { principal: string }).principal);
    assert.ok(principals.length > 0 && principals.every((p) => p === 'op-1'), principals.join());
    const table = await runCli(['audit', '--since', day, '--until', day, '--action', 'device.add'], { env });
    assert.match(table.stdout, /AT\s+ACTION\s+PRINCIPAL/);
    assert.match(table.stdout, new RegExp(`device\\.add\\s+\\S+\\s+${DEVICE}`));
    if (process.env.AUDIT_EXPORT_FILE) await fs.writeFile(process.env.AUDIT_EXPORT_FILE, csv.stdout);
  });

  it('shows the month-to-date and the idle cost in GET /pool and `relay-broker pool`', async () => {
    const pool = await call<{ cost: { monthToDateUsd: number; finishedSessions: number; idle: { sessions: number } } }>(
      'GET',
      `${rt.apiUrl}/pool`,
      { token: admin },
    );
    assert.equal(pool.status, 200, pool.text);
    assert.ok(pool.body.cost.finishedSessions >= 4, JSON.stringify(pool.body.cost));
    assert.ok(pool.body.cost.monthToDateUsd > 0);
    const cli = await runCli(['pool'], { env });
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(
      cli.stdout,
      /month to date \(\d+ finished, \d+ running session\(s\); Relay list prices of 2026-12-03\)/,
    );
    assert.match(cli.stdout, /idle namespaces cost nothing/);
  });
});
