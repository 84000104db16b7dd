// Whether the pool can still grow, and if not what stops it: POOL_CAP, or every subscription at its
// namespace quota. An exhausted pool that can grow needs patience (maintenance adds namespaces as
// demand rises); one that cannot needs a setting raised. Said in pool_exhausted, GET /pool and the
// CLI's hint. Pure: PoolMaintenance.growth reads the counts.
import { PoolExhaustedError } from '../errors';

export type PoolGrowthState = 'growing' | 'at_cap' | 'at_quota';

export interface PoolGrowth {
  state: PoolGrowthState;
  /** Namespaces of the pool in any state (what POOL_CAP counts). */
  total: number;
  cap: number;
  /** The subscriptions' quotas summed (a subscription found full recently counts as what it holds). */
  quota: number;
  /** The setting to raise when it cannot grow. */
  setting?: 'POOL_CAP' | 'POOL_SUBSCRIPTIONS';
  /** One sentence for people: where the pool stands and what frees or adds a namespace. */
  detail: string;
}

/**
 * `at_cap` when the pool holds POOL_CAP namespaces; else `at_quota` when every subscription holds
 * its quota; else `growing`. The cap is named first: raising a quota is no use under it.
 */
export function poolGrowth(input: {
  cap: number;
  total: number;
  subscriptions: ReadonlyArray<{ subscriptionId: string; quota: number }>;
  bySubscription: Readonly<Record<string, { total: number } | undefined>>;
}): PoolGrowth {
  const { cap, total } = input;
  const quota = input.subscriptions.reduce((s, sub) => s + sub.quota, 0);
  if (total >= cap)
    return {
      state: 'at_cap',
      total,
      cap,
      quota,
      setting: 'POOL_CAP',
      detail: `The pool is at its cap (${total} namespaces, POOL_CAP ${cap}): it will not grow; only an ending session frees a namespace.`,
    };
  const full = input.subscriptions.every((sub) => (input.bySubscription[sub.subscriptionId]?.total ?? 0) >= sub.quota);
  if (full)
    return {
      state: 'at_quota',
      total,
      cap,
      quota,
      setting: 'POOL_SUBSCRIPTIONS',
      detail: `Every pool subscription is at its namespace quota (${total} namespaces, quotas ${quota} in POOL_SUBSCRIPTIONS): the pool will not grow; only an ending session frees a namespace.`,
    };
  return {
    state: 'growing',
    total,
    cap,
    quota,
    detail: `The pool is below its cap (${total} of POOL_CAP ${cap} namespaces): maintenance adds namespaces as demand rises.`,
  };
}

/** The pool_exhausted problem: what stops the pool (extension `poolGrowth`, and `setting` to raise), and when to retry. */
export function poolExhausted(growth: PoolGrowth | undefined, retryAfterSeconds: number): PoolExhaustedError {
  if (!growth)
    return new PoolExhaustedError(
      'Every relay namespace is in use. Retry after the indicated delay.',
      retryAfterSeconds,
    );
  const what =
    growth.state === 'growing'
      ? 'Retry after the indicated delay.'
      : `Raise ${growth.setting} (an admin setting), or retry once a session has ended.`;
  return new PoolExhaustedError(`Every relay namespace is in use. ${growth.detail} ${what}`, retryAfterSeconds, {
    extensions: { poolGrowth: growth.state, ...(growth.setting ? { setting: growth.setting } : {}) },
  });
}
