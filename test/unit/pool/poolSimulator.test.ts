// The pool simulator on scenarios small enough to follow by hand.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  AZURE_ARM_LIMITS,
  generateSessions,
  hourProfileOf,
  peakDayConcurrency,
  simulatePool,
  type SimOptions,
} from '../../../bench/poolSimulator';
import type { PoolPolicy } from '../../../lib/pool/poolPolicy';

const base: Omit<SimOptions, 'mode' | 'sessions'> = {
  durationSeconds: 120,
  warmupSeconds: 0,
  dayStart: new Date('2026-03-02T00:00:00.000Z'),
  createSeconds: 20,
  recycleSeconds: 5,
  deleteSeconds: 30,
  maintenanceSeconds: 60,
  leaseWindowMinutes: 5,
  seed: 1,
};

describe('simulatePool', () => {
  it('a static pool of 2 refuses the third concurrent session and serves again after recycle', () => {
    const r = simulatePool({
      ...base,
      mode: { kind: 'static', size: 2 },
      sessions: [
        { at: 0, durationSeconds: 100 },
        { at: 1, durationSeconds: 100 },
        { at: 2, durationSeconds: 100 },
        { at: 110, durationSeconds: 100 },
      ],
    });
    assert.deepEqual(
      [r.sessions, r.refused, r.refusedAt, r.peakConcurrency, r.created, r.deleted],
      [4, 1, [2], 2, 0, 0],
    );
    // Available namespace-seconds: 1 at t=0, 1 at t=105, 2 for t=106..109, 1 for t=110..119.
    assert.equal(Math.round(r.idleNamespaceHours * 3600), 20);
    assert.equal(Math.round(r.namespaceHours * 3600), 240);
  });

  it('the policy fills an empty pool to the floor, then grows within the quota', () => {
    const policy: PoolPolicy = {
      subscriptions: [{ subscriptionId: 'only', resourceGroup: 'rg', location: 'x', quota: 3 }],
      namespacePrefix: 'sim',
      floor: 2,
      cap: 10,
      headroom: 1.25,
      createSeconds: 20,
      maintenanceSeconds: 60,
      shrinkIdleMinutes: 30,
      shrinkFractionPerRun: 0.1,
      nameReuseHours: 24,
    };
    const r = simulatePool({
      ...base,
      mode: { kind: 'policy', policy },
      sessions: [
        { at: 10, durationSeconds: 1000 }, // before the first two are created: refused
        { at: 30, durationSeconds: 1000 },
        { at: 31, durationSeconds: 1000 },
        { at: 32, durationSeconds: 1000 }, // both leased: refused
        { at: 90, durationSeconds: 1000 }, // the third, ordered at t=60, is ready at t=80
      ],
    });
    assert.deepEqual(
      [r.refused, r.refusedAt, r.created, r.maxRows, r.maxRowsBySubscription.only],
      [2, [10, 32], 3, 3, 3],
    );
  });

  it('is deterministic for a seed', () => {
    const sessions = generateSessions(() => 20, 0, 3600, 7);
    const opts: SimOptions = { ...base, durationSeconds: 3600, mode: { kind: 'static', size: 10 }, sessions };
    assert.deepEqual(simulatePool(opts), simulatePool(opts));
    assert.deepEqual(
      generateSessions(() => 20, 0, 3600, 7),
      sessions,
    );
  });
});

describe('the benchmark day', () => {
  it('has normal load 30–50 and a peak of 500 from 14:00 to 15:00 UTC', () => {
    assert.ok(Math.abs(peakDayConcurrency(0) - 30) < 1e-9);
    assert.ok(Math.abs(peakDayConcurrency(12 * 3600) - 50) < 1e-9);
    assert.equal(peakDayConcurrency(14.5 * 3600), 500);
    const profile = hourProfileOf((t) => peakDayConcurrency(t));
    assert.equal(profile.length, 24);
    assert.deepEqual([profile[13], profile[14], profile[15]], [500, 500, 500]);
    assert.ok(profile.filter((_, h) => h < 13 || h > 15).every((v) => v >= 30 && v <= 50));
  });

  it('under ARM limits, the pacer fills one namespace-write window, is refused once, and finishes after the window', () => {
    const policy: PoolPolicy = {
      subscriptions: [
        { subscriptionId: 'a', resourceGroup: 'rg', location: 'x', quota: 100 },
        { subscriptionId: 'b', resourceGroup: 'rg', location: 'x', quota: 100 },
      ],
      namespacePrefix: 'sim',
      floor: 30,
      cap: 200,
      headroom: 1.25,
      createSeconds: 44,
      maintenanceSeconds: 60,
      shrinkIdleMinutes: 30,
      shrinkFractionPerRun: 0.1,
      nameReuseHours: 24,
    };
    const r = simulatePool({
      ...base,
      durationSeconds: 3600,
      createSeconds: 44,
      mode: { kind: 'policy', policy },
      sessions: [],
      arm: { ...AZURE_ARM_LIMITS, namespaceWriteLimit: 10, namespaceWriteWindowSeconds: 600, perSubscription: 4 },
      stopWhenAvailable: 30,
    });
    // 10 per subscription in the first window (waves of 4, 4, 2 of 44 s each: 132 s); at 180 s a
    // probe each, refused until 600 s (handled); at 600 s a probe each (the count carried is 0),
    // then the other 4 each in one wave: 600 + 44 + 44.
    assert.equal(r.reachedAt, 688);
    assert.equal(r.created, 30);
    assert.equal(r.arm?.refused, 2);
    assert.equal(r.arm?.waves, 3 + 1 + 1 + 1);
  });
});
