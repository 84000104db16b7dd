// PoolMaintenance against Azurite and the relay emulator through the real @azure/arm-relay client,
// driven step by step the way the orchestration drives it (plan → provision → recycle → delete →
// reconcile → record) on a simulated clock: floor, burst, shrink, faults, orphans, quotas, sealed keys.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { startAzurite, type Azurite } from '../../../local/azurite';
import type { Config } from '../../../lib/config';
import { NamespaceStore } from '../../../lib/pool/namespaceStore';
import { countResults, type MaintenancePlan, type ProvisionOutcome } from '../../../lib/pool/maintenanceRun';
import { PoolMaintenance } from '../../../lib/pool/poolMaintenance';
import { POOL_TAG } from '../../../lib/pool/provisioner';
import type { ReconcileOutcome } from '../../../lib/pool/reconcile';
import { PoolRunStore, type PoolRunRecord } from '../../../lib/pool/poolRunStore';
import { openNamespaceKeys } from '../../../lib/pool/sealedKeys';
import {
  connectHybridConnection,
  HybridConnectionListener,
  RelayHandshakeError,
} from '../../../lib/relay/hybridConnection';
import { createRelayApiFactory, type RelayManager, type RelayManagerOptions } from '../../../lib/relay/relayManager';
import { createSasToken, relayAudience } from '../../../lib/relay/sas';
import { Sealer } from '../../../lib/sealing';
import { startRelayTestEnv, type RelayTestEnv } from '../relay/relayTestEnv';

const T0 = new Date('2026-03-02T10:00:00.000Z');
const RG = 'relay-pool';
const LOCATION = 'westeurope';

let azurite: Azurite;
let seq = 0;
const sealer = new Sealer(randomBytes(32));

interface Harness {
  m: PoolMaintenance;
  store: NamespaceStore;
  runs: PoolRunStore;
  manager: RelayManager;
  pool: Config['pool'];
  clock: { now: Date };
  env: RelayTestEnv;
}

interface RunResult {
  plan: MaintenancePlan;
  provision: ProvisionOutcome[];
  reconcile: ReconcileOutcome;
  record: PoolRunRecord;
}

function subscriptionId(n: number, letter: string): string {
  return `00000000-0000-0000-${letter.repeat(4)}-${n.toString().padStart(12, '0')}`;
}

/** A fresh table, pool name, name salt and subscriptions per test: names are global in the emulator. */
async function harness(
  env: RelayTestEnv,
  options: {
    floor: number;
    cap?: number;
    quotas?: number[];
    shrinkIdleMinutes?: number;
    manager?: Partial<RelayManagerOptions>;
  },
): Promise<Harness> {
  const n = ++seq;
  const table = TableClient.fromConnectionString(azurite.connectionString, `maint${Date.now().toString(36)}${n}`, {
    allowInsecureConnection: true,
  });
  const poolName = `p${n}`;
  const store = new NamespaceStore(table, poolName);
  await store.ensureTable();
  const runs = new PoolRunStore(table, poolName);
  const pool: Config['pool'] = {
    name: poolName,
    subscriptions: (options.quotas ?? [100]).map((quota, i) => ({
      subscriptionId: subscriptionId(n, 'abc'[i]),
      resourceGroup: RG,
      location: LOCATION,
      quota,
    })),
    namespacePrefix: 'rbm',
    floor: options.floor,
    cap: options.cap ?? 50,
    headroom: 1.25,
    createSeconds: 45,
    stuckMinutes: 30,
    maxRecycleFailures: 3,
    shrinkIdleMinutes: options.shrinkIdleMinutes ?? 30,
    nameReuseHours: 24,
  };
  const clock = { now: new Date(T0) };
  const manager = env.makeManager(options.manager ?? {});
  const m = new PoolMaintenance({
    namespaces: store,
    runs,
    relay: manager,
    sealer,
    pool,
    nameSalt: `t${n}x`,
    now: () => clock.now,
  });
  return { m, store, runs, manager, pool, clock, env };
}

/** One maintenance run, the orchestration's steps in its order; the clock then moves one period on. */
async function runOnce(h: Harness): Promise<RunResult> {
  const now = h.clock.now;
  const runId = `run@${now.toISOString()}`;
  const plan = await h.m.plan(now, runId);
  const provision = await Promise.all(plan.provision.map((item) => h.m.provision(item, runId)));
  const recycle = await Promise.all(plan.recycle.map((name) => h.m.recycle(name)));
  const del = await Promise.all(plan.delete.map((name) => h.m.delete(name)));
  const reconcile = await h.m.reconcile(now);
  const errors = [...provision, ...recycle, ...del]
    .filter((o) => o.error && o.result !== 'skipped')
    .map((o) => `${o.name}: ${o.error}`);
  const record = await h.m.recordRun({
    runId,
    startedAt: now.toISOString(),
    finishedAt: new Date(now.getTime() + 5000).toISOString(),
    plan,
    steps: {
      provision: countResults(provision),
      recycle: countResults(recycle),
      delete: countResults(del),
      reconcile: { ...reconcile.counts },
    },
    errors: [...errors, ...reconcile.errors],
    quotaExceeded: [...new Set(provision.filter((o) => o.result === 'quota').map((o) => o.subscriptionId))],
  });
  h.clock.now = new Date(now.getTime() + 61_000);
  return { plan, provision, reconcile, record };
}

/** Runs until every row is available or leased and ARM matches the table, at most `maxRuns` times. */
async function runUntilConverged(h: Harness, maxRuns: number): Promise<RunResult[]> {
  const results: RunResult[] = [];
  for (let i = 0; i < maxRuns; i++) {
    results.push(await runOnce(h));
    const rows = await h.store.list();
    const settled = rows.every((r) => r.state === 'available' || r.state === 'leased');
    const armNames = await armPoolNames(h);
    if (
      settled &&
      results[results.length - 1].plan.provision.length === 0 &&
      sameNames(
        armNames,
        rows.map((r) => r.name),
      )
    )
      return results;
  }
  return results;
}

async function armPoolNames(h: Harness): Promise<string[]> {
  const lists = await Promise.all(
    h.pool.subscriptions.map((s) =>
      h.manager.listNamespaces({
        subscriptionId: s.subscriptionId,
        resourceGroup: s.resourceGroup,
        tag: { name: POOL_TAG, value: h.pool.name },
      }),
    ),
  );
  return lists
    .flat()
    .map((n) => n.name)
    .sort();
}

const sameNames = (a: string[], b: string[]) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

async function assertNothingLeaked(h: Harness): Promise<void> {
  const rows = await h.store.list();
  assert.deepEqual(
    await armPoolNames(h),
    rows.map((r) => r.name).sort(),
    'every namespace tagged as the pool has a row, and every row a namespace',
  );
}

before(async () => {
  azurite = await startAzurite();
});
after(async () => {
  await azurite?.close();
});

describe('pool maintenance against the relay emulator', () => {
  let env: RelayTestEnv;
  before(async () => {
    env = await startRelayTestEnv({ createDelayMs: 50, deleteDelayMs: 20 });
  });
  after(async () => {
    await env.emulator.close();
  });

  it('fills an empty pool to the floor with prepared namespaces whose keys are sealed, then has nothing to do', async () => {
    const h = await harness(env, { floor: 3 });
    const first = await runOnce(h);
    assert.equal(first.plan.target, 3);
    assert.deepEqual(first.record.steps.provision, { available: 3 });
    assert.equal(first.record.outcome, 'succeeded');
    const rows = await h.store.list();
    assert.deepEqual(
      rows.map((r) => r.state),
      ['available', 'available', 'available'],
    );
    for (const r of rows) {
      assert.ok(r.sealedKeys, `${r.name} has sealed keys`);
      assert.ok(
        !r.sealedKeys.includes(openNamespaceKeys(sealer, r)!.listen.key),
        'the stored value is not the key in clear',
      );
    }
    await assertNothingLeaked(h);
    const second = await runOnce(h);
    assert.equal(second.plan.provision.length, 0);
    assert.equal(second.plan.delete.length, 0);
    assert.deepEqual((await h.runs.last())?.runId, second.record.runId);
    // A late second run of the first run's record activity never overwrites the later record.
    assert.equal(await h.runs.record(first.record), false);
    assert.equal((await h.runs.last())?.runId, second.record.runId);
  });

  it('a burst of leases raises the target and the pool refills', async () => {
    const h = await harness(env, { floor: 2 });
    const first = await runOnce(h);
    for (let i = 0; i < 2; i++)
      await h.store.lease(`burst-${i}`, {
        leaseExpiresAt: new Date(h.clock.now.getTime() + 3_600_000),
        now: h.clock.now,
      });
    const second = await runOnce(h);
    assert.ok(second.plan.target > first.plan.target, `target ${second.plan.target} > ${first.plan.target}`);
    assert.match(second.plan.reasons.join('\n'), /leased 2/);
    const rows = await h.store.list();
    assert.equal(rows.filter((r) => r.state === 'leased').length, 2);
    assert.ok(
      rows.filter((r) => r.state === 'available').length >= 2,
      'the floor is available again on top of the leases',
    );
    await assertNothingLeaked(h);
  });

  it('shrinks an oversized pool: deletes the oldest idle namespace in ARM and retires its name', async () => {
    const h = await harness(env, { floor: 3, shrinkIdleMinutes: 0 });
    await runOnce(h);
    const oldest = (await h.store.list()).sort(
      (a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.name < b.name ? -1 : 1),
    )[0];
    const smaller = new PoolMaintenance({
      namespaces: h.store,
      runs: h.runs,
      relay: h.manager,
      sealer,
      pool: { ...h.pool, floor: 1 },
      nameSalt: 'shrink',
      now: () => h.clock.now,
    });
    const shrunk = await runOnce({ ...h, m: smaller });
    assert.equal(shrunk.plan.delete.length, 1);
    assert.deepEqual(shrunk.record.steps.delete, { deleted: 1 });
    assert.equal(await h.store.get(shrunk.plan.delete[0]), undefined);
    assert.ok(shrunk.plan.delete[0] === oldest.name);
    assert.ok(
      (await h.store.tombstones.since(T0)).some((d) => d.name === oldest.name),
      'the name is tombstoned',
    );
    await assertNothingLeaked(h);
  });

  it('ARM faults (429, 500s past the retry budget, a namespace stuck activating) end in a converged pool with nothing leaked', async () => {
    const h = await harness(env, { floor: 4, manager: { activationTimeoutMs: 800 } });
    const { faults } = env.emulator;
    // Generated names end with their index in the run (3 base-36 digits): the faults pick their victims by it.
    faults.add({ op: 'namespaces.createOrUpdate', kind: '429', count: 2, retryAfterSeconds: 2 });
    faults.add({ op: 'namespaces.createOrUpdate', kind: 'stuckActivating', count: 1, namePattern: /000$/ });
    // 6 attempts is RelayManager's budget: 7 failures make this preparation fail once, then succeed on the retry.
    faults.add({ op: 'hybridConnections.createOrUpdate', kind: '500', count: 7, namePattern: /001$/ });
    const results = await runUntilConverged(h, 6);
    assert.deepEqual(faults.list(), [], 'every injected fault was hit');
    const outcomes = results.flatMap((r) => r.provision.map((o) => o.result));
    assert.ok(outcomes.includes('abandoned'), `the stuck namespace was given up: ${outcomes.join(',')}`);
    assert.ok(outcomes.includes('failed'), `a preparation failed and was retried: ${outcomes.join(',')}`);
    assert.ok(
      h.env.sleeps.some((ms) => ms >= 2000 && ms <= 3000),
      'Retry-After was honoured (never sooner, spread up to half again)',
    );
    const rows = await h.store.list();
    assert.equal(rows.length, 4);
    assert.ok(rows.every((r) => r.state === 'available' && r.sealedKeys));
    assert.equal(results[0].record.outcome, 'partial');
    assert.ok(results[0].record.errors.length > 0);
    await assertNothingLeaked(h);
  });

  it('reconcile adopts a healthy orphan (after recycling it), deletes one stuck activating, and removes a row whose namespace is gone', async () => {
    const h = await harness(env, { floor: 2 });
    await runOnce(h);
    const sub = h.pool.subscriptions[0].subscriptionId;
    const api = createRelayApiFactory({ endpoint: env.emulator.armEndpoint, caPem: env.emulator.caCertPem })(sub);
    const tags = { [POOL_TAG]: h.pool.name };
    const healthy = `rbm-orphan-${seq}-ok`;
    const stuck = `rbm-orphan-${seq}-stuck`;
    await api.namespaces.beginCreateOrUpdateAndWait(
      RG,
      healthy,
      { location: LOCATION, tags },
      { updateIntervalInMs: 20 },
    );
    // Whoever left it may have kept a namespace-level key: adoption deletes the rule.
    await api.namespaces.createOrUpdateAuthorizationRule(RG, healthy, 'left-behind', { rights: ['Listen', 'Send'] });
    env.emulator.faults.add({ op: 'namespaces.createOrUpdate', kind: 'stuckActivating', namePattern: stuck });
    await api.namespaces.beginCreateOrUpdate(RG, stuck, { location: LOCATION, tags });
    const [gone] = await h.store.list();
    await api.namespaces.beginDeleteAndWait(RG, gone.name, { updateIntervalInMs: 20 });
    env.emulator.resetStats();

    const outcome = await h.m.reconcile(h.clock.now);
    assert.deepEqual(outcome.errors, []);
    assert.equal(outcome.counts.adopted, 1);
    assert.equal(outcome.counts.orphansDeleted, 1);
    assert.equal(outcome.counts.goneRemoved, 1);
    const adopted = await h.store.get(healthy);
    assert.equal(adopted?.state, 'available');
    assert.ok(openNamespaceKeys(sealer, adopted), 'the adopted namespace has sealed keys');
    const adoptedRules: string[] = [];
    for await (const r of api.namespaces.listAuthorizationRules(RG, healthy)) adoptedRules.push(r.name ?? '');
    assert.deepEqual(adoptedRules, ['RootManageSharedAccessKey'], 'the foreign namespace rule was deleted');
    assert.ok(
      (env.emulator.stats().byOperation['hybridConnections.delete'] ?? 0) >= 1,
      'the adopted namespace was recycled',
    );
    assert.equal(await h.store.get(gone.name), undefined);
    assert.ok(
      (await h.store.tombstones.since(T0)).some((d) => d.name === stuck),
      'the deleted orphan name is tombstoned',
    );
    await assertNothingLeaked(h);
    const again = await h.m.reconcile(h.clock.now);
    assert.deepEqual(
      Object.entries(again.counts).filter(([k, v]) => k !== 'armNamespaces' && k !== 'driftChecked' && v > 0),
      [],
      'a second reconcile finds nothing to repair',
    );
  });

  it('reconcile forgets tombstones older than the name-reuse window and keeps the recent ones', async () => {
    const h = await harness(env, { floor: 0 });
    const now = h.clock.now;
    const hoursAgo = (hours: number) => new Date(now.getTime() - hours * 3_600_000);
    await h.store.tombstones.record('rbm-old000001', hoursAgo(h.pool.nameReuseHours + 1));
    await h.store.tombstones.record('rbm-recent001', hoursAgo(h.pool.nameReuseHours - 1));
    const first = await h.m.reconcile(now);
    assert.equal(first.counts.tombstonesPurged, 1);
    assert.deepEqual(
      (await h.store.tombstones.since(new Date(0))).map((d) => d.name),
      ['rbm-recent001'],
      'the recent name is still refused for reuse',
    );
    assert.equal((await h.m.reconcile(now)).counts.tombstonesPurged, 0, 'a second run finds nothing to purge');
  });

  it('a lease past leaseExpiresAt is recycled: new generation, new sealed keys, the old tokens dead, the new ones accepted', async () => {
    const h = await harness(env, { floor: 1 });
    await runOnce(h);
    const leased = await h.store.lease('expired-session', {
      leaseExpiresAt: new Date(h.clock.now.getTime() + 30_000),
      now: h.clock.now,
    });
    const oldKeys = openNamespaceKeys(sealer, leased)!;
    const ca = env.emulator.caCertPem;
    const mint = (keys: typeof oldKeys, ns: { endpoint?: string; hybridConnection?: string }) => {
      const resourceUri = relayAudience(ns.endpoint!, ns.hybridConnection!);
      const expiresAt = new Date(Date.now() + 600_000);
      return {
        listen: createSasToken({ resourceUri, ...keys.listen, expiresAt }),
        send: createSasToken({ resourceUri, ...keys.send, expiresAt }),
      };
    };
    const oldTokens = mint(oldKeys, leased);
    // The sealed keys mint tokens the relay accepts: a listener comes online, a sender gets through.
    const listener = new HybridConnectionListener({
      endpoint: leased.endpoint!,
      hybridConnection: leased.hybridConnection!,
      token: oldTokens.listen,
      ca,
    });
    try {
      await listener.start();
      const stream = await connectHybridConnection(leased.endpoint!, leased.hybridConnection!, oldTokens.send, { ca });
      stream.destroy();
    } finally {
      await listener.close();
    }

    h.clock.now = new Date(h.clock.now.getTime() + 60_000);
    const run = await runOnce(h);
    assert.deepEqual(run.plan.recycle, [leased.name]);
    assert.deepEqual(run.record.steps.recycle, { recycled: 1 });
    const after = (await h.store.get(leased.name))!;
    assert.equal(after.state, 'available');
    assert.equal(after.generation, leased.generation + 1);
    assert.notEqual(after.sealedKeys, leased.sealedKeys);
    assert.equal(
      openNamespaceKeys(sealer, { ...after, sealedKeys: leased.sealedKeys }),
      undefined,
      'old sealed keys do not open for the new generation',
    );
    const newKeys = openNamespaceKeys(sealer, after)!;
    assert.notEqual(newKeys.send.key, oldKeys.send.key);
    assert.notEqual(after.hybridConnection, leased.hybridConnection, 'a fresh hybrid connection per generation');
    const statusOf = async (token: string, hybridConnection = after.hybridConnection!) => {
      try {
        (await connectHybridConnection(after.endpoint!, hybridConnection, token, { ca })).destroy();
        return 200;
      } catch (err) {
        if (err instanceof RelayHandshakeError) return err.statusCode;
        throw err;
      }
    };
    assert.equal(await statusOf(oldTokens.send, leased.hybridConnection), 404, 'the old hybrid connection is gone');
    assert.equal(
      await statusOf(oldTokens.send),
      403,
      'the old send token is refused on the new one (another audience)',
    );
    assert.equal(await statusOf(mint(newKeys, after).send), 404, 'the new send token is accepted (no listener yet)');
  });
});

describe('pool maintenance: keys and hybrid connections that drift out of band', () => {
  let env: RelayTestEnv;
  before(async () => {
    env = await startRelayTestEnv({ createDelayMs: 50, deleteDelayMs: 20 });
  });
  after(async () => {
    await env.emulator.close();
  });

  it('a foreign namespace-level Listen+Send rule and a send key rotated out of band are both repaired by maintenance', async () => {
    const h = await harness(env, { floor: 2 });
    await runOnce(h);
    const [a, b] = (await h.store.list()).sort((x, y) => (x.name < y.name ? -1 : 1));
    assert.equal(a.state, 'available');
    const api = createRelayApiFactory({ endpoint: env.emulator.armEndpoint, caPem: env.emulator.caCertPem })(
      a.subscriptionId,
    );
    const ca = env.emulator.caCertPem;
    const expiresAt = new Date(Date.now() + 600_000);
    const statusOf = async (endpoint: string, hc: string, token: string) => {
      try {
        (await connectHybridConnection(endpoint, hc, token, { ca })).destroy();
        return 200;
      } catch (err) {
        if (err instanceof RelayHandshakeError) return err.statusCode;
        throw err;
      }
    };
    // A: a namespace-level Listen+Send rule added out of band, whose token reaches the hybrid connection.
    await api.namespaces.createOrUpdateAuthorizationRule(RG, a.name, 'backdoor', { rights: ['Listen', 'Send'] });
    const backdoor = await api.namespaces.listKeys(RG, a.name, 'backdoor');
    const backdoorToken = (hc: string) =>
      createSasToken({
        resourceUri: relayAudience(a.endpoint!, hc),
        keyName: 'backdoor',
        key: backdoor.primaryKey!,
        expiresAt,
      });
    assert.equal(await statusOf(a.endpoint!, a.hybridConnection!, backdoorToken(a.hybridConnection!)), 404);
    // B: the send key rotated out of band: the sealed keys mint a token the relay refuses (a dead tunnel).
    await api.hybridConnections.regenerateKeys(RG, b.name, b.hybridConnection!, 'client-send', {
      keyType: 'PrimaryKey',
    });
    const sealedB = openNamespaceKeys(sealer, b)!;
    const sendB = (ns: typeof b, keys: typeof sealedB) =>
      createSasToken({ resourceUri: relayAudience(ns.endpoint!, ns.hybridConnection!), ...keys.send, expiresAt });
    assert.equal(await statusOf(b.endpoint!, b.hybridConnection!, sendB(b, sealedB)), 401);

    const outcome = await h.m.reconcile(h.clock.now);
    assert.equal(outcome.counts.driftFound, 2);
    assert.equal(outcome.counts.driftRepaired, 2);
    assert.ok(
      outcome.errors.some((e) => e.includes(`drift of ${a.name}`) && e.includes('foreign namespace rule backdoor')),
    );
    assert.ok(outcome.errors.some((e) => e.includes(`drift of ${b.name}`) && e.includes('send key')));

    const a2 = (await h.store.get(a.name))!;
    const b2 = (await h.store.get(b.name))!;
    assert.equal(a2.state, 'available');
    assert.equal(a2.generation, a.generation + 1);
    assert.notEqual(a2.hybridConnection, a.hybridConnection);
    // The foreign rule is gone: its token opens nothing, on the old or the new hybrid connection.
    assert.equal(await statusOf(a.endpoint!, a2.hybridConnection!, backdoorToken(a2.hybridConnection!)), 401);
    assert.equal(await statusOf(a.endpoint!, a.hybridConnection!, backdoorToken(a.hybridConnection!)), 404);
    // The next session works: the sealed keys of the new generation are the ones ARM holds.
    const keysB2 = openNamespaceKeys(sealer, b2)!;
    const listener = new HybridConnectionListener({
      endpoint: b2.endpoint!,
      hybridConnection: b2.hybridConnection!,
      token: createSasToken({
        resourceUri: relayAudience(b2.endpoint!, b2.hybridConnection!),
        ...keysB2.listen,
        expiresAt,
      }),
      ca,
    });
    try {
      await listener.start();
      assert.equal(await statusOf(b2.endpoint!, b2.hybridConnection!, sendB(b2, keysB2)), 200);
    } finally {
      await listener.close();
    }
    const again = await h.m.reconcile(h.clock.now);
    assert.equal(again.counts.driftFound, 0, 'nothing drifts any more');
    await assertNothingLeaked(h);
  });
});

describe('pool maintenance under a role on the pool resource group only', () => {
  let env: RelayTestEnv;
  before(async () => {
    env = await startRelayTestEnv({
      createDelayMs: 50,
      deleteDelayMs: 20,
      roleAssignments: [
        { principalId: '*', role: 'Azure Relay Owner', scope: `/subscriptions/*/resourceGroups/${RG}` },
      ],
    });
  });
  after(async () => {
    await env.emulator.close();
  });

  it('reconcile lists by resource group; a group out of the role is a surfaced 403 and its rows are not judged', async () => {
    const h = await harness(env, { floor: 1 });
    await runOnce(h);
    const [row] = await h.store.list();
    const elsewhere = await h.store.insertCreating({
      name: `rbm-elsewhere-${seq}`,
      subscriptionId: row.subscriptionId,
      resourceGroup: 'rg-without-role',
      location: LOCATION,
      now: h.clock.now,
    });
    const run = await runOnce(h);
    assert.equal(run.reconcile.counts.listsFailed, 1);
    assert.ok(
      run.reconcile.errors.some((e) => e.includes('rg-without-role') && e.includes('AuthorizationFailed')),
      run.reconcile.errors.join('\n'),
    );
    assert.equal(run.record.outcome, 'partial');
    const status = await h.m.status(h.clock.now);
    assert.ok(
      status.lastRun?.errors.some((e) => e.includes('AuthorizationFailed')),
      'GET /pool shows it',
    );
    assert.equal((await h.store.get(elsewhere.name))?.state, 'creating', 'never judged gone on no evidence');
    assert.equal(await h.store.get(row.name).then((r) => r?.state), 'available');
  });
});

describe('pool maintenance quotas across three subscriptions', () => {
  let env: RelayTestEnv;
  before(async () => {
    // ARM allows 2 per subscription while the configuration believes 3.
    env = await startRelayTestEnv({ createDelayMs: 50, deleteDelayMs: 20, quotaPerSubscription: 2 });
  });
  after(async () => {
    await env.emulator.close();
  });

  it('spreads evenly, turns "quota exceeded" into a full subscription for the next runs, and never holds more than ARM allows', async () => {
    const h = await harness(env, { floor: 8, quotas: [3, 3, 3] });
    const first = await runOnce(h);
    const perSub = first.plan.provision.reduce<Record<string, number>>(
      (acc, i) => ({ ...acc, [i.subscriptionId]: (acc[i.subscriptionId] ?? 0) + 1 }),
      {},
    );
    assert.deepEqual(Object.values(perSub).sort(), [2, 3, 3], 'most free quota first: an even fill');
    const quotaHits = first.provision.filter(
      (o) => o.result === 'quota' || (o.result === 'skipped' && /quota/.test(o.error ?? '')),
    );
    assert.equal(quotaHits.length, 2);
    assert.equal(Object.keys(first.record.fullSubscriptions).length, 2);

    const results = [first, ...(await runUntilConverged(h, 4))];
    const last = results[results.length - 1];
    assert.equal(last.plan.provision.length, 0);
    assert.match(last.plan.reasons.join('\n'), /quota exceeded/);
    const rows = await h.store.list();
    assert.equal(rows.length, 6);
    for (const s of h.pool.subscriptions) {
      assert.equal(
        rows.filter((r) => r.subscriptionId === s.subscriptionId).length,
        2,
        `subscription ${s.subscriptionId} holds 2`,
      );
    }
    assert.ok(rows.every((r) => r.state === 'available'));
    await assertNothingLeaked(h);
  });
});
