// Activities of the pool maintenance orchestration: thin adapters over lib/pool/poolMaintenance.ts.
// Each handle is registered once here and yielded by value from the orchestrator; inputs are
// parsed with zod, outputs are small (they go into the orchestration's history).
import * as df from 'durable-functions';
import { z } from 'zod';
import { getServices } from './shared/services';
import { armBudgetSchema } from '../lib/pool/poolRunStore';

const isoTime = z.iso.datetime({ offset: false });
const provisionItemSchema = z.object({
  name: z.string().min(1),
  subscriptionId: z.string().min(1),
  resourceGroup: z.string().min(1),
  location: z.string().min(1),
  retry: z.boolean().optional(),
});
const countsSchema = z.record(z.string(), z.record(z.string(), z.number().int().min(0)));

/** Reads the pool and plans the run. Second run: plans again from what it reads. */
export const planPoolActivity = df.app.activity('poolPlan', {
  handler: async (input: unknown) => {
    const { runId, now } = z.object({ runId: z.string().min(1), now: isoTime }).parse(input);
    const s = getServices();
    await s.ready();
    return s.poolMaintenance.plan(new Date(now), runId);
  },
});

/** Creates (or finishes) one namespace. Second run: see PoolMaintenance.provision. */
export const provisionNamespaceActivity = df.app.activity('poolProvisionNamespace', {
  handler: async (input: unknown) => {
    const { runId, item } = z.object({ runId: z.string().min(1), item: provisionItemSchema }).parse(input);
    return getServices().poolMaintenance.provision(item, runId);
  },
});

/** Recycles one waiting namespace. Second run: see PoolMaintenance.recycle. */
export const recyclePoolNamespaceActivity = df.app.activity('poolRecycleNamespace', {
  handler: async (input: unknown) => {
    const { name } = z.object({ name: z.string().min(1) }).parse(input);
    return getServices().poolMaintenance.recycle(name);
  },
});

/** Deletes one namespace the plan shrinks. Second run: see PoolMaintenance.delete. */
export const deletePoolNamespaceActivity = df.app.activity('poolDeleteNamespace', {
  handler: async (input: unknown) => {
    const { name } = z.object({ name: z.string().min(1) }).parse(input);
    return getServices().poolMaintenance.delete(name);
  },
});

/** Compares ARM with the table and repairs. Second run: lists again, repairs what is still off. */
export const reconcilePoolActivity = df.app.activity('poolReconcile', {
  handler: async (input: unknown, ctx) => {
    const { now } = z.object({ now: isoTime }).parse(input);
    const s = getServices();
    await s.ready(); // the plan may have failed before it created the tables
    const outcome = await s.poolMaintenance.reconcile(new Date(now));
    // Never silent: a 403 on a list or a failed repair is a warning here, besides the run record.
    for (const e of outcome.errors) ctx.warn(`pool reconcile: ${e}`);
    return outcome;
  },
});

/** Stores the run record. Second run: the same record again (a later run's is kept). */
export const recordPoolRunActivity = df.app.activity('poolRecordRun', {
  handler: async (input: unknown, ctx) => {
    const summary = z
      .object({
        runId: z.string().min(1),
        startedAt: isoTime,
        finishedAt: isoTime,
        plan: z
          .object({
            target: z.number().int().min(0),
            usable: z.number().int().min(0),
            reasons: z.array(z.string()),
            aboveTargetSince: isoTime.optional(),
            fullSubscriptions: z.record(z.string(), isoTime),
          })
          .optional(),
        steps: countsSchema,
        errors: z.array(z.string()),
        quotaExceeded: z.array(z.string()),
        armBudget: armBudgetSchema.optional(),
      })
      .parse(input);
    const s = getServices();
    await s.ready();
    const record = await s.poolMaintenance.recordRun(summary);
    if (record.errors.length > 0)
      ctx.warn(
        `pool maintenance run ${record.runId} ${record.outcome}: ${record.errors.length} error(s), first: ${record.errors[0]}`,
      );
    return { outcome: record.outcome, durationMs: record.durationMs };
  },
});
