// Pool maintenance on the whole local stack: the timer (fired through the host's admin endpoint)
// starts the singleton orchestration, which fills the pool to the floor; GET /pool shows it; a
// session then opens without any ARM key lookup, and its recycle leaves fresh sealed keys behind.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TableClient } from '@azure/data-tables';
import type { LogRecord } from '../../local/host/functionsHost';
import { LocalRuntime, REPO_ROOT } from '../../local/runtime';
import { loadConfig } from '../../lib/config';
import { NamespaceStore } from '../../lib/pool/namespaceStore';
import { openNamespaceKeys } from '../../lib/pool/sealedKeys';
import { connectHybridConnection, RelayHandshakeError } from '../../lib/relay/hybridConnection';
import { createSasToken, relayAudience } from '../../lib/relay/sas';
import { Sealer } from '../../lib/sealing';
import { call, type ApiResult } from '../support/http';

interface PoolBody {
  pool: string;
  total: number;
  byState: Record<string, number>;
  bySubscription: Array<{ subscriptionId: string; quota?: number; total: number; byState: Record<string, number> }>;
  target: { value: number; usable: number; reasons: string[] };
  lastRun: null | {
    runId: string;
    outcome: string;
    steps: Record<string, Record<string, number>>;
    target?: number;
    durationMs: number;
  };
  maintenance: { instanceId: string; runtimeStatus: string | null; running: boolean };
}

const FLOOR = 2;

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/**
 * The app as this build compiled it: package.json `main` pointing at the functions next to this
 * test (so a build into any --outDir runs its own functions), and the repository's host.json.
 */
function appDirForThisBuild(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-broker-app-'));
  const functionsDir = path.resolve(__dirname, '..', '..', 'functions');
  fs.writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: 'relay-broker-e2e', main: `${functionsDir.replace(/\\/g, '/')}/*.js` }),
  );
  fs.copyFileSync(path.join(REPO_ROOT, 'host.json'), path.join(dir, 'host.json'));
  return dir;
}

describe('pool maintenance end to end', () => {
  const logs: LogRecord[] = [];
  const appDir = appDirForThisBuild();
  const rt = new LocalRuntime({
    disableTimers: true,
    appDir,
    logSink: (r) => logs.push(r),
    settings: { POOL_FLOOR: String(FLOOR), SESSION_OPEN_BUDGET_MS: '500', SESSION_READY_TIMEOUT_MS: '1000' },
    relayOptions: { createDelayMs: 300, deleteDelayMs: 50 },
  });
  let admin: string;
  let store: NamespaceStore;

  const getPool = (token = admin) => call<PoolBody>('GET', `${rt.apiUrl}/pool`, { token });
  const tick = async () => {
    const res = await fetch(`${rt.host!.baseUrl}/admin/functions/poolMaintenanceTimer`, {
      method: 'POST',
      headers: { 'x-functions-key': rt.systemKey },
    });
    assert.equal(res.status, 202);
  };

  before(async () => {
    await rt.start();
    admin = await rt.token('admin');
    store = new NamespaceStore(
      TableClient.fromConnectionString(rt.azurite!.connectionString, 'namespaces', { allowInsecureConnection: true }),
      'default',
    );
  });
  after(async () => {
    await rt.close();
    fs.rmSync(appDir, { recursive: true, force: true });
  });

  it('GET /pool is for admins only', async () => {
    assert.equal((await call('GET', `${rt.apiUrl}/pool`)).status, 401);
    assert.equal((await getPool(await rt.token('operator'))).status, 403);
    const empty = await getPool();
    assert.equal(empty.status, 200, empty.text);
    assert.equal(empty.body.total, 0);
    assert.equal(empty.body.lastRun, null);
    assert.equal(empty.body.target.value, FLOOR);
    assert.ok(empty.body.target.reasons.length > 0);
  });

  it('the timer starts the singleton run, which fills the pool to the floor; a tick during the run is skipped', async () => {
    await tick();
    await tick(); // the first run is still preparing namespaces (300 ms each, at least)
    const filled = await waitFor('the pool at its floor, with a recorded run', async () => {
      const r = await getPool();
      return r.body.byState?.available >= FLOOR && r.body.lastRun ? r : undefined;
    });
    assert.equal(filled.body.lastRun?.outcome, 'succeeded');
    assert.deepEqual(filled.body.lastRun?.steps.provision, { available: FLOOR });
    assert.equal(filled.body.bySubscription[0].byState.available, FLOOR);
    assert.equal(filled.body.maintenance.instanceId, 'pool-maintenance-default');
    assert.ok(
      logs.some((l) => /is (Running|Pending); this tick is skipped/.test(l.message)),
      'the second tick found the run under way',
    );
    assert.ok(
      logs.some((l) => /provision: available 2/.test(l.message)),
      'the orchestration logs its counts',
    );
    for (const row of await store.list()) assert.ok(row.sealedKeys, `${row.name} has sealed keys`);

    // The next tick replaces the completed instance with a fresh run, which has nothing to create.
    const first = filled.body.lastRun.runId;
    const completed = await waitFor('the run to complete', async () => {
      const r = await getPool();
      return r.body.maintenance.runtimeStatus === 'Completed' ? r : undefined;
    });
    assert.equal(completed.body.maintenance.running, false);
    await tick();
    const second: ApiResult<PoolBody> = await waitFor('a second run', async () => {
      const r = await getPool();
      return r.body.lastRun && r.body.lastRun.runId !== first ? r : undefined;
    });
    assert.equal(second.body.lastRun?.steps.provision, undefined, 'nothing to provision');
    assert.equal(second.body.total, FLOOR);
  });

  it('a session opens on a maintained namespace without an ARM key lookup, and its recycle seals the new keys', async () => {
    const device = await call('POST', `${rt.apiUrl}/devices`, { token: admin, body: { deviceId: 'dev-pool-e2e' } });
    assert.equal(device.status, 201, device.text);
    rt.relay!.resetStats();
    const opened = await call<{ sessionId: string; status: string }>('POST', `${rt.apiUrl}/sessions`, {
      token: admin,
      body: { deviceId: 'dev-pool-e2e' },
    });
    assert.equal(opened.status, 202, opened.text); // no agent on the device: pending, then device_not_ready
    const leased = await waitFor(
      'the namespace leased',
      async () => (await store.list({ sessionId: opened.body.sessionId }))[0],
    );
    assert.equal(
      rt.relay!.stats().byOperation['hybridConnections.listKeys'] ?? 0,
      0,
      'the open read its keys from the row',
    );

    const recycled = await waitFor('the namespace recycled', async () => {
      const row = await store.get(leased.name);
      return row && row.state === 'available' && row.generation === leased.generation + 1 ? row : undefined;
    });
    assert.ok(recycled.sealedKeys);
    assert.notEqual(recycled.sealedKeys, leased.sealedKeys);
    // The app's sealing key (derived locally from the storage key) opens them, and they are live keys.
    const keys = openNamespaceKeys(new Sealer(loadConfig(process.env).sealingKey), recycled);
    assert.ok(keys, 'the new sealed keys open for the new generation');
    const token = createSasToken({
      resourceUri: relayAudience(recycled.endpoint!, recycled.hybridConnection!),
      ...keys.send,
      expiresAt: new Date(Date.now() + 60_000),
    });
    await assert.rejects(
      connectHybridConnection(recycled.endpoint!, recycled.hybridConnection!, token, { ca: rt.relay!.caCertPem }),
      (err: unknown) => {
        assert.ok(err instanceof RelayHandshakeError);
        assert.equal(err.statusCode, 404, 'accepted by the relay (no listener), not 401');
        return true;
      },
    );
  });
});
