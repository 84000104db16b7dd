// The read model of GET /pool: namespaces by state and subscription, the target the policy would
// plan now and why, and the last maintenance run. Built from what PoolMaintenance.status reads;
// pure, so the shape of the answer is decided in one place.
import type { PoolSubscription } from '../config';
import { NAMESPACE_STATES, zeroByState, type NamespaceState, type PoolCounts } from './namespace';
import type { PoolGrowth } from './poolGrowth';
import type { PoolPlan } from './poolPolicy';
import type { PoolRunRecord } from './poolRunStore';

export interface PoolStatus {
  pool: string;
  total: number;
  byState: Record<NamespaceState, number>;
  bySubscription: Array<{
    subscriptionId: string;
    resourceGroup?: string;
    location?: string;
    quota?: number;
    total: number;
    byState: Record<NamespaceState, number>;
  }>;
  target: {
    value: number;
    usable: number;
    reasons: string[];
    demand: PoolPlan['demand'];
    wouldCreate: number;
    wouldDelete: number;
  };
  /** Whether the pool can still grow, or stands at POOL_CAP or at its subscriptions' quotas. */
  growth: Omit<PoolGrowth, 'total'>;
  lastRun?: PoolRunRecord;
}

/**
 * The answer of GET /pool. Every configured subscription is listed (with zeros when it holds
 * nothing), then any other subscription a row names (a subscription removed from the settings).
 */
export function buildPoolStatus(input: {
  pool: string;
  subscriptions: readonly PoolSubscription[];
  counts: PoolCounts;
  plan: PoolPlan;
  growth: PoolGrowth;
  lastRun: PoolRunRecord | undefined;
}): PoolStatus {
  const { counts, plan } = input;
  const configured = new Map(input.subscriptions.map((s) => [s.subscriptionId, s]));
  const subIds = [...new Set([...configured.keys(), ...Object.keys(counts.bySubscription)])];
  return {
    pool: input.pool,
    total: counts.total,
    byState: counts.byState,
    bySubscription: subIds.map((id) => {
      const c = counts.bySubscription[id];
      const sub = configured.get(id);
      const byState = zeroByState();
      for (const s of NAMESPACE_STATES) byState[s] = c?.[s] ?? 0;
      return {
        subscriptionId: id,
        ...(sub ? { resourceGroup: sub.resourceGroup, location: sub.location, quota: sub.quota } : {}),
        total: c?.total ?? 0,
        byState,
      };
    }),
    target: {
      value: plan.target,
      usable: plan.usable,
      reasons: plan.reasons,
      demand: plan.demand,
      wouldCreate: plan.create.reduce((n, c) => n + c.count, 0),
      wouldDelete: plan.delete.length,
    },
    growth: (({ total: _total, ...rest }) => rest)(input.growth),
    ...(input.lastRun ? { lastRun: input.lastRun } : {}),
  };
}
