// One pool maintenance run the way functions/poolMaintenance.ts's orchestration runs it — plan →
// provision in the pacer's waves → recycle → delete → reconcile → record — calling the same
// PoolMaintenance methods its activities call, without the durable engine (tests and benchmarks
// that need hundreds of namespaces).
import { countResults, type MaintenancePlan, type ProvisionOutcome } from '../../lib/pool/maintenanceRun';
import type { PoolMaintenance } from '../../lib/pool/poolMaintenance';
import type { PoolRunRecord } from '../../lib/pool/poolRunStore';
import { ProvisionPacer } from '../../lib/pool/provisionPacing';
import type { ReconcileOutcome } from '../../lib/pool/reconcile';

export interface DrivenRun {
  plan: MaintenancePlan;
  provision: ProvisionOutcome[];
  waves: number;
  reconcile?: ReconcileOutcome;
  record: PoolRunRecord;
}

const NOT_ERRORS = new Set(['skipped', 'throttled', 'deferred']);

export async function runMaintenance(
  m: PoolMaintenance,
  now: () => Date,
  options: { reconcile?: boolean } = {},
): Promise<DrivenRun> {
  const startedAt = now();
  const runId = `driver@${startedAt.toISOString()}`;
  const plan = await m.plan(startedAt, runId);
  const pacer = new ProvisionPacer(plan.provision, plan.pacing);
  const provision: ProvisionOutcome[] = [];
  for (let wave = pacer.nextWave(); wave.length > 0; wave = pacer.nextWave()) {
    const done = await Promise.all(wave.map((item) => m.provision(item, runId)));
    pacer.record(done);
    provision.push(...done);
  }
  provision.push(...pacer.deferred());
  const recycle = await Promise.all(plan.recycle.map((name) => m.recycle(name)));
  const del = await Promise.all(plan.delete.map((name) => m.delete(name)));
  const reconcile = options.reconcile === false ? undefined : await m.reconcile(now());
  const errors = [...provision, ...recycle, ...del]
    .filter((o) => o.error && !NOT_ERRORS.has(o.result))
    .map((o) => `${o.name}: ${o.error}`);
  const record = await m.recordRun({
    runId,
    startedAt: startedAt.toISOString(),
    finishedAt: now().toISOString(),
    plan: { ...plan, reasons: [...plan.reasons, ...pacer.deferredReasons()] },
    steps: {
      provision: countResults(provision),
      recycle: countResults(recycle),
      delete: countResults(del),
      ...(reconcile ? { reconcile: { ...reconcile.counts } } : {}),
    },
    errors: [...errors, ...(reconcile?.errors ?? [])],
    quotaExceeded: [...new Set(provision.filter((o) => o.result === 'quota').map((o) => o.subscriptionId))],
    armBudget: pacer.budget(),
  });
  return { plan, provision, waves: pacer.waveCount, ...(reconcile ? { reconcile } : {}), record };
}
