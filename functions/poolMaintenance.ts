// Pool maintenance: a timer every minute starts the singleton orchestration of the pool (fixed
// instance id, skipped while one runs) that plans → provisions in waves paced by ARM's limits
// (lib/pool/provisionPacing.ts) → recycles what waits
// → deletes what the plan shrinks → reconciles against ARM → records the run. Deterministic: time
// from the context, no I/O outside activities. Every run is a fresh instance (startNew on the same
// id once the previous one ended), so the history never grows past one run.
import { app, type InvocationContext, type Timer } from '@azure/functions';
import * as df from 'durable-functions';
import type { OrchestrationContext, OrchestrationHandler } from 'durable-functions';
import { z } from 'zod';
import {
  countResults,
  POOL_MAINTENANCE_ORCHESTRATION,
  poolMaintenanceInstanceId,
  type DeleteOutcome,
  type MaintenancePlan,
  type ProvisionOutcome,
  type RecycleOutcome,
} from '../lib/pool/maintenanceRun';
import type { ReconcileOutcome } from '../lib/pool/reconcile';
import { ProvisionPacer, type SubscriptionArmBudget } from '../lib/pool/provisionPacing';
import {
  deletePoolNamespaceActivity,
  planPoolActivity,
  provisionNamespaceActivity,
  reconcilePoolActivity,
  recordPoolRunActivity,
  recyclePoolNamespaceActivity,
} from './poolActivities';
import { describeError } from '../lib/errors';
import { getServices } from './shared/services';
import { durableRetry, statusOrUndefined } from './shared/durable';
import { sessionOrchestrations } from './shared/sessionOrchestrations';
import { SessionSweep } from '../lib/sessions/sessionSweep';

export const POOL_MAINTENANCE_TIMER = 'poolMaintenanceTimer';

/** Transient storage faults are retried by the engine; ARM faults are outcomes, not exceptions. */
const activityRetry = durableRetry({ baseMs: 2000, maxAttempts: 3 });

/** Results that carry a note but are no error of the run: throttling handled, work left for later. */
const NOT_ERRORS: ReadonlySet<string> = new Set(['skipped', 'throttled', 'deferred']);

const firstLine = (err: unknown) => describeError(err, 300);
const describeCounts = (c: Record<string, number>) =>
  Object.entries(c)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || 'nothing';

const poolMaintenanceOrchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
  const { pool } = z.object({ pool: z.string().min(1) }).parse(context.df.getInput());
  const startedAt = context.df.currentUtcDateTime.toISOString();
  const runId = `${context.df.instanceId}@${startedAt}`;
  const log = (message: string) => {
    if (!context.df.isReplaying) context.info(`pool ${pool} maintenance ${startedAt}: ${message}`);
  };
  const steps: Record<string, Record<string, number>> = {};
  const errors: string[] = [];
  const quotaExceeded = new Set<string>();
  let armBudget: Record<string, SubscriptionArmBudget> | undefined;
  const paced: string[] = [];
  const stepFailed = (step: string, err: unknown) => {
    errors.push(`${step}: ${firstLine(err)}`);
    log(`${step} failed: ${firstLine(err)}`);
  };
  const itemErrors = (step: string, outcomes: readonly { name: string; result: string; error?: string }[]) => {
    for (const o of outcomes)
      if (o.error && !NOT_ERRORS.has(o.result)) errors.push(`${step} ${o.name}: ${o.error.slice(0, 300)}`);
  };

  let plan: MaintenancePlan | undefined;
  try {
    plan = (yield planPoolActivity({ runId, now: startedAt }).withRetry(activityRetry)) as MaintenancePlan;
    log(
      `plan: target ${plan.target}, usable ${plan.usable}; provision ${plan.provision.length}, recycle ${plan.recycle.length}, delete ${plan.delete.length}`,
    );
  } catch (err) {
    stepFailed('plan', err);
  }

  if (plan) {
    if (plan.provision.length > 0) {
      try {
        // Waves, each read before the next: deterministic, as the pacer sees only the outcomes.
        const pacer = new ProvisionPacer(plan.provision, plan.pacing);
        const outcomes: ProvisionOutcome[] = [];
        for (let wave = pacer.nextWave(); wave.length > 0; wave = pacer.nextWave()) {
          const done = (yield context.df.Task.all(
            wave.map((item) => provisionNamespaceActivity({ runId, item }).withRetry(activityRetry)),
          )) as ProvisionOutcome[];
          pacer.record(done);
          outcomes.push(...done);
        }
        outcomes.push(...pacer.deferred());
        armBudget = pacer.budget();
        paced.push(...pacer.deferredReasons());
        for (const line of paced) log(`provision paced: ${line}`);
        steps.provision = countResults(outcomes);
        for (const o of outcomes) if (o.result === 'quota') quotaExceeded.add(o.subscriptionId);
        itemErrors('provision', outcomes);
        log(`provision: ${describeCounts(steps.provision)}`);
      } catch (err) {
        stepFailed('provision', err);
      }
    }
    if (plan.recycle.length > 0) {
      try {
        const outcomes = (yield context.df.Task.all(
          plan.recycle.map((name) => recyclePoolNamespaceActivity({ name }).withRetry(activityRetry)),
        )) as RecycleOutcome[];
        steps.recycle = countResults(outcomes);
        itemErrors('recycle', outcomes);
        log(`recycle: ${describeCounts(steps.recycle)}`);
      } catch (err) {
        stepFailed('recycle', err);
      }
    }
    if (plan.delete.length > 0) {
      try {
        const outcomes = (yield context.df.Task.all(
          plan.delete.map((name) => deletePoolNamespaceActivity({ name }).withRetry(activityRetry)),
        )) as DeleteOutcome[];
        steps.delete = countResults(outcomes);
        itemErrors('delete', outcomes);
        log(`delete: ${describeCounts(steps.delete)}`);
      } catch (err) {
        stepFailed('delete', err);
      }
    }
  }

  try {
    const reconciled = (yield reconcilePoolActivity({ now: context.df.currentUtcDateTime.toISOString() }).withRetry(
      activityRetry,
    )) as ReconcileOutcome;
    steps.reconcile = { ...reconciled.counts };
    errors.push(...reconciled.errors.map((e) => `reconcile ${e}`));
    log(`reconcile: ${describeCounts(reconciled.counts)}`);
  } catch (err) {
    stepFailed('reconcile', err);
  }

  const summary = {
    runId,
    startedAt,
    finishedAt: context.df.currentUtcDateTime.toISOString(),
    ...(plan
      ? {
          plan: {
            target: plan.target,
            usable: plan.usable,
            reasons: [...plan.reasons, ...paced],
            ...(plan.aboveTargetSince ? { aboveTargetSince: plan.aboveTargetSince } : {}),
            fullSubscriptions: plan.fullSubscriptions,
          },
        }
      : {}),
    steps,
    errors,
    quotaExceeded: [...quotaExceeded].sort(),
    ...(armBudget ? { armBudget } : {}),
  };
  let outcome = 'unrecorded';
  try {
    const recorded = (yield recordPoolRunActivity(summary).withRetry(activityRetry)) as { outcome: string };
    outcome = recorded.outcome;
  } catch (err) {
    stepFailed('record', err);
  }
  log(`done: ${outcome}, ${errors.length} error(s)`);
  return { runId, outcome, errors: errors.length };
};

df.app.orchestration(POOL_MAINTENANCE_ORCHESTRATION, poolMaintenanceOrchestrator);

/** Statuses in which a run is under way (or parked by an operator): the timer leaves it alone. */
const ACTIVE: ReadonlySet<string> = new Set(['Running', 'Pending', 'ContinuedAsNew', 'Suspended']);

async function runtimeStatusOf(client: df.DurableClient, instanceId: string): Promise<string | undefined> {
  return (await statusOrUndefined(client, instanceId))?.runtimeStatus;
}

async function startMaintenance(_timer: Timer, ctx: InvocationContext): Promise<void> {
  const client = df.getClient(ctx);
  const pool = getServices().config.pool.name;
  await sweepSessions(client, ctx, pool);
  const instanceId = poolMaintenanceInstanceId(pool);
  const status = await runtimeStatusOf(client, instanceId);
  if (status && ACTIVE.has(status)) {
    ctx.info(`pool ${pool} maintenance: ${instanceId} is ${status}; this tick is skipped`);
    return;
  }
  try {
    // Completed, Failed or Terminated instances are replaced: the same id starts a fresh run.
    await client.startNew(POOL_MAINTENANCE_ORCHESTRATION, { instanceId, input: { pool } });
    ctx.info(`pool ${pool} maintenance: started ${instanceId}${status ? ` (previous run ${status})` : ''}`);
  } catch (err) {
    // Another instance of the app won the race for this tick.
    ctx.warn(`pool ${pool} maintenance: could not start ${instanceId}: ${firstLine(err)}`);
  }
}

/**
 * Ends what no orchestration will end any more (lib/sessions/sessionSweep.ts): here, beside the
 * durable client it asks about each session. Its failures are warnings; the next tick tries again.
 */
async function sweepSessions(client: df.DurableClient, ctx: InvocationContext, pool: string): Promise<void> {
  const s = getServices();
  try {
    await s.ready();
    const outcome = await new SessionSweep({
      namespaces: s.namespaces,
      sessions: s.sessionStore,
      service: s.sessionService,
      orchestrations: sessionOrchestrations(() => client),
    }).run();
    if (outcome.leasesEnded + outcome.recordsClosed > 0)
      ctx.warn(
        `pool ${pool} sweep: ${outcome.leasesEnded} lease(s) of sessions no longer running recycled, ${outcome.recordsClosed} abandoned record(s) closed`,
      );
    for (const e of outcome.errors) ctx.warn(`pool ${pool} sweep: ${e}`);
  } catch (err) {
    ctx.warn(`pool ${pool} sweep failed: ${firstLine(err)}`);
  }
}

app.timer(POOL_MAINTENANCE_TIMER, {
  schedule: '0 */1 * * * *',
  extraInputs: [df.input.durableClient()],
  handler: startMaintenance,
});
