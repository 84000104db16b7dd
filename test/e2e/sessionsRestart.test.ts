// The host dies with 20 sessions open: after a SIGKILL and a restart on the same storage, every
// session still ends (ten by request, ten by their lifetime timer) and recycles its namespace;
// no namespace is left leased.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TableClient } from '@azure/data-tables';
import { NamespaceStore } from '../../lib/pool/namespaceStore';
import { LocalRuntime } from '../../local/runtime';
import { call } from '../support/http';
import { AgentHarness, type Enrollment } from '../support/agentHarness';

const SESSIONS = 20;

describe('sessions survive a host crash', () => {
  const rt = new LocalRuntime({
    hostProcess: true,
    disableTimers: true,
    prefillNamespaces: SESSIONS + 2,
    // The crash is what is tested, not open latency: a generous ready timeout keeps a loaded
    // machine from failing sessions before they are ready.
    settings: { SESSION_RATE_LIMIT_PER_MINUTE: '1000', SESSION_READY_TIMEOUT_MS: '30000' },
  });
  const devices: AgentHarness[] = [];

  before(async () => {
    await rt.start();
  });
  after(async () => {
    await Promise.all(devices.map((d) => d.stop()));
    await rt.close();
  });

  it('ends and recycles every session after a SIGKILL and restart', async () => {
    const admin = await rt.token('admin');
    for (let i = 0; i < 4; i++) {
      const r = await call<Enrollment>('POST', `${rt.apiUrl}/devices`, {
        token: admin,
        body: { deviceId: `crash-${i}` },
      });
      assert.equal(r.status, 201, r.text);
      devices.push(new AgentHarness(r.body, { allowPorts: [22], pollMs: 250, ca: rt.relay!.caCertPem }).start());
    }
    // Half live for one minute (their lifetime timer must fire after the restart), half until ended.
    const opened = await Promise.all(
      Array.from({ length: SESSIONS }, (_, i) =>
        call<{ sessionId: string; relay: { namespace: string } }>('POST', `${rt.apiUrl}/sessions`, {
          token: admin,
          body: { deviceId: `crash-${i % 4}`, port: 22, ...(i % 2 === 0 ? { maxLifetimeMinutes: 1 } : {}) },
        }),
      ),
    );
    // A slow machine may answer 202 (still pending after the open budget): wait for those to be
    // ready, so every session holds its namespace before the crash. Speed is the benchmark's job.
    for (const r of opened) {
      assert.ok(r.status === 201 || r.status === 202, r.text);
      const deadline = Date.now() + 60_000;
      while (!r.body.relay && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        const view = await call<{ status: string; relay?: { namespace: string } }>(
          'GET',
          `${rt.apiUrl}/sessions/${r.body.sessionId}`,
          { token: admin },
        );
        assert.ok(view.body.status === 'pending' || view.body.status === 'ready', view.text);
        if (view.body.relay) r.body.relay = view.body.relay;
      }
      assert.ok(r.body.relay, `session ${r.body.sessionId} became ready`);
    }
    const openedAt = Date.now();
    const byLifetime = opened.filter((_, i) => i % 2 === 0).map((r) => r.body);
    const byRequest = opened.filter((_, i) => i % 2 === 1).map((r) => r.body);
    const namespaces = new Set(opened.map((r) => r.body.relay.namespace));
    assert.equal(namespaces.size, SESSIONS, 'every session has a namespace of its own');

    await rt.restartHost('SIGKILL');

    for (const s of byRequest) {
      const del = await call('DELETE', `${rt.apiUrl}/sessions/${s.sessionId}`, { token: admin });
      assert.equal(del.status, 202, del.text);
    }
    const store = new NamespaceStore(
      TableClient.fromConnectionString(rt.azurite!.connectionString, 'namespaces', { allowInsecureConnection: true }),
      'default',
    );
    const statusOf = async (id: string) =>
      (
        await call<{ status: string; reason?: string; endedAt?: string }>('GET', `${rt.apiUrl}/sessions/${id}`, {
          token: admin,
        })
      ).body;
    const deadline = Date.now() + 110_000;
    let pending = [...byLifetime, ...byRequest].map((s) => s.sessionId);
    while (pending.length && Date.now() < deadline) {
      const states = await Promise.all(pending.map(async (id) => [id, (await statusOf(id)).status] as const));
      pending = states.filter(([, st]) => st !== 'ended').map(([id]) => id);
      if (pending.length) await new Promise((r) => setTimeout(r, 500));
    }
    assert.deepEqual(pending, [], 'every session ended');

    for (const s of byRequest) assert.equal((await statusOf(s.sessionId)).reason, 'requested');
    for (const s of byLifetime) {
      const st = await statusOf(s.sessionId);
      assert.equal(st.reason, 'lifetime');
      const endedAt = Date.parse(st.endedAt!);
      // On time: not before the minute was up, and soon after.
      assert.ok(endedAt >= openedAt + 55_000, `ended at ${st.endedAt}, too early`);
    }
    const rows = await Promise.all([...namespaces].map((n) => store.get(n)));
    for (const ns of rows) {
      assert.ok(ns, 'the namespace row still exists');
      assert.equal(ns.state, 'available', `${ns.name} returned to the pool`);
      assert.equal(ns.generation, 1, `${ns.name} was recycled exactly once`);
    }
    const leased = await store.list({ states: ['leased', 'recycling'] });
    assert.deepEqual(
      leased.map((n) => n.name),
      [],
      'no namespace is left leased',
    );
  });
});
