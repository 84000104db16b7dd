// Secrets never reach the logs: a full session life on the local stack (register, open, bytes,
// ready, rotate, failed auth, end, delete) with every log line of the host and every console
// line of this process captured, then scanned for JWTs, SAS signatures and keys.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { format } from 'node:util';
import { containsSecret, findSecretKinds } from '../../lib/auth/logRedaction';
import { connectHybridConnection } from '../../lib/relay/hybridConnection';
import type { LogRecord } from '../../local/host/functionsHost';
import { LocalRuntime } from '../../local/runtime';
import { call } from '../support/http';
import { AgentHarness, startEchoServer, type Enrollment } from '../support/agentHarness';

describe('no secret in any log line', () => {
  const records: LogRecord[] = [];
  const consoleLines: string[] = [];
  const originals = {
    log: console.log,
    info: console.info,
    warn: console.warn,
    error: console.error,
    debug: console.debug,
  };
  const rt = new LocalRuntime({ disableTimers: true, prefillNamespaces: 2, logSink: (r) => records.push(r) });
  let device: AgentHarness | undefined;
  let echo: Awaited<ReturnType<typeof startEchoServer>> | undefined;

  before(async () => {
    for (const k of Object.keys(originals) as Array<keyof typeof originals>) {
      console[k] = (...args: unknown[]) => {
        consoleLines.push(format(...args));
      };
    }
    await rt.start();
    echo = await startEchoServer();
  });
  after(async () => {
    await device?.stop();
    await rt.close();
    await echo?.close();
    Object.assign(console, originals);
  });

  it('runs a whole session life and finds no JWT, SAS signature or key in the logs', async () => {
    const admin = await rt.token('admin');
    const reg = await call<Enrollment>('POST', `${rt.apiUrl}/devices`, {
      token: admin,
      body: { deviceId: 'scan-dev' },
    });
    assert.equal(reg.status, 201);
    // The agent's own log lines are scanned too: the device side holds the listen token and readyToken.
    device = new AgentHarness(reg.body, {
      allowPorts: [echo!.port],
      pollMs: 200,
      ca: rt.relay!.caCertPem,
      log: (event, fields, human) => consoleLines.push(`${event} ${JSON.stringify(fields)} ${human}`),
    }).start();
    // Failed authentication attempts carry tokens too: they must not be echoed into logs.
    await call('GET', `${rt.apiUrl}/devices`, { token: admin.slice(0, -4) + 'AAAA' });
    await call('GET', `${rt.apiUrl}/devices`, { headers: { authorization: 'Bearer not-a-jwt' } });
    const r = await call<{
      sessionId: string;
      relay: { endpoint: string; hybridConnection: string; sendToken: string };
    }>('POST', `${rt.apiUrl}/sessions`, {
      token: admin,
      body: { deviceId: 'scan-dev', port: echo!.port },
    });
    assert.equal(r.status, 201, r.text);
    const s = await connectHybridConnection(
      r.body.relay.endpoint,
      r.body.relay.hybridConnection,
      r.body.relay.sendToken,
      { ca: rt.relay!.caCertPem },
    );
    s.write('ping');
    await once(s, 'data');
    // A ready call with a wrong token, and a replayed one.
    await call('POST', `${rt.apiUrl}/sessions/${r.body.sessionId}/ready`, { body: { readyToken: 'A'.repeat(43) } });
    await call('POST', `${rt.apiUrl}/devices/scan-dev/rotate`, { token: admin });
    const closed = once(s, 'close');
    await call('DELETE', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: admin });
    await closed;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const st = await call<{ status: string }>('GET', `${rt.apiUrl}/sessions/${r.body.sessionId}`, { token: admin });
      if (st.body.status === 'ended') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    await call('DELETE', `${rt.apiUrl}/devices/scan-dev`, { token: admin });

    const lines = [...records.map((l) => l.message), ...consoleLines];
    assert.ok(
      lines.some((l) => l.includes(r.body.sessionId)),
      'the scenario logged its session',
    );
    const leaks = lines.filter(containsSecret).map((l) => `${findSecretKinds(l).join(',')}: ${l.slice(0, 80)}…`);
    assert.deepEqual(leaks, []);
    // And none of the actual secrets of this run appears verbatim.
    const secrets = [
      admin,
      r.body.relay.sendToken,
      reg.body.queueSas,
      ...device.opened.map((m) => m.relay.listenToken),
      ...device.opened.map((m) => m.readyToken),
    ];
    for (const secret of secrets) {
      const needle = secret.length > 40 ? secret.slice(-40) : secret;
      assert.equal(
        lines.some((l) => l.includes(needle)),
        false,
        'a secret of this run appears in a log line',
      );
    }
  });
});
