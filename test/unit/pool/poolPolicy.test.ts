// The pure sizing policy: floor, bursts, hour-profile look-ahead, quotas and cap, hysteresis,
// oldest-idle deletion and name reuse.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NAMESPACE_NAME_PATTERN, type NamespaceState } from '../../../lib/pool/namespace';
import {
  namespaceName,
  planPool,
  policyFromConfig,
  profileLookAhead,
  type NamespaceSummary,
  type PoolPolicy,
  type PoolSnapshot,
} from '../../../lib/pool/poolPolicy';
import type { Config } from '../../../lib/config';

const NOW = new Date('2026-03-02T10:00:00.000Z');
const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000);

function policy(over: Partial<PoolPolicy> = {}): PoolPolicy {
  return {
    subscriptions: [
      { subscriptionId: 'sub-a', resourceGroup: 'rg-a', location: 'westeurope', quota: 100 },
      { subscriptionId: 'sub-b', resourceGroup: 'rg-b', location: 'westeurope', quota: 100 },
      { subscriptionId: 'sub-c', resourceGroup: 'rg-c', location: 'northeurope', quota: 100 },
    ],
    namespacePrefix: 'rbk',
    floor: 5,
    cap: 600,
    headroom: 1.25,
    createSeconds: 45,
    maintenanceSeconds: 60,
    shrinkIdleMinutes: 30,
    shrinkFractionPerRun: 0.1,
    nameReuseHours: 24,
    nameSalt: 't1',
    ...over,
  };
}

let seq = 0;
function rows(
  n: number,
  state: NamespaceState,
  sub = 'sub-a',
  opts: { createdMinutesAgo?: number; changedMinutesAgo?: number } = {},
): NamespaceSummary[] {
  return Array.from({ length: n }, () => ({
    name: `rbk-row${(seq++).toString().padStart(5, '0')}`,
    subscriptionId: sub,
    state,
    createdAt: minutesAgo(opts.createdMinutesAgo ?? 600),
    stateChangedAt: minutesAgo(opts.changedMinutesAgo ?? 120),
  }));
}

function snapshot(namespaces: NamespaceSummary[], over: Partial<PoolSnapshot> = {}): PoolSnapshot {
  return { namespaces, recentlyDeleted: [], recentLeases: { count: 0, windowMinutes: 5 }, ...over };
}

const created = (plan: ReturnType<typeof planPool>) => plan.create.reduce((s, c) => s + c.count, 0);

describe('planPool', () => {
  it('fills an empty pool to the floor, spread evenly across subscriptions', () => {
    const plan = planPool(snapshot([]), policy(), NOW);
    assert.equal(plan.target, 5);
    assert.equal(created(plan), 5);
    assert.deepEqual(
      plan.create.map((c) => [c.subscriptionId, c.count]),
      [
        ['sub-a', 2],
        ['sub-b', 2],
        ['sub-c', 1],
      ],
    );
    const names = plan.create.flatMap((c) => c.names);
    assert.equal(new Set(names).size, 5);
    for (const n of names) assert.match(n, NAMESPACE_NAME_PATTERN);
    assert.deepEqual(plan.delete, []);
    assert.equal(plan.create[0].resourceGroup, 'rg-a');
  });

  it('keeps the floor available on top of the leased ones', () => {
    const plan = planPool(snapshot(rows(40, 'leased')), policy({ headroom: 1 }), NOW);
    assert.equal(plan.target, 45);
    assert.equal(created(plan), 5);
  });

  it('raises the target when a burst of leases arrives', () => {
    const base = [...rows(40, 'leased'), ...rows(10, 'available')];
    const calm = planPool(snapshot(base), policy(), NOW);
    assert.equal(calm.target, 50); // ceil(1.25 × 40)
    assert.equal(created(calm), 0);
    // 60 leases in 5 minutes = 12/min; over the horizon 45 + 60 s that is 21 more sessions.
    const burst = planPool(snapshot(base, { recentLeases: { count: 60, windowMinutes: 5 } }), policy(), NOW);
    assert.equal(burst.demand.horizonSeconds, 105);
    assert.equal(Math.round(burst.demand.arrivals), 21);
    assert.equal(burst.target, Math.ceil(1.25 * (40 + 21)));
    assert.equal(created(burst), burst.target - 50);
  });

  it('looks ahead on the hour profile by the creation time plus one maintenance period', () => {
    const profile = Array.from({ length: 24 }, (_, h) => (h === 14 ? 400 : 40));
    const roomy = policy().subscriptions.map((s) => ({ ...s, quota: 200 }));
    const p = policy({ hourProfile: profile, subscriptions: roomy });
    const before = planPool(snapshot([]), p, new Date('2026-03-02T13:58:00.000Z')); // +105 s = 13:59:45
    assert.equal(before.demand.profile, 40);
    assert.equal(before.target, 50);
    const ahead = planPool(snapshot([]), p, new Date('2026-03-02T13:58:30.000Z')); // +105 s = 14:00:15
    assert.equal(ahead.demand.profile, 400);
    assert.equal(ahead.target, 500);
    const longerCreate = planPool(
      snapshot([]),
      policy({ hourProfile: profile, createSeconds: 300 }),
      new Date('2026-03-02T13:55:00.000Z'),
    );
    assert.equal(longerCreate.demand.profile, 400);
  });

  it('profileLookAhead takes the highest hour the window touches, wrapping at midnight', () => {
    const profile = Array.from({ length: 24 }, (_, h) => h);
    assert.equal(profileLookAhead(profile, new Date('2026-03-02T23:59:00.000Z'), 120), 23);
    assert.equal(profileLookAhead(profile, new Date('2026-03-02T22:59:00.000Z'), 120), 23);
    assert.equal(profileLookAhead(undefined, NOW, 120), 0);
  });

  it('never exceeds a subscription quota, and fills the most free subscription first', () => {
    const subs = [
      { subscriptionId: 'sub-a', resourceGroup: 'rg', location: 'x', quota: 100 },
      { subscriptionId: 'sub-b', resourceGroup: 'rg', location: 'x', quota: 50 },
      { subscriptionId: 'sub-c', resourceGroup: 'rg', location: 'x', quota: 100 },
    ];
    const existing = [...rows(90, 'leased', 'sub-a'), ...rows(10, 'leased', 'sub-b')];
    const plan = planPool(snapshot(existing), policy({ subscriptions: subs, headroom: 2 }), NOW);
    // wanted 200 (2 × 100 leased), capacity 250: 100 more, from free quotas 10 / 40 / 100.
    assert.equal(plan.target, 200);
    const by = Object.fromEntries(plan.create.map((c) => [c.subscriptionId, c.count]));
    assert.equal(created(plan), 100);
    assert.equal(by['sub-a'] ?? 0, 0);
    assert.equal(by['sub-b'], 20);
    assert.equal(by['sub-c'], 80);
    // Even fill: the free quota left is as equal as the counts allow.
    assert.deepEqual([10 - (by['sub-a'] ?? 0), 40 - by['sub-b'], 100 - by['sub-c']], [10, 20, 20]);
  });

  it('stops at the quotas of three subscriptions and at the global cap', () => {
    const quotas = planPool(snapshot(rows(250, 'leased', 'sub-a').slice(0, 100)), policy({ headroom: 10 }), NOW);
    assert.equal(quotas.target, 300);
    const byQuota = Object.fromEntries(quotas.create.map((c) => [c.subscriptionId, c.count]));
    assert.deepEqual(byQuota, { 'sub-b': 100, 'sub-c': 100 });
    assert.ok(quotas.reasons.some((r) => r.includes('capacity')));

    const capped = planPool(snapshot(rows(100, 'leased', 'sub-a')), policy({ headroom: 10, cap: 130 }), NOW);
    assert.equal(capped.target, 130);
    assert.equal(created(capped), 30);
  });

  it('counts quarantined and deleting rows against quota and cap', () => {
    const existing = [...rows(95, 'quarantined', 'sub-a'), ...rows(5, 'deleting', 'sub-a')];
    const plan = planPool(snapshot(existing), policy({ floor: 250 }), NOW);
    assert.equal(plan.target, 200);
    assert.equal(
      plan.create.find((c) => c.subscriptionId === 'sub-a'),
      undefined,
    );
    assert.equal(created(plan), 200);
  });

  it('shrinks only after staying above target for shrinkIdleMinutes, and slowly', () => {
    const pool = rows(100, 'available', 'sub-a', { changedMinutesAgo: 120 });
    const first = planPool(snapshot(pool), policy(), NOW);
    assert.equal(first.target, 5);
    assert.deepEqual(first.delete, []);
    assert.equal(first.aboveTargetSince?.toISOString(), NOW.toISOString());

    const tenLater = new Date(NOW.getTime() + 10 * 60_000);
    const second = planPool(snapshot(pool, { aboveTargetSince: first.aboveTargetSince }), policy(), tenLater);
    assert.deepEqual(second.delete, []);
    assert.equal(second.aboveTargetSince?.toISOString(), NOW.toISOString());

    const later = new Date(NOW.getTime() + 31 * 60_000);
    const third = planPool(snapshot(pool, { aboveTargetSince: first.aboveTargetSince }), policy(), later);
    assert.equal(third.delete.length, Math.ceil(0.1 * 95));
    assert.equal(created(third), 0);
  });

  it('forgets the hysteresis once the pool is back at target', () => {
    const plan = planPool(snapshot(rows(5, 'available'), { aboveTargetSince: minutesAgo(60) }), policy(), NOW);
    assert.equal(plan.aboveTargetSince, undefined);
    assert.deepEqual(plan.delete, []);
  });

  it('deletes the oldest idle namespaces first, never busy or recently used ones', () => {
    const oldBusy = rows(3, 'leased', 'sub-a', { createdMinutesAgo: 5000 });
    const oldJustUsed = rows(2, 'available', 'sub-a', { createdMinutesAgo: 4000, changedMinutesAgo: 1 });
    const idle = [300, 100, 200, 50].map(
      (age) => rows(1, 'available', 'sub-b', { createdMinutesAgo: age, changedMinutesAgo: 45 })[0],
    );
    const p = policy({ floor: 0, headroom: 1, shrinkFractionPerRun: 1, shrinkIdleMinutes: 30 });
    const plan = planPool(
      snapshot([...oldBusy, ...oldJustUsed, ...idle], { aboveTargetSince: minutesAgo(60) }),
      p,
      NOW,
    );
    assert.equal(plan.target, 3);
    // Excess 6, but only 4 are idle ≥ 30 min: those go, oldest first.
    assert.deepEqual(plan.delete, [idle[0].name, idle[2].name, idle[1].name, idle[3].name]);
  });

  it('never creates and deletes in the same run', () => {
    for (const n of [0, 3, 5, 50]) {
      const plan = planPool(snapshot(rows(n, 'available'), { aboveTargetSince: minutesAgo(60) }), policy(), NOW);
      assert.ok(!(plan.create.length > 0 && plan.delete.length > 0));
    }
  });

  it('refuses a name deleted within nameReuseHours, and allows it after', () => {
    const first = namespaceName('rbk', NOW, 0, 't1');
    const second = namespaceName('rbk', NOW, 1, 't1');
    const recent = planPool(
      snapshot([], { recentlyDeleted: [{ name: first, deletedAt: minutesAgo(60) }] }),
      policy({ floor: 1 }),
      NOW,
    );
    assert.deepEqual(
      recent.create.flatMap((c) => c.names),
      [second],
    );
    const old = planPool(
      snapshot([], { recentlyDeleted: [{ name: first, deletedAt: minutesAgo(25 * 60) }] }),
      policy({ floor: 1 }),
      NOW,
    );
    assert.deepEqual(
      old.create.flatMap((c) => c.names),
      [first],
    );
  });

  it('never generates the name of an existing row', () => {
    const taken: NamespaceSummary = {
      name: namespaceName('rbk', NOW, 0, 't1'),
      subscriptionId: 'sub-a',
      state: 'quarantined',
      createdAt: NOW,
      stateChangedAt: NOW,
    };
    const plan = planPool(snapshot([taken]), policy({ floor: 2 }), NOW);
    assert.ok(!plan.create.flatMap((c) => c.names).includes(taken.name));
  });
});

describe('namespaceName', () => {
  it('gives DNS-label-safe names of 6 to 50 chars, even at the longest prefix and salt', () => {
    const longest = namespaceName('a'.repeat(21), new Date('2100-01-01T00:00:00Z'), 46_655, 'salt1234extra');
    assert.ok(longest.length <= 50, longest);
    assert.match(longest, NAMESPACE_NAME_PATTERN);
    const shortest = namespaceName('abc', new Date(0), 0);
    assert.ok(shortest.length >= 6, shortest);
    assert.match(shortest, NAMESPACE_NAME_PATTERN);
  });

  it('drops a trailing hyphen of the prefix and unsafe salt characters', () => {
    assert.match(namespaceName('rbk-', NOW, 1, 'A_b!'), /^rbk-ab[a-z0-9]+$/);
  });
});

describe('policyFromConfig', () => {
  it('takes every sizing setting from the configuration', () => {
    const pool: Config['pool'] = {
      name: 'default',
      subscriptions: [{ subscriptionId: 'sub-a', resourceGroup: 'rg', location: 'x', quota: 100 }],
      namespacePrefix: 'rbk',
      floor: 7,
      cap: 70,
      headroom: 1.5,
      createSeconds: 20,
      stuckMinutes: 30,
      maxRecycleFailures: 3,
      shrinkIdleMinutes: 15,
      nameReuseHours: 48,
    };
    const p = policyFromConfig(pool, { maintenanceSeconds: 30 });
    assert.deepEqual(
      [
        p.floor,
        p.cap,
        p.headroom,
        p.createSeconds,
        p.shrinkIdleMinutes,
        p.nameReuseHours,
        p.maintenanceSeconds,
        p.shrinkFractionPerRun,
      ],
      [7, 70, 1.5, 20, 15, 48, 30, 0.1],
    );
    assert.equal(p.subscriptions, pool.subscriptions);
  });
});
