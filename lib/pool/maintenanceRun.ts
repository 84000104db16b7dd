// What one maintenance run carries between the orchestration and its activities (the plan, each
// step's outcomes, the summary handed to `recordRun`), how the run record is built from it, and the
// orchestration's name and instance id. Data and pure functions only: functions/poolMaintenance.ts,
// the orchestrator, needs nothing else.
import type { Namespace, NamespaceState } from './namespace';
import type { PoolRunRecord } from './poolRunStore';
import {
  carryArmBudget,
  type ProvisionArmReport,
  type ProvisionPacing,
  type SubscriptionArmBudget,
} from './provisionPacing';

/** Name of the maintenance orchestration (registered in functions/poolMaintenance.ts). */
export const POOL_MAINTENANCE_ORCHESTRATION = 'poolMaintenance';

/** The fixed instance id of a pool's maintenance orchestration: one run at a time per pool. */
export function poolMaintenanceInstanceId(pool: string): string {
  return `pool-maintenance-${pool}`;
}

/** Errors one run record keeps at most. */
export const MAX_RUN_ERRORS = 20;

/** One namespace to create (a name of the plan) or to finish creating (a failed `creating` row). */
export interface ProvisionItem {
  name: string;
  subscriptionId: string;
  resourceGroup: string;
  location: string;
  /** The row exists already (`creating` after a failure): finish it. */
  retry?: boolean;
}

/** The item that finishes creating a `creating` row whose preparation failed or got stuck. */
export function retryItemOf(
  row: Pick<Namespace, 'name' | 'subscriptionId' | 'resourceGroup' | 'location'>,
): ProvisionItem {
  return {
    name: row.name,
    subscriptionId: row.subscriptionId,
    resourceGroup: row.resourceGroup,
    location: row.location,
    retry: true,
  };
}

/** The plan handed to the orchestration (small: it goes into its history). */
export interface MaintenancePlan {
  runId: string;
  plannedAt: string;
  target: number;
  usable: number;
  reasons: string[];
  aboveTargetSince?: string;
  provision: ProvisionItem[];
  /** How the provisioning is paced (provisionPacing.ts): the orchestration runs it in waves. */
  pacing: ProvisionPacing;
  /** Names waiting for a recycle: failed session recycles, and expired leases. */
  recycle: string[];
  /** Available namespaces the policy shrinks, oldest first. */
  delete: string[];
  byState: Record<NamespaceState, number>;
  /** Subscriptions still skipped after a quota error, with until when. */
  fullSubscriptions: Record<string, string>;
}

/**
 * `throttled`: ARM refused a write with a Retry-After longer than a call waits (the row is gone if
 * nothing was created, else left `creating` for a later run); `deferred`: never started, the
 * subscription's ARM budget was spent (provisionPacing.ts). Neither is a failure of the run.
 */
export type ProvisionResult =
  'available' | 'failed' | 'quarantined' | 'abandoned' | 'quota' | 'skipped' | 'throttled' | 'deferred';
export interface ProvisionOutcome {
  name: string;
  subscriptionId: string;
  result: ProvisionResult;
  error?: string;
  /** What ARM said of the subscription's limits during this creation. */
  arm?: ProvisionArmReport;
}

export type RecycleResult = 'recycled' | 'failed' | 'quarantined' | 'skipped';
export interface RecycleOutcome {
  name: string;
  result: RecycleResult;
  error?: string;
}

export type DeleteResult = 'deleted' | 'failed' | 'skipped';
export interface DeleteOutcome {
  name: string;
  result: DeleteResult;
  error?: string;
}

/** Counts outcomes by result, e.g. `{available: 3, failed: 1}`. Pure (the orchestration uses it). */
export function countResults(outcomes: readonly { result: string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of outcomes) out[o.result] = (out[o.result] ?? 0) + 1;
  return out;
}

/** What the orchestration hands to `recordRun`. */
export interface RunSummary {
  runId: string;
  startedAt: string;
  finishedAt: string;
  plan?: Pick<MaintenancePlan, 'target' | 'usable' | 'reasons' | 'aboveTargetSince' | 'fullSubscriptions'>;
  steps: Record<string, Record<string, number>>;
  errors: string[];
  /** Subscriptions whose provisioning answered "quota exceeded" in this run. */
  quotaExceeded: string[];
  /** What the run's provisioning learnt of ARM's limits per subscription (ProvisionPacer.budget). */
  armBudget?: Record<string, SubscriptionArmBudget>;
}

/**
 * The record of a run from its summary: duration, outcome (`failed` without a plan, `partial` when
 * an error or a failed/quarantined item was counted, else `succeeded`), the plan's target and
 * reasons, `aboveTargetSince`, and the subscriptions found full (the plan's, plus those that
 * answered "quota exceeded" in this run, until `quotaBackoffMinutes` after it finished). Pure.
 */
export function runRecordOf(
  summary: RunSummary,
  quotaBackoffMinutes: number,
  lastArmBudget?: Record<string, SubscriptionArmBudget>,
): PoolRunRecord {
  const fullSubscriptions: Record<string, string> = { ...(summary.plan?.fullSubscriptions ?? {}) };
  const until = new Date(new Date(summary.finishedAt).getTime() + quotaBackoffMinutes * 60_000).toISOString();
  for (const sub of summary.quotaExceeded) fullSubscriptions[sub] = until;
  const stepFailures = Object.values(summary.steps).reduce((n, s) => n + (s.failed ?? 0) + (s.quarantined ?? 0), 0);
  const record: PoolRunRecord = {
    runId: summary.runId,
    startedAt: summary.startedAt,
    finishedAt: summary.finishedAt,
    durationMs: Math.max(0, new Date(summary.finishedAt).getTime() - new Date(summary.startedAt).getTime()),
    outcome: !summary.plan ? 'failed' : summary.errors.length > 0 || stepFailures > 0 ? 'partial' : 'succeeded',
    ...(summary.plan
      ? {
          target: summary.plan.target,
          usable: summary.plan.usable,
          ...(summary.plan.aboveTargetSince ? { aboveTargetSince: summary.plan.aboveTargetSince } : {}),
        }
      : {}),
    reasons: (summary.plan?.reasons ?? []).slice(0, 20).map((r) => r.slice(0, 1000)),
    steps: summary.steps,
    errors: summary.errors.slice(0, MAX_RUN_ERRORS).map((e) => e.slice(0, 1000)),
    fullSubscriptions,
  };
  const armBudget = carryArmBudget(lastArmBudget, summary.armBudget ?? {}, summary.finishedAt);
  if (Object.keys(armBudget).length > 0) record.armBudget = armBudget;
  return record;
}
