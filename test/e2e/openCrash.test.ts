// The host SIGKILLed while 20 opens are in flight (host in a child process, restarted on the same
// storage): callers lose their answers, yet every session ends up in a state that is true on the
// wire (ready and carrying bytes, or failed/ended with its namespace back), no record stays
// `pending`, and no namespace stays leased to anything but a live session. Maintenance's tick (its
// session sweep) is triggered by hand, as the 1-minute timer would. Prints the time until the API's
// statuses equal the wire's (docs/reliability.md "Ending and recycling").
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { TableClient } from '@azure/data-tables';
import { NamespaceStore } from '../../lib/pool/namespaceStore';
import { SessionStore, type SessionRecord } from '../../lib/sessions/sessionStore';
import { connectHybridConnection } from '../../lib/relay/hybridConnection';
import { LocalRuntime } from '../../local/runtime';
import { call } from '../support/http';
import { AgentHarness, startEchoServer, type Enrollment } from '../support/agentHarness';

const OPENS = 20;
const DEVICES = 4;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface View {
  sessionId: string;
  status: string;
  reason?: string;
  relay?: { endpoint: string; hybridConnection: string; sendToken: string; namespace: string };
}

describe('the host SIGKILLed while 20 opens are in flight', () => {
  const rt = new LocalRuntime({
    hostProcess: true,
    disableTimers: true,
    prefillNamespaces: OPENS + 2,
    settings: { SESSION_RATE_LIMIT_PER_MINUTE: '1000', SESSION_READY_TIMEOUT_MS: '20000' },
  });
  const devices: AgentHarness[] = [];
  let echo: Awaited<ReturnType<typeof startEchoServer>>;

  before(async () => {
    echo = await startEchoServer();
    await rt.start();
  });
  after(async () => {
    await Promise.all(devices.map((d) => d.stop()));
    await rt.close();
    await echo.close();
  });

  it('leaves every session ready and working or failed, none pending, no lease leaked', async (t) => {
    const admin = await rt.token('admin');
    const ca = rt.relay!.caCertPem;
    const table = (name: string) =>
      TableClient.fromConnectionString(rt.azurite!.connectionString, name, { allowInsecureConnection: true });
    const namespaces = new NamespaceStore(table('namespaces'), 'default');
    const records = new SessionStore(table('sessions'));
    for (let i = 0; i < DEVICES; i++) {
      const r = await call<Enrollment>('POST', `${rt.apiUrl}/devices`, {
        token: admin,
        body: { deviceId: `opencrash-${i}` },
      });
      assert.equal(r.status, 201, r.text);
      devices.push(new AgentHarness(r.body, { allowPorts: [echo.port], pollMs: 250, ca }).start());
    }

    // 20 opens at once; the host dies once their orchestrations have started leasing namespaces,
    // so the opens are caught at every stage: not recorded yet, recorded, leased, notified, ready.
    const answers = Array.from({ length: OPENS }, (_, i) =>
      call<View>('POST', `${rt.apiUrl}/sessions`, {
        token: admin,
        body: { deviceId: `opencrash-${i % DEVICES}`, port: echo.port },
      }).then(
        (r) => ({ status: r.status, sessionId: r.body?.sessionId }),
        () => ({ status: 0, sessionId: undefined }),
      ),
    );
    for (const deadline = Date.now() + 60_000; (await namespaces.list({ states: ['leased'] })).length < 2;) {
      assert.ok(Date.now() < deadline, 'opens reach the host');
      await sleep(50);
    }
    const killedAt = Date.now();
    await rt.restartHost('SIGKILL');
    const restartedAt = Date.now();
    const answered = await Promise.all(answers);
    const lost = answered.filter((a) => a.status === 0).length;
    assert.ok(lost >= 1, 'some opens were in flight when the host died');
    for (const a of answered) assert.ok([0, 201, 202].includes(a.status), `open answered ${a.status}`);

    // Settled: no record pending or ending, every lease held by a ready session and every ready
    // session holding one; the API says what the records say. Maintenance ticks as its timer would.
    const tick = async () => {
      const res = await fetch(`${rt.baseUrl}/admin/functions/poolMaintenanceTimer`, {
        method: 'POST',
        headers: { 'x-functions-key': rt.systemKey },
      });
      assert.equal(res.status, 202);
    };
    const unsettled = async (): Promise<string[]> => {
      const all = await records.list({ limit: 100 });
      const problems = all
        .filter((r) => !['ready', 'ended', 'failed'].includes(r.status))
        .map((r) => `${r.sessionId} ${r.status}`);
      const ready = new Set(all.filter((r) => r.status === 'ready').map((r) => r.sessionId));
      const leased = await namespaces.list({ states: ['leased', 'recycling'] });
      for (const ns of leased)
        if (ns.state !== 'leased' || !ns.sessionId || !ready.has(ns.sessionId))
          problems.push(`${ns.name} ${ns.state} for ${ns.sessionId ?? 'nobody'}`);
      const holders = new Set(leased.map((ns) => ns.sessionId));
      for (const id of ready) if (!holders.has(id)) problems.push(`${id} ready without a lease`);
      return problems;
    };
    let settledAt = 0;
    for (let round = 0, deadline = Date.now() + 240_000; !settledAt; round++) {
      const problems = await unsettled();
      if (!problems.length) settledAt = Date.now();
      else {
        assert.ok(Date.now() < deadline, `settled: ${problems.join('; ')}`);
        if (round % 10 === 0) await tick();
        await sleep(500);
      }
    }

    const all: SessionRecord[] = await records.list({ limit: 100 });
    assert.ok(all.length >= 3 && all.length <= OPENS, `${all.length} sessions recorded`);
    for (const a of answered)
      if (a.sessionId)
        assert.ok(
          all.some((r) => r.sessionId === a.sessionId),
          'every answered session is recorded',
        );
    // The API agrees with the records, and a ready session carries bytes for its opener.
    let ready = 0;
    for (const r of all) {
      const v = await call<View>('GET', `${rt.apiUrl}/sessions/${r.sessionId}`, { token: admin });
      assert.equal(v.status, 200, v.text);
      assert.equal(v.body.status, r.status, `${r.sessionId}: API and record agree`);
      if (r.status === 'failed') assert.ok(v.body.reason, 'a failed session says why');
      // There are more namespaces than opens: a refusal for want of one would be false.
      assert.notEqual(r.reason, 'pool_exhausted', `${r.sessionId} refused with namespaces available`);
      if (r.status !== 'ready') continue;
      ready++;
      const relay = v.body.relay!;
      const stream = await connectHybridConnection(relay.endpoint, relay.hybridConnection, relay.sendToken, { ca });
      stream.write(Buffer.from(`through ${r.sessionId}`));
      const [got] = (await once(stream, 'data')) as [Buffer];
      assert.equal(got.toString(), `through ${r.sessionId}`);
      stream.destroy();
    }

    // Ending the live ones returns every namespace: nothing was leaked by the crash.
    for (const r of all.filter((x) => x.status === 'ready')) {
      const del = await call('DELETE', `${rt.apiUrl}/sessions/${r.sessionId}`, { token: admin });
      assert.equal(del.status, 202, del.text);
    }
    for (const deadline = Date.now() + 120_000; ;) {
      const held = await namespaces.list({ states: ['leased', 'recycling'] });
      const open = (await records.list({ limit: 100 })).filter((r) => !['ended', 'failed'].includes(r.status));
      if (!held.length && !open.length) break;
      assert.ok(
        Date.now() < deadline,
        `all back: ${held.map((n) => `${n.name} ${n.state}`).join(', ')} ${open.map((r) => r.status).join(', ')}`,
      );
      await sleep(250);
    }
    const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    const by = (st: string) => all.filter((r) => r.status === st).map((r) => r.reason ?? st);
    t.diagnostic(
      `${all.length} recorded, ${lost} answers lost; settled ${s(settledAt - killedAt)} after the kill ` +
        `(${s(settledAt - restartedAt)} after the host was back): ${ready} ready and working, ` +
        `failed [${by('failed').join(', ')}], ended [${by('ended').join(', ')}]`,
    );
  });
});
