// The console's files and the metrics scrape on the whole local stack, without a browser: the
// console's static route, then GET /api/metrics (admin, local mode) after a real session, showing
// the named OpenTelemetry figures of lib/metrics.ts with the values the session, a maintenance run
// and the ARM calls behind them produced.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connectHybridConnection } from '../../lib/relay/hybridConnection';
import { LocalRuntime } from '../../local/runtime';
import { call } from '../support/http';
import { AgentHarness, startEchoServer, type Enrollment } from '../support/agentHarness';

interface Opened {
  sessionId: string;
  status: string;
  relay: { endpoint: string; hybridConnection: string; sendToken: string };
}

/** Prometheus text → the value of the first sample whose name and labels match. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

/** The sum of every sample of `name` whose labels match (0 when there is none). */
function total(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('console files, and metrics after an end-to-end session', () => {
  const rt = new LocalRuntime({ disableTimers: true, prefillNamespaces: 2, logSink: () => {} });
  let admin: string;
  let device: AgentHarness | undefined;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const scrape = async (token = admin) => call('GET', `${rt.apiUrl}/metrics`, { token });

  before(async () => {
    await rt.start();
    admin = await rt.token('admin');
    echo = await startEchoServer();
  });
  after(async () => {
    await device?.stop();
    await echo?.close();
    await rt.close();
  });

  it('serves its files anonymously with a strict content security policy, and refuses any other path', async () => {
    const index = await fetch(`${rt.apiUrl}/console/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(index.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const redirect = await fetch(`${rt.apiUrl}/console`, { redirect: 'manual' });
    assert.equal(redirect.status, 308);
    assert.equal(redirect.headers.get('location'), '/api/console/');
    const config = (await (await fetch(`${rt.apiUrl}/console/config.json`)).json()) as Record<string, unknown>;
    assert.deepEqual(config, { mode: 'local', auth: 'local' });
    const other = await fetch(`${rt.apiUrl}/console/..%2F..%2Fpackage.json`);
    assert.equal(other.status, 404);
    assert.match(other.headers.get('content-type') ?? '', /^application\/problem\+json/);
  });

  it('GET /metrics is for admins only', async () => {
    assert.equal((await call('GET', `${rt.apiUrl}/metrics`)).status, 401);
    assert.equal((await scrape(await rt.token('operator'))).status, 403);
  });

  it('shows opens and open latency by outcome, sessions live, pool gauges, ARM calls and maintenance runs', async () => {
    const reg = await call<Enrollment>('POST', `${rt.apiUrl}/devices`, {
      token: admin,
      body: { deviceId: 'dev-metrics' },
    });
    assert.equal(reg.status, 201, reg.text);
    device = new AgentHarness(reg.body, { allowPorts: [echo.port], pollMs: 200, ca: rt.relay!.caCertPem }).start();

    const opened = await call<Opened>('POST', `${rt.apiUrl}/sessions`, {
      token: admin,
      body: { deviceId: 'dev-metrics', port: echo.port },
    });
    assert.equal(opened.status, 201, opened.text);
    // A refused open is counted under its problem code.
    const refused = await call('POST', `${rt.apiUrl}/sessions`, {
      token: admin,
      body: { deviceId: 'no-such-device', port: 22 },
    });
    assert.equal(refused.status, 404, refused.text);

    const { relay } = opened.body;
    const stream = await connectHybridConnection(relay.endpoint, relay.hybridConnection, relay.sendToken, {
      ca: rt.relay!.caCertPem,
    });
    stream.write(Buffer.from('ping'));
    await once(stream, 'data');

    // GET /pool counts the pool (the gauges' source) while the session holds its namespace.
    assert.equal((await call('GET', `${rt.apiUrl}/pool`, { token: admin })).status, 200);
    const during = await scrape();
    assert.equal(during.status, 200, during.text);
    assert.match(during.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const t = during.text;
    assert.equal(sample(t, 'relay_broker_session_opens_total', { outcome: 'ready' }), 1);
    assert.equal(sample(t, 'relay_broker_session_opens_total', { outcome: 'device_not_found' }), 1);
    assert.equal(sample(t, 'relay_broker_session_open_duration_count', { outcome: 'ready' }), 1);
    assert.ok((sample(t, 'relay_broker_session_open_duration_sum', { outcome: 'ready' }) ?? 0) > 0);
    assert.equal(sample(t, 'relay_broker_sessions_live', { pool: 'default' }), 1);
    assert.equal(sample(t, 'relay_broker_pool_namespaces', { state: 'leased' }), 1);
    assert.equal(sample(t, 'relay_broker_pool_namespaces', { state: 'available' }), 1);
    // The prefill prepared two namespaces through ARM (the relay emulator) in this process.
    assert.ok((sample(t, 'relay_broker_arm_calls_total', { method: 'PUT', status: '200' }) ?? 0) >= 2, t);

    const closed = once(stream, 'close');
    assert.equal(
      (await call('DELETE', `${rt.apiUrl}/sessions/${opened.body.sessionId}`, { token: admin })).status,
      202,
    );
    await closed;

    // A maintenance run (the timer, triggered by hand) records its outcome and the pool's counts.
    const tick = await fetch(`${rt.baseUrl}/admin/functions/poolMaintenanceTimer`, {
      method: 'POST',
      headers: { 'x-functions-key': rt.systemKey },
    });
    assert.equal(tick.status, 202);
    const after = await waitFor('a maintenance run in the metrics, with the session gone', async () => {
      const r = await scrape();
      const runs = sample(r.text, 'relay_broker_pool_maintenance_runs_total', { outcome: 'succeeded' });
      return runs && sample(r.text, 'relay_broker_sessions_live', { pool: 'default' }) === 0 ? r.text : undefined;
    });
    assert.equal(sample(after, 'relay_broker_pool_maintenance_runs_total', { outcome: 'succeeded' }), 1);
    assert.equal(sample(after, 'relay_broker_pool_maintenance_duration_count', { outcome: 'succeeded' }), 1);
    // The recycle deleted and recreated the hybrid connection through ARM.
    assert.ok((sample(after, 'relay_broker_arm_calls_total', { method: 'DELETE', status: '200' }) ?? 0) >= 1, after);
    // Every 429 among the ARM answers (the emulator throttles like ARM does) is also a throttle.
    assert.equal(
      total(after, 'relay_broker_arm_throttled_total'),
      total(after, 'relay_broker_arm_calls_total', { status: '429' }),
    );
  });
});
