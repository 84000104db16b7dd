// The pure parts of pool maintenance: reconcile's decisions row by row, outcome counting, and the
// sealed keys' binding to a namespace and its generation.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Namespace, NamespaceState } from '../../../lib/pool/namespace';
import { countResults, poolMaintenanceInstanceId } from '../../../lib/pool/maintenanceRun';
import { planReconcile, scopeKey, type ReconcileAction, type ReconcileInput } from '../../../lib/pool/reconcile';
import { openNamespaceKeys, sealNamespaceKeys, sealedKeysContext } from '../../../lib/pool/sealedKeys';
import type { ManagedNamespace } from '../../../lib/relay/relayManager';
import { Sealer } from '../../../lib/sealing';

const NOW = new Date('2026-03-02T12:00:00.000Z');
const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000);
const SUB_A = 'sub-a';
const SUB_B = 'sub-b';

function row(name: string, state: NamespaceState, extra: Partial<Namespace> = {}): Namespace {
  return {
    pool: 'p',
    name,
    state,
    subscriptionId: SUB_A,
    resourceGroup: 'rg',
    location: 'westeurope',
    endpoint: `https://${name}.servicebus.windows.net:443/`,
    hybridConnection: 'tunnel',
    generation: 1,
    createdAt: minutesAgo(120),
    stateChangedAt: minutesAgo(1),
    recycleFailures: 0,
    ...extra,
  };
}

function arm(name: string, provisioningState = 'Succeeded', subscriptionId = SUB_A): ManagedNamespace {
  return {
    subscriptionId,
    resourceGroup: 'rg',
    name,
    location: 'westeurope',
    tags: { 'relay-broker-pool': 'p' },
    provisioningState,
  };
}

function input(over: Partial<ReconcileInput>): ReconcileInput {
  return {
    arm: [],
    listedResourceGroups: new Set([scopeKey(SUB_A, 'rg'), scopeKey(SUB_B, 'rg')]),
    rows: [],
    recentlyDeleted: [],
    subscriptions: [
      { subscriptionId: SUB_A, resourceGroup: 'rg', location: 'westeurope', quota: 3 },
      { subscriptionId: SUB_B, resourceGroup: 'rg', location: 'westeurope', quota: 3 },
    ],
    cap: 10,
    now: NOW,
    stuckMinutes: 30,
    quarantineRetentionMinutes: 60,
    ...over,
  };
}

const kinds = (actions: ReconcileAction[]) =>
  actions.map((a) => `${a.kind}:${'name' in a ? a.name : 'item' in a ? a.item.name : a.namespace.name}`);

describe('planReconcile: ARM namespaces the table does not know', () => {
  it('adopts a healthy orphan in a configured subscription with quota left', () => {
    assert.deepEqual(kinds(planReconcile(input({ arm: [arm('rbk-orphan1')] }))), ['adopt:rbk-orphan1']);
  });

  it('deletes an orphan that is not Succeeded, and leaves one being deleted alone', () => {
    const actions = planReconcile(
      input({ arm: [arm('rbk-stuck01', 'Created'), arm('rbk-going01', 'Deleting'), arm('rbk-failed1', 'Failed')] }),
    );
    assert.deepEqual(kinds(actions), ['deleteOrphan:rbk-failed1', 'deleteOrphan:rbk-stuck01']);
    assert.match((actions[1] as { reason: string }).reason, /provisioning state Created/);
  });

  it('deletes orphans past the subscription quota, counting the ones it adopts', () => {
    const rows = [row('rbk-row0001', 'available'), row('rbk-row0002', 'leased')];
    const actions = planReconcile(
      input({ rows, arm: [arm('rbk-row0001'), arm('rbk-row0002'), arm('rbk-orphan1'), arm('rbk-orphan2')] }),
    );
    assert.deepEqual(kinds(actions), ['adopt:rbk-orphan1', 'deleteOrphan:rbk-orphan2']);
    assert.match((actions[1] as { reason: string }).reason, /quota 3 reached/);
  });

  it('deletes orphans past the global cap, in an unconfigured subscription, or whose name this pool deleted', () => {
    assert.deepEqual(kinds(planReconcile(input({ cap: 0, arm: [arm('rbk-orphan1')] }))), ['deleteOrphan:rbk-orphan1']);
    assert.deepEqual(kinds(planReconcile(input({ arm: [arm('rbk-orphan1', 'Succeeded', 'sub-z')] }))), [
      'deleteOrphan:rbk-orphan1',
    ]);
    assert.deepEqual(
      kinds(
        planReconcile(
          input({ arm: [arm('rbk-orphan1')], recentlyDeleted: [{ name: 'rbk-orphan1', deletedAt: minutesAgo(5) }] }),
        ),
      ),
      ['deleteOrphan:rbk-orphan1'],
    );
  });
});

describe('planReconcile: rows', () => {
  it('removes a deleting row whose namespace is gone, and retries the delete of one still in ARM', () => {
    const rows = [row('rbk-del0001', 'deleting'), row('rbk-del0002', 'deleting')];
    assert.deepEqual(kinds(planReconcile(input({ rows, arm: [arm('rbk-del0002', 'Deleting')] }))), [
      'removeDeleted:rbk-del0001',
      'retryDelete:rbk-del0002',
    ]);
  });

  it('asks ARM to confirm before removing a row whose namespace is not listed; never judges a resource group whose list failed', () => {
    const rows = [
      row('rbk-gone001', 'available'),
      row('rbk-gone002', 'available', { subscriptionId: SUB_B }),
      row('rbk-gone003', 'available', { resourceGroup: 'other-rg' }),
    ];
    assert.deepEqual(kinds(planReconcile(input({ rows, listedResourceGroups: new Set([scopeKey(SUB_A, 'RG')]) }))), [
      'confirmGone:rbk-gone001',
    ]);
  });

  it('leaves a fresh creating row alone (its namespace may not exist yet) and retries a stuck one', () => {
    const rows = [
      row('rbk-new0001', 'creating', { stateChangedAt: minutesAgo(5) }),
      row('rbk-old0001', 'creating', { stateChangedAt: minutesAgo(31) }),
    ];
    const actions = planReconcile(input({ rows }));
    assert.deepEqual(kinds(actions), ['retryCreate:rbk-old0001']);
    assert.deepEqual((actions[0] as { item: unknown }).item, {
      name: 'rbk-old0001',
      subscriptionId: SUB_A,
      resourceGroup: 'rg',
      location: 'westeurope',
      retry: true,
    });
  });

  it('retries a recycle stuck past the timeout, recycles expired leases, deletes old quarantined namespaces', () => {
    const rows = [
      row('rbk-rec0001', 'recycling', { stateChangedAt: minutesAgo(5) }),
      row('rbk-rec0002', 'recycling', { stateChangedAt: minutesAgo(45) }),
      row('rbk-lea0001', 'leased', { sessionId: 's1', leasedAt: minutesAgo(90), leaseExpiresAt: minutesAgo(1) }),
      row('rbk-lea0002', 'leased', {
        sessionId: 's2',
        leasedAt: minutesAgo(10),
        leaseExpiresAt: new Date(NOW.getTime() + 60_000),
      }),
      row('rbk-qua0001', 'quarantined', { stateChangedAt: minutesAgo(61) }),
      row('rbk-qua0002', 'quarantined', { stateChangedAt: minutesAgo(10) }),
      row('rbk-ava0001', 'available'),
    ];
    const allInArm = rows.map((r) => arm(r.name));
    assert.deepEqual(kinds(planReconcile(input({ rows, arm: allInArm }))), [
      'recycleExpired:rbk-lea0001',
      'deleteQuarantined:rbk-qua0001',
      'retryRecycle:rbk-rec0002',
    ]);
  });

  it('deletes at once a quarantined namespace that still names the session whose recycle failed', () => {
    const rows = [
      row('rbk-qua0003', 'quarantined', { stateChangedAt: minutesAgo(1), sessionId: 's9' }),
      row('rbk-qua0004', 'quarantined', { stateChangedAt: minutesAgo(1) }),
    ];
    assert.deepEqual(kinds(planReconcile(input({ rows, arm: rows.map((r) => arm(r.name)) }))), [
      'deleteQuarantined:rbk-qua0003',
    ]);
  });

  it('a pool that matches ARM needs nothing', () => {
    const rows = [row('rbk-ava0001', 'available'), row('rbk-ava0002', 'available', { subscriptionId: SUB_B })];
    assert.deepEqual(
      planReconcile(input({ rows, arm: [arm('rbk-ava0001'), arm('rbk-ava0002', 'Succeeded', SUB_B)] })),
      [],
    );
  });
});

describe('maintenance helpers', () => {
  it('countResults counts outcomes by result', () => {
    assert.deepEqual(countResults([{ result: 'available' }, { result: 'failed' }, { result: 'available' }]), {
      available: 2,
      failed: 1,
    });
    assert.deepEqual(countResults([]), {});
  });

  it('the singleton instance id is fixed per pool', () => {
    assert.equal(poolMaintenanceInstanceId('default'), 'pool-maintenance-default');
  });
});

describe('sealed namespace keys', () => {
  const sealer = new Sealer(randomBytes(32));
  const keys = {
    listen: { keyName: 'device-listen', key: 'bGlzdGVuLWtleQ==' },
    send: { keyName: 'client-send', key: 'c2VuZC1rZXk=' },
  };

  it('open to the keys for the same namespace and generation, and never hold them in clear', () => {
    const sealedKeys = sealNamespaceKeys(sealer, 'rbk-ns00001', 3, keys);
    assert.ok(!sealedKeys.includes(keys.listen.key) && !sealedKeys.includes(keys.send.key));
    assert.deepEqual(openNamespaceKeys(sealer, { name: 'rbk-ns00001', generation: 3, sealedKeys }), keys);
  });

  it('do not open for another generation, another namespace, another sealing key, or tampered data', () => {
    const sealedKeys = sealNamespaceKeys(sealer, 'rbk-ns00001', 3, keys);
    assert.equal(openNamespaceKeys(sealer, { name: 'rbk-ns00001', generation: 4, sealedKeys }), undefined);
    assert.equal(openNamespaceKeys(sealer, { name: 'rbk-ns00002', generation: 3, sealedKeys }), undefined);
    assert.equal(
      openNamespaceKeys(new Sealer(randomBytes(32)), { name: 'rbk-ns00001', generation: 3, sealedKeys }),
      undefined,
    );
    // Flip one character well inside the ciphertext (the last one may only carry padding bits).
    const i = sealedKeys.length - 30;
    const tampered = `${sealedKeys.slice(0, i)}${sealedKeys[i] === 'A' ? 'B' : 'A'}${sealedKeys.slice(i + 1)}`;
    assert.equal(openNamespaceKeys(sealer, { name: 'rbk-ns00001', generation: 3, sealedKeys: tampered }), undefined);
    assert.equal(openNamespaceKeys(sealer, { name: 'rbk-ns00001', generation: 3 }), undefined);
    assert.notEqual(sealedKeysContext('rbk-ns00001', 3), sealedKeysContext('rbk-ns00001', 4));
  });

  it('a sealed value that opens but is not a pair of keys counts as absent', () => {
    const sealedKeys = sealer.seal(JSON.stringify({ listen: 'x' }), sealedKeysContext('rbk-ns00001', 0));
    assert.equal(openNamespaceKeys(sealer, { name: 'rbk-ns00001', generation: 0, sealedKeys }), undefined);
  });
});
