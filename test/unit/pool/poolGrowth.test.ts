// Whether an exhausted pool can still grow, or stands at POOL_CAP or at its subscriptions' quotas,
// and how pool_exhausted and the CLI say it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { problemError } from '../../../agent/apiClient';
import { toProblem } from '../../../lib/errors';
import { poolExhausted, poolGrowth } from '../../../lib/pool/poolGrowth';

const subs = [
  { subscriptionId: 's1', quota: 3 },
  { subscriptionId: 's2', quota: 2 },
];

describe('poolGrowth', () => {
  it('is growing below the cap while a subscription has quota left', () => {
    const g = poolGrowth({
      cap: 10,
      total: 4,
      subscriptions: subs,
      bySubscription: { s1: { total: 3 }, s2: { total: 1 } },
    });
    assert.equal(g.state, 'growing');
    assert.equal(g.setting, undefined);
    assert.match(g.detail, /below its cap \(4 of POOL_CAP 10/);
  });

  it('is at_cap once the pool holds POOL_CAP namespaces, whatever the quotas', () => {
    const g = poolGrowth({ cap: 4, total: 4, subscriptions: subs, bySubscription: { s1: { total: 4 } } });
    assert.equal(g.state, 'at_cap');
    assert.equal(g.setting, 'POOL_CAP');
    assert.match(g.detail, /at its cap \(4 namespaces, POOL_CAP 4\)/);
    // Both limits reached: the cap is named, raising a quota alone would not help.
    const both = poolGrowth({
      cap: 5,
      total: 5,
      subscriptions: subs,
      bySubscription: { s1: { total: 3 }, s2: { total: 2 } },
    });
    assert.equal(both.state, 'at_cap');
  });

  it('is at_quota when every subscription holds its quota below the cap', () => {
    const g = poolGrowth({
      cap: 600,
      total: 5,
      subscriptions: subs,
      bySubscription: { s1: { total: 3 }, s2: { total: 2 } },
    });
    assert.equal(g.state, 'at_quota');
    assert.equal(g.setting, 'POOL_SUBSCRIPTIONS');
    assert.match(g.detail, /quotas 5 in POOL_SUBSCRIPTIONS/);
  });
});

describe('pool_exhausted says whether the pool grows', () => {
  const problemOf = (err: ReturnType<typeof poolExhausted>) => toProblem(err, 'corr').body as Record<string, unknown>;
  const hintOf = (body: Record<string, unknown>) =>
    problemError(503, body, new Headers({ 'retry-after': '30' }), 'POST /sessions').problem.hint ?? '';

  it('at the cap: the detail, the extension and the CLI hint name POOL_CAP', () => {
    const growth = poolGrowth({ cap: 2, total: 2, subscriptions: subs, bySubscription: { s1: { total: 2 } } });
    const body = problemOf(poolExhausted(growth, 30));
    assert.equal(body.status, 503);
    assert.equal(body.code, 'pool_exhausted');
    assert.equal(body.poolGrowth, 'at_cap');
    assert.equal(body.setting, 'POOL_CAP');
    assert.match(String(body.detail), /at its cap .*Raise POOL_CAP/);
    assert.doesNotMatch(String(body.detail), /growing/);
    assert.match(hintOf(body), /at its cap: an admin can raise POOL_CAP/);
    assert.doesNotMatch(hintOf(body), /growing/);
  });

  it('at the quotas: POOL_SUBSCRIPTIONS', () => {
    const growth = poolGrowth({
      cap: 600,
      total: 5,
      subscriptions: subs,
      bySubscription: { s1: { total: 3 }, s2: { total: 2 } },
    });
    const body = problemOf(poolExhausted(growth, 30));
    assert.equal(body.poolGrowth, 'at_quota');
    assert.equal(body.setting, 'POOL_SUBSCRIPTIONS');
    assert.match(hintOf(body), /POOL_SUBSCRIPTIONS/);
  });

  it('still growing: wait, no setting to raise', () => {
    const growth = poolGrowth({ cap: 600, total: 1, subscriptions: subs, bySubscription: { s1: { total: 1 } } });
    const body = problemOf(poolExhausted(growth, 12));
    assert.equal(body.poolGrowth, 'growing');
    assert.equal(body.setting, undefined);
    assert.match(String(body.detail), /below its cap .*Retry after the indicated delay/);
    assert.match(hintOf(body), /the pool is growing\. Retry in 30 s/);
  });

  it('unknown (the pool could not be read): neither claim', () => {
    const body = problemOf(poolExhausted(undefined, 30));
    assert.equal(body.poolGrowth, undefined);
    assert.doesNotMatch(hintOf(body), /growing|cap/);
  });
});
