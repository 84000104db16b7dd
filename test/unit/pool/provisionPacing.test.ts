// The pacing of a maintenance run's creations by ARM's limits: waves of at most N per subscription,
// never past the namespace writes Relay says are left, one probe when the last run found none
// left, nothing into a subscription refused until later; and what the next plan starts from.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runRecordOf, type ProvisionItem, type ProvisionOutcome } from '../../../lib/pool/maintenanceRun';
import { carryArmBudget, ProvisionPacer } from '../../../lib/pool/provisionPacing';

const items = (sub: string, n: number, retry = false): ProvisionItem[] =>
  Array.from({ length: n }, (_, i) => ({
    name: `${sub}-ns${i}`,
    subscriptionId: sub,
    resourceGroup: 'rg',
    location: 'westeurope',
    ...(retry ? { retry: true } : {}),
  }));

const available = (wave: ProvisionItem[], remainingAfter: (i: number) => number | undefined): ProvisionOutcome[] =>
  wave.map((item, i) => {
    const left = remainingAfter(i);
    return {
      name: item.name,
      subscriptionId: item.subscriptionId,
      result: 'available',
      ...(left !== undefined ? { arm: { namespaceWritesRemaining: left } } : {}),
    };
  });

const countBy = (wave: ProvisionItem[]) =>
  wave.reduce<Record<string, number>>((o, i) => ({ ...o, [i.subscriptionId]: (o[i.subscriptionId] ?? 0) + 1 }), {});

describe('ProvisionPacer', () => {
  it('starts at most perSubscription creations per subscription per wave', () => {
    const p = new ProvisionPacer([...items('a', 25), ...items('b', 3)], { perSubscription: 10, budget: {} });
    const sizes: Array<Record<string, number>> = [];
    for (let w = p.nextWave(); w.length > 0; w = p.nextWave()) {
      sizes.push(countBy(w));
      p.record(available(w, () => undefined));
    }
    assert.deepEqual(sizes, [{ a: 10, b: 3 }, { a: 10 }, { a: 5 }]);
    assert.deepEqual(p.deferred(), []);
    assert.equal(p.waveCount, 3);
  });

  it('stops a subscription when Relay says no namespace write is left, and defers the rest with the reason', () => {
    const p = new ProvisionPacer(items('a', 30), {
      perSubscription: 10,
      budget: { a: { namespaceWritesRemaining: 12 } },
    });
    const w1 = p.nextWave();
    assert.equal(w1.length, 10);
    p.record(available(w1, (i) => 11 - i)); // the lowest said: 2 left
    const w2 = p.nextWave();
    assert.equal(w2.length, 2, 'only the two writes left');
    p.record(available(w2, (i) => 1 - i)); // 0 left
    assert.deepEqual(p.nextWave(), []);
    const deferred = p.deferred();
    assert.equal(deferred.length, 18);
    assert.ok(deferred.every((o) => o.result === 'deferred' && /resource-requests 0/.test(o.error ?? '')));
    assert.match(p.deferredReasons()[0], /18 creation\(s\) deferred/);
    assert.deepEqual(p.budget(), { a: { namespaceWritesRemaining: 0 } });
  });

  it('probes with one creation when the last run found the budget spent; a refusal stops the subscription', () => {
    const p = new ProvisionPacer(items('a', 5), {
      perSubscription: 10,
      budget: { a: { namespaceWritesRemaining: 0 } },
    });
    const probe = p.nextWave();
    assert.equal(probe.length, 1);
    p.record([
      {
        name: probe[0].name,
        subscriptionId: 'a',
        result: 'throttled',
        arm: { refusedUntil: '2026-03-02T11:00:00.000Z', namespaceWritesRemaining: 0, throttled: 1 },
      },
    ]);
    assert.deepEqual(p.nextWave(), []);
    assert.equal(p.deferred().length, 4);
    assert.deepEqual(p.budget(), {
      a: { namespaceWritesRemaining: 0, refusedUntil: '2026-03-02T11:00:00.000Z', throttled: 1 },
    });
  });

  it('a probe that finds the window turned lets the subscription go at full pace', () => {
    const p = new ProvisionPacer(items('a', 15), {
      perSubscription: 10,
      budget: { a: { namespaceWritesRemaining: 0 } },
    });
    const probe = p.nextWave();
    assert.equal(probe.length, 1);
    p.record(available(probe, () => 49));
    assert.equal(p.nextWave().length, 10);
  });

  it('retries of existing rows spend no namespace write and go even when none is left', () => {
    const p = new ProvisionPacer(
      [...items('a', 3, true), ...items('a', 3).map((i) => ({ ...i, name: `n-${i.name}` }))],
      {
        perSubscription: 10,
        budget: { a: { namespaceWritesRemaining: 1 } },
      },
    );
    const w = p.nextWave();
    assert.equal(w.filter((i) => i.retry).length, 3);
    assert.equal(w.filter((i) => !i.retry).length, 1);
  });

  it('gives the same waves for the same outcomes (the orchestration replays it)', () => {
    const run = () => {
      const p = new ProvisionPacer([...items('a', 12), ...items('b', 7)], { perSubscription: 5, budget: {} });
      const waves: string[][] = [];
      for (let w = p.nextWave(); w.length > 0; w = p.nextWave()) {
        waves.push(w.map((i) => i.name));
        p.record(available(w, (i) => 8 - i));
      }
      return { waves, deferred: p.deferred().map((o) => o.name) };
    };
    assert.deepEqual(run(), run());
  });
});

describe('carryArmBudget', () => {
  it('keeps counts, drops refusals already over, takes this run over the last', () => {
    const out = carryArmBudget(
      {
        a: { namespaceWritesRemaining: 0, refusedUntil: '2026-03-02T10:00:00.000Z' },
        b: { namespaceWritesRemaining: 3, refusedUntil: '2026-03-02T12:00:00.000Z' },
      },
      { a: { namespaceWritesRemaining: 40, throttled: 2 } },
      '2026-03-02T11:00:00.000Z',
    );
    assert.deepEqual(out, {
      a: { namespaceWritesRemaining: 40, throttled: 2 },
      b: { namespaceWritesRemaining: 3, refusedUntil: '2026-03-02T12:00:00.000Z' },
    });
  });
});

describe('the run record', () => {
  it('keeps what provisioning learnt of ARM, and throttled or deferred creations are no failure of the run', () => {
    const record = runRecordOf(
      {
        runId: 'r1',
        startedAt: '2026-03-02T10:00:00.000Z',
        finishedAt: '2026-03-02T10:02:00.000Z',
        plan: { target: 500, usable: 300, reasons: [], fullSubscriptions: {} },
        steps: { provision: { available: 300, deferred: 194, throttled: 6 } },
        errors: [],
        quotaExceeded: [],
        armBudget: { a: { namespaceWritesRemaining: 0, refusedUntil: '2026-03-02T11:00:00.000Z', throttled: 1 } },
      },
      10,
      { b: { namespaceWritesRemaining: 12 } },
    );
    assert.equal(record.outcome, 'succeeded');
    assert.deepEqual(record.armBudget, {
      a: { namespaceWritesRemaining: 0, refusedUntil: '2026-03-02T11:00:00.000Z', throttled: 1 },
      b: { namespaceWritesRemaining: 12 },
    });
  });
});
