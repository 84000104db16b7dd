// A ramp from 0 to 500 namespaces over 6 subscriptions against the relay emulator under its default
// (Azure's) ARM limits — write bucket 200 / 10 per s, reads 250 / 25 per s, Relay's 50 namespace
// writes per subscription per window (1 h), create 44 s — time-scaled, through the maintenance
// runs' own steps (plan → paced provision → reconcile → record). Every 429 must be handled:
// retried, or the creation deferred to a later run; none may fail a creation.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { startAzurite, type Azurite } from '../../../local/azurite';
import { RelayEmulator } from '../../../local/relay-emulator';
import type { Config } from '../../../lib/config';
import { NamespaceStore } from '../../../lib/pool/namespaceStore';
import { PoolMaintenance } from '../../../lib/pool/poolMaintenance';
import { PoolRunStore } from '../../../lib/pool/poolRunStore';
import { POOL_TAG } from '../../../lib/pool/provisioner';
import { createRelayApiFactory, RelayManager } from '../../../lib/relay/relayManager';
import { Sealer } from '../../../lib/sealing';
import { runMaintenance, type DrivenRun } from '../../support/poolMaintenanceDriver';

/** ARM's clock runs 200× faster: create 220 ms, the namespace-write window 18 s, buckets refill 200× faster. */
const TIME_SCALE = 0.005;
const TARGET = 500;
const SUBSCRIPTIONS = 6;
const MAINTENANCE_SECONDS = 60;
const MAX_RUNS = 400;

let azurite: Azurite;
let emulator: RelayEmulator;

before(async () => {
  azurite = await startAzurite();
  emulator = await new RelayEmulator({ timeScale: TIME_SCALE }).start();
});
after(async () => {
  await emulator?.close();
  await azurite?.close();
});

describe('provisioning ramp under ARM limits', () => {
  it('reaches 500 namespaces over 6 subscriptions with every 429 handled (none fails a creation)', async () => {
    const table = TableClient.fromConnectionString(azurite.connectionString, `ramp${Date.now().toString(36)}`, {
      allowInsecureConnection: true,
    });
    const store = new NamespaceStore(table, 'ramp');
    await store.ensureTable();
    const pool: Config['pool'] = {
      name: 'ramp',
      subscriptions: Array.from({ length: SUBSCRIPTIONS }, (_, i) => ({
        subscriptionId: `00000000-0000-0000-0000-${String(i + 1).padStart(12, '0')}`,
        resourceGroup: 'relay-pool',
        location: 'westeurope',
        quota: 100,
      })),
      namespacePrefix: 'rmp',
      floor: TARGET,
      cap: 600,
      headroom: 1.25,
      createSeconds: 45,
      stuckMinutes: 30,
      maxRecycleFailures: 3,
      shrinkIdleMinutes: 30,
      nameReuseHours: 24,
    };
    // The product's own waits at the same scale (its request timeouts stay real: they guard latency).
    const relay = new RelayManager({
      apiFactory: createRelayApiFactory({
        endpoint: emulator.armEndpoint,
        caPem: emulator.caCertPem,
        lroPollIntervalMs: 2000 * TIME_SCALE,
      }),
      firstActivationPollMs: 22_000 * TIME_SCALE,
      activationTimeoutMs: 240_000,
      retry: {
        initialDelayMs: 500 * TIME_SCALE,
        maxDelayMs: 20_000 * TIME_SCALE,
        maxRetryAfterMs: 60_000 * TIME_SCALE,
      },
    });
    const m = new PoolMaintenance({
      namespaces: store,
      runs: new PoolRunStore(table, 'ramp'),
      relay,
      sealer: new Sealer(randomBytes(32)),
      pool,
      nameSalt: 'ramp',
      maintenanceSeconds: MAINTENANCE_SECONDS,
      maxDriftChecks: 0,
    });

    const started = Date.now();
    const runs: DrivenRun[] = [];
    let available = 0;
    for (let i = 0; i < MAX_RUNS && available < TARGET; i++) {
      const runStart = Date.now();
      runs.push(await runMaintenance(m, () => new Date()));
      available = (await store.list({ states: ['available'] })).length;
      // The timer's period, scaled: the next run starts one period after this one started.
      const wait = runStart + MAINTENANCE_SECONDS * 1000 * TIME_SCALE - Date.now();
      if (available < TARGET && wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const wallMs = Date.now() - started;

    const outcomes = runs.flatMap((r) => r.provision);
    const by = (result: string) => outcomes.filter((o) => o.result === result).length;
    const stats = emulator.stats();
    console.log(
      `ramp 0 → ${available} over ${SUBSCRIPTIONS} subscriptions: ${runs.length} runs, ${(wallMs / 1000).toFixed(1)} s wall ` +
        `at time scale ${TIME_SCALE} = ${(wallMs / 1000 / TIME_SCALE).toFixed(0)} s at real scale (an upper bound: this machine's ` +
        `own request and storage time is scaled up with it); ARM answered ${stats.throttled} 429s (all handled: ` +
        `${by('throttled')} creations deferred on a Retry-After, the rest retried), ${by('deferred')} deferred by the pacer, ` +
        `${stats.writes} writes, ${stats.reads} reads`,
    );

    assert.equal(available, TARGET, `500 namespaces available (got ${available} after ${runs.length} runs)`);
    const failed = outcomes.filter((o) => ['failed', 'quarantined', 'abandoned', 'quota'].includes(o.result));
    assert.deepEqual(
      failed.map((o) => `${o.name}: ${o.result} ${o.error ?? ''}`),
      [],
      'no creation failed (a throttled one is deferred, never failed)',
    );
    assert.deepEqual(
      runs.flatMap((r) => r.record.errors),
      [],
      'no run recorded an error',
    );
    // The limits did bite (else this test proves nothing about them), and the product saw it.
    assert.ok(by('deferred') + by('throttled') > 0, 'the namespace-write limit deferred creations');
    assert.ok(
      runs.some((r) => Object.values(r.record.armBudget ?? {}).some((b) => b.namespaceWritesRemaining !== undefined)),
      'run records carry what ARM said of the namespace-write budget',
    );
    // ARM holds exactly the pool's rows: nothing half-created by a refused write.
    const armNames = (
      await Promise.all(
        pool.subscriptions.map((s) =>
          relay.listNamespaces({
            subscriptionId: s.subscriptionId,
            resourceGroup: s.resourceGroup,
            tag: { name: POOL_TAG, value: 'ramp' },
          }),
        ),
      )
    )
      .flat()
      .map((n) => n.name)
      .sort();
    const rows = await store.list();
    assert.deepEqual(armNames, rows.map((r) => r.name).sort());
    for (const s of pool.subscriptions) {
      const n = rows.filter((r) => r.subscriptionId === s.subscriptionId).length;
      assert.ok(n <= s.quota, `subscription ${s.subscriptionId} holds ${n}, within its quota`);
    }
  });
});
