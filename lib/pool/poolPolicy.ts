// The pool sizing policy, pure: from a snapshot of the pool (rows, recent deletions, lease rate)
// and the settings, decide how many namespaces to create in which subscription and which to delete.
// No I/O, no clock, no randomness: the same inputs give the same plan (it runs in orchestrations
// and in the simulator).
import type { Config, PoolSubscription } from '../config';
import { NAMESPACE_NAME_PATTERN, zeroByState, type NamespaceState } from './namespace';

/** One row of the pool as the policy needs it. */
export interface NamespaceSummary {
  name: string;
  subscriptionId: string;
  state: NamespaceState;
  createdAt: Date;
  stateChangedAt: Date;
}

/** A namespace name deleted at `deletedAt` (a tombstone). */
export interface DeletedName {
  name: string;
  deletedAt: Date;
}

export interface PoolSnapshot {
  /** Every row of the pool, in any state. */
  namespaces: NamespaceSummary[];
  /** Tombstones of deleted names (older ones may be included; the policy applies nameReuseHours). */
  recentlyDeleted: DeletedName[];
  /** Leases that started in the last `windowMinutes`: the recent demand rate. */
  recentLeases: { count: number; windowMinutes: number };
  /** Carried over from the previous plan (`PoolPlan.aboveTargetSince`): the shrink hysteresis. */
  aboveTargetSince?: Date;
}

export interface PoolPolicy {
  subscriptions: PoolSubscription[];
  namespacePrefix: string;
  /** Namespaces kept available at least (on top of the leased ones). */
  floor: number;
  /** Global cap on rows (any state) across subscriptions. */
  cap: number;
  /** 24 expected concurrent sessions, one per UTC hour. */
  hourProfile?: number[];
  /** Multiplier on the expected demand. */
  headroom: number;
  /** Expected time for a namespace to become available after it is ordered. */
  createSeconds: number;
  /** Period of the maintenance run: an order placed next run lands maintenanceSeconds later. */
  maintenanceSeconds: number;
  /** The pool must stay above target this long before it shrinks; only namespaces idle this long are deleted. */
  shrinkIdleMinutes: number;
  /** At most this fraction of the excess (at least one) is deleted per run. */
  shrinkFractionPerRun: number;
  /** A deleted name is not generated again for this long. */
  nameReuseHours: number;
  /** Lowercase letters and digits mixed into generated names (e.g. from the storage account) so two deployments never race for the same global name. */
  nameSalt?: string;
}

export const DEFAULT_MAINTENANCE_SECONDS = 60;
export const DEFAULT_SHRINK_FRACTION_PER_RUN = 0.1;

/** The policy settings from the validated configuration, plus the two that are not settings. */
export function policyFromConfig(
  pool: Config['pool'],
  extras: { maintenanceSeconds?: number; shrinkFractionPerRun?: number; nameSalt?: string } = {},
): PoolPolicy {
  return {
    subscriptions: pool.subscriptions,
    namespacePrefix: pool.namespacePrefix,
    floor: pool.floor,
    cap: pool.cap,
    hourProfile: pool.hourProfile,
    headroom: pool.headroom,
    createSeconds: pool.createSeconds,
    maintenanceSeconds: extras.maintenanceSeconds ?? DEFAULT_MAINTENANCE_SECONDS,
    shrinkIdleMinutes: pool.shrinkIdleMinutes,
    shrinkFractionPerRun: extras.shrinkFractionPerRun ?? DEFAULT_SHRINK_FRACTION_PER_RUN,
    nameReuseHours: pool.nameReuseHours,
    nameSalt: extras.nameSalt,
  };
}

export interface PlannedCreation {
  subscriptionId: string;
  resourceGroup: string;
  location: string;
  count: number;
  names: string[];
}

export interface PoolPlan {
  /** Usable namespaces (creating + available + leased + recycling) the pool should have. */
  target: number;
  /** Usable namespaces it has now. */
  usable: number;
  create: PlannedCreation[];
  /** Names of available namespaces to delete, oldest first. */
  delete: string[];
  /** Why: one line per decision, for logs and GET /pool. */
  reasons: string[];
  /** Pass back in the next snapshot; undefined when the pool is not above target. */
  aboveTargetSince?: Date;
  demand: {
    leased: number;
    /** Leases expected over the horizon from the recent rate. */
    arrivals: number;
    /** Highest hour-profile value over [now, now + horizon]; 0 without a profile. */
    profile: number;
    /** Concurrent sessions planned for: max(leased + arrivals, profile). */
    expected: number;
    horizonSeconds: number;
  };
  counts: {
    byState: Record<NamespaceState, number>;
    bySubscription: Record<string, number>;
  };
}

/**
 * Highest value of a 24-hour profile over [from, from + seconds]: the step function's maximum
 * over every UTC hour the window touches. 0 without a profile.
 */
export function profileLookAhead(profile: readonly number[] | undefined, from: Date, seconds: number): number {
  if (!profile || profile.length !== 24) return 0;
  const startHour = Math.floor(from.getTime() / 3_600_000);
  const endHour = Math.floor((from.getTime() + Math.max(0, seconds) * 1000) / 3_600_000);
  let max = 0;
  for (let h = startHour; h <= endHour && h - startHour < 24; h++) max = Math.max(max, profile[((h % 24) + 24) % 24]);
  return max;
}

/**
 * A namespace name: `<prefix>-<salt><seconds since epoch, base 36><index, base 36, 3 digits>`.
 * 6–50 chars, a letter first, lowercase letters, digits and hyphens, so it is a DNS label and a
 * valid Relay namespace name. Unique per (stamp second, index); the salt separates deployments.
 */
export function namespaceName(prefix: string, stamp: Date, index: number, salt = ''): string {
  const cleanPrefix = prefix
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '')
    .replace(/-+$/, '');
  const cleanSalt = salt
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '')
    .slice(0, 8);
  const seconds = Math.max(0, Math.floor(stamp.getTime() / 1000)).toString(36);
  const idx = Math.max(0, Math.floor(index)).toString(36).padStart(3, '0');
  const name = `${cleanPrefix}-${cleanSalt}${seconds}${idx}`;
  if (!NAMESPACE_NAME_PATTERN.test(name)) {
    throw new RangeError(`cannot build a valid namespace name from prefix "${prefix}" (got "${name}")`);
  }
  return name;
}

/** True when `name` is not a row of the pool and was not deleted within `nameReuseHours` of `now`. */
export function isNameFree(
  name: string,
  taken: ReadonlySet<string>,
  recentlyDeleted: readonly DeletedName[],
  nameReuseHours: number,
  now: Date,
): boolean {
  if (taken.has(name)) return false;
  const reuseAfterMs = nameReuseHours * 3_600_000;
  return !recentlyDeleted.some((d) => d.name === name && now.getTime() - d.deletedAt.getTime() < reuseAfterMs);
}

const USABLE: ReadonlySet<NamespaceState> = new Set(['creating', 'available', 'leased', 'recycling']);

/**
 * Plans one maintenance run.
 *
 * horizon  H = createSeconds + maintenanceSeconds (an order placed now or at the next run is ready by then)
 * arrivals a = recentLeases.count / windowMinutes × H / 60
 * profile  P = max hourProfile over [now, now + H]
 * expected E = max(leased + a, P)
 * target   T = min(capacity, max(leased + floor, ceil(headroom × E)))
 *          capacity = min(cap, Σ quota) − quarantined − deleting (those rows hold quota but serve nobody)
 * create   T − usable, one at a time into the subscription with the most free quota (even fill), never past a quota or the cap
 * delete   when usable > T for shrinkIdleMinutes: up to max(1, ceil(shrinkFractionPerRun × excess)) available
 *          namespaces idle ≥ shrinkIdleMinutes, oldest (createdAt) first
 */
export function planPool(snapshot: PoolSnapshot, policy: PoolPolicy, now: Date): PoolPlan {
  const reasons: string[] = [];
  const byState = zeroByState();
  const bySubscription: Record<string, number> = {};
  for (const sub of policy.subscriptions) bySubscription[sub.subscriptionId] = 0;
  for (const ns of snapshot.namespaces) {
    byState[ns.state]++;
    bySubscription[ns.subscriptionId] = (bySubscription[ns.subscriptionId] ?? 0) + 1;
  }
  const rows = snapshot.namespaces.length;
  const usable = snapshot.namespaces.filter((n) => USABLE.has(n.state)).length;
  const leased = byState.leased;

  const horizonSeconds = policy.createSeconds + policy.maintenanceSeconds;
  const windowMinutes = Math.max(1e-9, snapshot.recentLeases.windowMinutes);
  const arrivals = (snapshot.recentLeases.count / windowMinutes) * (horizonSeconds / 60);
  const profile = profileLookAhead(policy.hourProfile, now, horizonSeconds);
  const expected = Math.max(leased + arrivals, profile);
  const quotaTotal = policy.subscriptions.reduce((s, sub) => s + sub.quota, 0);
  const capacity = Math.max(0, Math.min(policy.cap, quotaTotal) - byState.quarantined - byState.deleting);
  const wanted = Math.max(leased + policy.floor, Math.ceil(policy.headroom * expected - 1e-9));
  const target = Math.min(capacity, wanted);
  reasons.push(
    `expected ${round(expected)} concurrent = max(leased ${leased} + arrivals ${round(arrivals)} over ${horizonSeconds}s, ` +
      `profile ${profile}); wanted ${wanted} = max(leased + floor ${policy.floor}, ceil(headroom ${policy.headroom} × expected))`,
  );
  if (target < wanted)
    reasons.push(
      `target limited to ${target} by capacity (cap ${policy.cap}, quotas ${quotaTotal}, unusable ${byState.quarantined + byState.deleting})`,
    );

  const plan: PoolPlan = {
    target,
    usable,
    create: [],
    delete: [],
    reasons,
    demand: { leased, arrivals, profile, expected, horizonSeconds },
    counts: { byState, bySubscription },
  };

  if (usable < target) {
    plan.create = allocateCreations(target - usable, rows, bySubscription, snapshot, policy, now, reasons);
    const ordered = plan.create.reduce((s, c) => s + c.count, 0);
    reasons.push(
      `usable ${usable} < target ${target}: create ${ordered}` +
        (ordered < target - usable ? ` (${target - usable - ordered} refused by quota or cap)` : ''),
    );
    return plan;
  }
  if (usable === target) {
    reasons.push(`usable ${usable} = target`);
    return plan;
  }

  const excess = usable - target;
  const since = snapshot.aboveTargetSince ?? now;
  plan.aboveTargetSince = since;
  const aboveMinutes = (now.getTime() - since.getTime()) / 60_000;
  if (aboveMinutes < policy.shrinkIdleMinutes) {
    reasons.push(
      `usable ${usable} > target ${target} for ${round(aboveMinutes)} of ${policy.shrinkIdleMinutes} min: keep (hysteresis)`,
    );
    return plan;
  }
  const idleBefore = now.getTime() - policy.shrinkIdleMinutes * 60_000;
  const candidates = snapshot.namespaces
    .filter((n) => n.state === 'available' && n.stateChangedAt.getTime() <= idleBefore)
    .sort(
      (a, b) =>
        a.createdAt.getTime() - b.createdAt.getTime() ||
        a.stateChangedAt.getTime() - b.stateChangedAt.getTime() ||
        cmp(a.name, b.name),
    );
  const step = Math.max(1, Math.ceil(policy.shrinkFractionPerRun * excess));
  plan.delete = candidates.slice(0, Math.min(excess, step)).map((n) => n.name);
  reasons.push(
    `usable ${usable} > target ${target} for ${round(aboveMinutes)} min: delete ${plan.delete.length} of excess ${excess}` +
      ` (at most ${step} per run, ${candidates.length} idle ≥ ${policy.shrinkIdleMinutes} min, oldest first)`,
  );
  return plan;
}

function allocateCreations(
  needed: number,
  rows: number,
  bySubscription: Record<string, number>,
  snapshot: PoolSnapshot,
  policy: PoolPolicy,
  now: Date,
  reasons: string[],
): PlannedCreation[] {
  const free = policy.subscriptions.map((sub) => Math.max(0, sub.quota - (bySubscription[sub.subscriptionId] ?? 0)));
  const counts = policy.subscriptions.map(() => 0);
  let budget = Math.min(needed, Math.max(0, policy.cap - rows));
  if (budget < needed) reasons.push(`global cap ${policy.cap} leaves room for ${budget} of ${needed}`);
  while (budget > 0) {
    // Most free quota first; ties go to the subscription listed first, so the fill is even and stable.
    let best = -1;
    for (let i = 0; i < free.length; i++) if (free[i] > 0 && (best < 0 || free[i] > free[best])) best = i;
    if (best < 0) {
      reasons.push(`every subscription is at its quota; ${budget} not created`);
      break;
    }
    free[best]--;
    counts[best]++;
    budget--;
  }
  const taken = new Set(snapshot.namespaces.map((n) => n.name));
  let index = 0;
  const nextName = () => {
    for (;;) {
      const name = namespaceName(policy.namespacePrefix, now, index++, policy.nameSalt);
      if (isNameFree(name, taken, snapshot.recentlyDeleted, policy.nameReuseHours, now)) {
        taken.add(name);
        return name;
      }
    }
  };
  const out: PlannedCreation[] = [];
  policy.subscriptions.forEach((sub, i) => {
    if (counts[i] === 0) return;
    out.push({
      subscriptionId: sub.subscriptionId,
      resourceGroup: sub.resourceGroup,
      location: sub.location,
      count: counts[i],
      names: Array.from({ length: counts[i] }, nextName),
    });
  });
  return out;
}

const round = (v: number) => Math.round(v * 10) / 10;
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
