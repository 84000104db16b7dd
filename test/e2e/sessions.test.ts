// Sessions end to end on the whole local stack: functions host + durable engine + Azurite +
// relay emulator, called over HTTP the way a user does, with the product's device agent on its
// queue piping to an echo server.
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
import { AgentHarness, startEchoServer, type Enrollment } from '../support/agentHarness';

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
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const devices: AgentHarness[] = [];

  /** Registers a device and runs its agent; a silent device is one whose agent is not running. */
  const addDevice = async (deviceId: string, silent = false) => {
    const r = await call<Enrollment>('POST', `${rt.apiUrl}/devices`, { token: admin, body: { deviceId } });
    assert.equal(r.status, 201, r.text);
    if (silent) return undefined;
    const d = new AgentHarness(r.body, { allowPorts: [echo.port], pollMs: 200, ca }).start();
    devices.push(d);
    return d;
  };
  const open = (deviceId: string, extra: Record<string, unknown> = {}, token = admin) =>
    call<Opened>('POST', `${rt.apiUrl}/sessions`, { token, body: { deviceId, port: echo.port, ...extra } });

  before(async () => {
    echo = await startEchoServer();
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
    await echo.close();
  });

  it('opens with credentials, carries bytes, and a DELETE drops the connection, kills both tokens and recycles the namespace', async () => {
    const device = (await addDevice('dev-e2e-1'))!;
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
    const del = await call<{ status: string }>('DELETE', `${rt.apiUrl}/sessions/${r.body.sessionId}`, {
      token: admin,
    });
    assert.equal(del.status, 202);
    assert.equal(del.body.status, 'ending');
    // From the end request on, the session is no longer ready to anyone.
    const right = await call<{ status: string }>('GET', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: admin });
    assert.ok(['ending', 'ended'].includes(right.body.status), right.text);
    await closed;

    const after = await waitFor('the namespace to be recycled', async () => {
      const ns = await store.get(relay.namespace);
      return ns?.state === 'available' ? ns : undefined;
    });
    assert.equal(after.generation, (before?.generation ?? Number.NaN) + 1);
    assert.equal(after.sessionId, undefined);
    // Both tokens of the ended session are refused now: their hybrid connection is gone (the next
    // generation has a fresh name, on which their audience does not match either).
    assert.notEqual(after.hybridConnection, relay.hybridConnection);
    assert.equal(
      await handshakeStatus(connectHybridConnection(relay.endpoint, relay.hybridConnection, relay.sendToken, { ca })),
      404,
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
    await waitFor('the device to be told to close', () =>
      Promise.resolve(device.closed.includes(r.body.sessionId) ? true : undefined),
    );
  });

  it('answers GET and DELETE by session id once the orchestration history is purged', async () => {
    await addDevice('dev-purged');
    const r = await open('dev-purged');
    assert.equal(r.status, 201, r.text);
    assert.equal((await call('DELETE', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: admin })).status, 202);
    await waitFor('the session to be recorded ended', async () => {
      const s = await call<{ status: string }>('GET', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: admin });
      return s.body.status === 'ended' ? true : undefined;
    });
    const engine = rt.durable!.engine!;
    // The instance completes right after it records the end: wait for that, then purge it.
    await waitFor('the orchestration to complete and be purged', async () =>
      (await engine.client.purge(r.body.sessionId)) === 1 ? true : undefined,
    );
    const shown = await call<Record<string, unknown>>('GET', `${rt.apiUrl}/sessions/${r.body.sessionId}`, {
      token: admin,
    });
    assert.equal(shown.status, 200, shown.text);
    assert.equal(shown.body.status, 'ended');
    assert.equal(shown.body.reason, 'requested');
    assert.equal(shown.body.deviceId, 'dev-purged');
    const again = await call<Record<string, unknown>>('DELETE', `${rt.apiUrl}/sessions/${r.body.sessionId}`, {
      token: admin,
    });
    // Nothing to do: 200 (not 202) with the end it had, and who ended it.
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.status, 'ended');
    assert.equal(again.body.endedBy, 'local-admin');
  });

  it('answers 504 device_not_ready when the device never answers, and the namespace returns to the pool', async () => {
    await addDevice('dev-silent', true);
    const r = await open('dev-silent');
    if (r.status === 202) {
      // A loaded machine can spend the open budget before the ready timeout is recorded: then the
      // answer is 202 pending, and the session must still fail with device_not_ready soon after.
      const sessionId = (r.body as { sessionId: string }).sessionId;
      const failed = await waitFor('the pending session to fail', async () => {
        const s = await call<{ status: string; reason?: string }>('GET', `${rt.apiUrl}/sessions/${sessionId}`, {
          token: admin,
        });
        return s.body.status === 'failed' || s.body.status === 'ended' ? s.body : undefined;
      });
      assert.equal(failed.reason, 'device_not_ready');
    } else {
      assertProblem(r, 504, 'device_not_ready');
    }
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

  it('refuses a ready call with the wrong token (403) and one for a session not pending (409); the same ready again is 204', async () => {
    await addDevice('dev-ready');
    const r = await open('dev-ready');
    assert.equal(r.status, 201);
    const wrong = await call('POST', `${rt.apiUrl}/sessions/${r.body.sessionId}/ready`, {
      body: { readyToken: 'x'.repeat(43) },
    });
    assertProblem(wrong, 403, 'invalid_ready_token');
    const device = devices.find((d) => d.enrollment.deviceId === 'dev-ready')!;
    const token = device.opened.find((m) => m.sessionId === r.body.sessionId)!.readyToken;
    const readyUrl = `${rt.apiUrl}/sessions/${r.body.sessionId}/ready`;
    // The device's call timed out on its side after it was taken, and it asks again: the same answer.
    const again = await call('POST', readyUrl, { body: { readyToken: token } });
    assert.equal(again.status, 204, again.text);
    assertProblem(
      await call('POST', readyUrl, { body: { readyToken: token, status: 'refused', detail: 'late' } }),
      409,
      'session_not_pending',
    );
    assert.equal((await call('DELETE', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: admin })).status, 202);
    assertProblem(await call('POST', readyUrl, { body: { readyToken: token } }), 409, 'session_not_pending');
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
    // The bucket holds 30 and refills at 30 a minute: a slow machine earns back a token every 2 s,
    // so the first 429 comes at request 31 + (seconds spent) / 2, never later.
    const started = Date.now();
    const answers: number[] = [];
    let limited: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 60 && !limited; i++) {
      const r = await call('POST', `${rt.apiUrl}/sessions`, { token: flood, body: { deviceId: 'lonely' } });
      if (r.status === 429) limited = r;
      else answers.push(r.status);
    }
    const refilled = Math.floor((Date.now() - started) / 2000);
    assert.ok(limited, 'a 429 came within 60 requests');
    assert.deepEqual([...new Set(answers)], [403], 'every request before it reached the grant check');
    assert.ok(answers.length >= 30, `the first 30 pass (${answers.length} passed)`);
    assert.ok(answers.length <= 30 + refilled, `at most 30 + ${refilled} refilled pass (${answers.length} passed)`);
    assertProblem(limited, 429, 'rate_limited');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assertProblem(
      await call('POST', `${rt.apiUrl}/sessions`, { token: other, body: { deviceId: 'lonely' } }),
      403,
      'device_not_granted',
    );
  });
});
