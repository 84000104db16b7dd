// Sessions end to end on the whole local stack: functions host + durable engine + Azurite +
// relay emulator, called over HTTP the way a user does, with a simulated device on its queue.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { TableClient } from '@azure/data-tables';
import { NamespaceStore } from '../../lib/pool/namespaceStore';
import {
  connectHybridConnection,
  HybridConnectionListener,
  RelayHandshakeError,
} from '../../lib/relay/hybridConnection';
import { LocalRuntime } from '../../local/runtime';
import { assertProblem, call } from '../support/http';
import { SimulatedDevice, type Enrollment } from '../support/simulatedDevice';

interface Opened {
  sessionId: string;
  status: string;
  relay: { namespace: string; endpoint: string; hybridConnection: string; sendToken: string; expiresAt: string };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function handshakeStatus(p: Promise<unknown>): Promise<number> {
  try {
    const s = (await p) as { destroy(): void } | HybridConnectionListener;
    if ('destroy' in s) s.destroy();
    return 200;
  } catch (err) {
    if (err instanceof RelayHandshakeError) return err.statusCode;
    throw err;
  }
}

describe('sessions end to end', () => {
  const rt = new LocalRuntime({ disableTimers: true, prefillNamespaces: 4, logSink: () => {} });
  let admin: string;
  let ca: string;
  let store: NamespaceStore;
  const devices: SimulatedDevice[] = [];

  const addDevice = async (deviceId: string, silent = false) => {
    const r = await call<Enrollment>('POST', `${rt.apiUrl}/devices`, { token: admin, body: { deviceId } });
    assert.equal(r.status, 201, r.text);
    const d = new SimulatedDevice(r.body, { pollMs: 200, ca, silent }).start();
    devices.push(d);
    return d;
  };
  const open = (deviceId: string, extra: Record<string, unknown> = {}, token = admin) =>
    call<Opened>('POST', `${rt.apiUrl}/sessions`, { token, body: { deviceId, port: 22, ...extra } });

  before(async () => {
    await rt.start();
    admin = await rt.token('admin');
    ca = rt.relay!.caCertPem;
    store = new NamespaceStore(
      TableClient.fromConnectionString(rt.azurite!.connectionString, 'namespaces', { allowInsecureConnection: true }),
      'default',
    );
  });
  after(async () => {
    await Promise.all(devices.map((d) => d.stop()));
    await rt.close();
  });

  it('opens with credentials, carries bytes, and a DELETE drops the connection, kills both tokens and recycles the namespace', async () => {
    const device = await addDevice('dev-e2e-1');
    const r = await open('dev-e2e-1');
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.status, 'ready');
    const { relay } = r.body;
    assert.match(relay.sendToken, /^SharedAccessSignature sr=.*&sig=.*&se=\d+&skn=/);
    const before = await store.get(relay.namespace);
    assert.equal(before?.state, 'leased');
    assert.equal(before?.sessionId, r.body.sessionId);

    // Bytes flow sender → emulator → device listener and back.
    const stream = await connectHybridConnection(relay.endpoint, relay.hybridConnection, relay.sendToken, { ca });
    stream.write(Buffer.from('hello through the relay'));
    const [echo] = (await once(stream, 'data')) as [Buffer];
    assert.equal(echo.toString(), 'hello through the relay');

    const listenToken = device.opened.find((m) => m.sessionId === r.body.sessionId)!.relay.listenToken;
    const closed = once(stream, 'close');
    const del = await call('DELETE', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: admin });
    assert.equal(del.status, 202);
    await closed;

    const after = await waitFor('the namespace to be recycled', async () => {
      const ns = await store.get(relay.namespace);
      return ns?.state === 'available' ? ns : undefined;
    });
    assert.equal(after.generation, before!.generation + 1);
    assert.equal(after.sessionId, undefined);
    // Both tokens of the ended session are refused now.
    assert.equal(
      await handshakeStatus(connectHybridConnection(relay.endpoint, relay.hybridConnection, relay.sendToken, { ca })),
      401,
    );
    const l = new HybridConnectionListener({
      endpoint: relay.endpoint,
      hybridConnection: relay.hybridConnection,
      token: listenToken,
      ca,
    });
    l.on('error', () => undefined);
    await assert.rejects(l.start());
    await l.close();

    const shown = await waitFor('the session to be recorded ended', async () => {
      const s = await call<Record<string, unknown>>('GET', `${rt.apiUrl}/sessions/${r.body.sessionId}`, {
        token: admin,
      });
      return s.body.status === 'ended' ? s : undefined;
    });
    assert.equal(shown.body.reason, 'requested');
    assert.equal(shown.body.relay, undefined);
    await waitFor('the device to be told to close', async () =>
      device.closed.includes(r.body.sessionId) ? true : undefined,
    );
  });

  it('answers 504 device_not_ready when the device never answers, and the namespace returns to the pool', async () => {
    await addDevice('dev-silent', true);
    const started = Date.now();
    const r = await open('dev-silent');
    assertProblem(r, 504, 'device_not_ready');
    assert.ok(Date.now() - started < 8_500, 'answered within the budget');
    // The orchestration recycles first and records the end (with the namespace) after: the 504 can
    // come before the record does, the more so when ARM answers a recycle write 429 and it is retried.
    const ns = await waitFor('the session to record its namespace', async () => {
      const list = await call<{ sessions: Array<{ sessionId: string; namespace?: string }> }>(
        'GET',
        `${rt.apiUrl}/sessions?deviceId=dev-silent`,
        { token: admin },
      );
      return list.body.sessions[0]?.namespace;
    });
    await waitFor('the namespace to return', async () =>
      (await store.get(ns))?.state === 'available' ? true : undefined,
    );
    const s = await waitFor('the session to be recorded failed', async () => {
      const x = await call<Record<string, unknown>>('GET', `${rt.apiUrl}/sessions?deviceId=dev-silent&status=failed`, {
        token: admin,
      });
      return (x.body.sessions as unknown[]).length ? x : undefined;
    });
    assert.equal((s.body.sessions as Array<Record<string, unknown>>)[0].reason, 'device_not_ready');
  });

  it('refuses a ready call with the wrong token (403) and one for a session not pending (409)', async () => {
    await addDevice('dev-ready');
    const r = await open('dev-ready');
    assert.equal(r.status, 201);
    const wrong = await call('POST', `${rt.apiUrl}/sessions/${r.body.sessionId}/ready`, {
      body: { readyToken: 'x'.repeat(43) },
    });
    assertProblem(wrong, 403, 'invalid_ready_token');
    const device = devices.find((d) => d.enrollment.deviceId === 'dev-ready')!;
    const token = device.opened.find((m) => m.sessionId === r.body.sessionId)!.readyToken;
    const again = await call('POST', `${rt.apiUrl}/sessions/${r.body.sessionId}/ready`, {
      body: { readyToken: token },
    });
    assertProblem(again, 409, 'session_not_pending');
    assert.equal((await call('DELETE', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: admin })).status, 202);
  });

  it('gives credentials only to the opener and hides sessions from other operators', async () => {
    await addDevice('dev-owner');
    await call('PUT', `${rt.apiUrl}/grants/alice/dev-owner`, { token: admin });
    const alice = await rt.token('operator', 'alice');
    const bob = await rt.token('operator', 'bob');
    const r = await open('dev-owner', {}, alice);
    assert.equal(r.status, 201, r.text);
    const mine = await call<Record<string, unknown>>('GET', `${rt.apiUrl}/sessions/${r.body.sessionId}`, {
      token: alice,
    });
    assert.equal(mine.status, 200);
    assert.ok(mine.body.relay, 'the opener gets the relay credentials');
    const asAdmin = await call<Record<string, unknown>>('GET', `${rt.apiUrl}/sessions/${r.body.sessionId}`, {
      token: admin,
    });
    assert.equal(asAdmin.status, 200);
    assert.equal(asAdmin.body.relay, undefined, 'an admin is never shown the tokens');
    assertProblem(
      await call('GET', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: bob }),
      404,
      'session_not_found',
    );
    assertProblem(
      await call('DELETE', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: bob }),
      404,
      'session_not_found',
    );
    assertProblem(await open('dev-owner', {}, bob), 403, 'device_not_granted');
    assert.equal((await call('DELETE', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: alice })).status, 202);
  });

  it('answers 404 for an unknown device and 400 for a bad request', async () => {
    assertProblem(await open('no-such-device'), 404, 'device_not_found');
    assertProblem(
      await call('POST', `${rt.apiUrl}/sessions`, { token: admin, body: { deviceId: 'x' } }),
      400,
      'validation_failed',
    );
    assertProblem(
      await call('POST', `${rt.apiUrl}/sessions`, { token: admin, body: { deviceId: 'abc', port: 70000 } }),
      400,
    );
    assertProblem(await call('GET', `${rt.apiUrl}/sessions/not-a-uuid`, { token: admin }), 400);
    assertProblem(
      await call('POST', `${rt.apiUrl}/sessions`, { token: admin, body: { deviceId: 'abc', maxLifetimeMinutes: 721 } }),
      400,
      'validation_failed',
    );
  });

  it('answers 404, never 500, for a session id that does not exist, whoever asks', async () => {
    const unknown = '00000000-0000-4000-8000-000000000000';
    const operator = await rt.token('operator', 'carol');
    assertProblem(await call('GET', `${rt.apiUrl}/sessions/${unknown}`, { token: admin }), 404, 'session_not_found');
    assertProblem(await call('DELETE', `${rt.apiUrl}/sessions/${unknown}`, { token: admin }), 404, 'session_not_found');
    assertProblem(await call('GET', `${rt.apiUrl}/sessions/${unknown}`, { token: operator }), 404, 'session_not_found');
  });

  it('deleting a device ends its sessions', async () => {
    await addDevice('dev-doomed');
    const r = await open('dev-doomed');
    assert.equal(r.status, 201);
    assert.equal((await call('DELETE', `${rt.apiUrl}/devices/dev-doomed`, { token: admin })).status, 204);
    const ns = r.body.relay.namespace;
    await waitFor('the namespace to be recycled', async () =>
      (await store.get(ns))?.state === 'available' ? true : undefined,
    );
  });
});

describe('an empty pool', () => {
  const rt = new LocalRuntime({ disableTimers: true, prefillNamespaces: 0, logSink: () => {} });
  before(async () => {
    await rt.start();
  });
  after(async () => {
    await rt.close();
  });
  it('answers 503 pool_exhausted with Retry-After', async () => {
    const admin = await rt.token('admin');
    assert.equal(
      (await call('POST', `${rt.apiUrl}/devices`, { token: admin, body: { deviceId: 'lonely' } })).status,
      201,
    );
    const r = await call('POST', `${rt.apiUrl}/sessions`, { token: admin, body: { deviceId: 'lonely' } });
    assertProblem(r, 503, 'pool_exhausted');
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
  });

  it('limits POST /sessions per principal: the 31st in a minute gets 429 with Retry-After', async () => {
    const flood = await rt.token('operator', 'flooder');
    const other = await rt.token('operator', 'patient');
    const answers: number[] = [];
    for (let i = 0; i < 30; i++)
      answers.push(
        (await call('POST', `${rt.apiUrl}/sessions`, { token: flood, body: { deviceId: 'lonely' } })).status,
      );
    assert.deepEqual([...new Set(answers)], [403], 'the first 30 reach the grant check');
    const limited = await call('POST', `${rt.apiUrl}/sessions`, { token: flood, body: { deviceId: 'lonely' } });
    assertProblem(limited, 429, 'rate_limited');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assertProblem(
      await call('POST', `${rt.apiUrl}/sessions`, { token: other, body: { deviceId: 'lonely' } }),
      403,
      'device_not_granted',
    );
  });
});
