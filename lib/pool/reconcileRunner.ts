// Reconcile's runner: lists what ARM holds for the pool and what the table holds, asks
// `planReconcile` (reconcile.ts, pure) what to repair, and carries the repairs out, a bounded
// number per run and a few at a time. Where ARM is listed (per subscription, by the pool tag) is
// decided here alone: per resource group, the scope the app's role is granted at.
import type { Config } from '../config';
import {
  DEFAULT_HYBRID_CONNECTION,
  RelayArmError,
  RelayResourceNotFoundError,
  type ManagedNamespace,
} from '../relay/relayManager';
import { refOf } from './namespace';
import { describeError } from '../errors';
import { MAX_RUN_ERRORS } from './maintenanceRun';
import type { NamespaceStore } from './namespaceStore';
import type { PoolMaintenance } from './poolMaintenance';
import { POOL_TAG, type NamespaceProvisioner, type PoolRelayOps } from './provisioner';
import {
  actionSubject,
  planReconcile,
  scopeKey,
  zeroReconcileCounts,
  type ReconcileAction,
  type ReconcileCounts,
  type ReconcileOutcome,
} from './reconcile';

/** Tombstones one reconcile forgets at most (a few are written per run; a backlog drains over runs). */
const MAX_TOMBSTONE_PURGE = 100;

export interface ReconcileRunnerOptions {
  store: NamespaceStore;
  relay: Pick<PoolRelayOps, 'listNamespaces' | 'getSessionKeys'>;
  provisioner: NamespaceProvisioner;
  /** The maintenance steps a repair reuses (a stuck creation is provisioned again, and so on). */
  steps: Pick<PoolMaintenance, 'provision' | 'recycle' | 'delete'>;
  pool: Config['pool'];
  quarantineRetentionMinutes: number;
  /** Repairs one run makes at most; the rest wait for the next run. */
  maxReconcileActions: number;
  /** Repairs run at once. */
  reconcileConcurrency: number;
  clock: () => Date;
}

export class ReconcileRunner {
  constructor(private readonly o: ReconcileRunnerOptions) {}

  /**
   * Compares ARM with the table, per subscription (configured ones and any a row names), and
   * repairs what differs (see `planReconcile` for the rules): adopts or deletes orphans, removes
   * rows whose namespace is gone, retries stuck creations, recycles and deletes, recycles expired
   * leases, deletes old quarantined namespaces. An adopted namespace is recycled before it is made
   * available: its keys may have been handed out. At most `maxReconcileActions` repairs per run.
   * ARM is listed per resource group (configured ones and any a row names). A resource group whose
   * list fails is counted (`failed`, `listsFailed`) and named in the errors (so the run record and
   * GET /pool show it); its rows are never judged gone on no evidence.
   * Second run: lists again and repairs what is still off; each repair is itself idempotent.
   */
  async run(now: Date): Promise<ReconcileOutcome> {
    const counts = zeroReconcileCounts();
    const errors: string[] = [];
    const note = (e: string) => {
      if (errors.length < MAX_RUN_ERRORS) errors.push(e.slice(0, 500));
    };
    // ARM first, rows second: a namespace created in between already has its row (rows come first in provision).
    // Listed per resource group, never per subscription: the app's identity holds its role on the
    // pool's resource groups only, and ARM authorises a list at the scope it is asked for.
    const scopes = new Map<string, { subscriptionId: string; resourceGroup: string }>();
    const addScope = (subscriptionId: string, resourceGroup: string) =>
      scopes.set(scopeKey(subscriptionId, resourceGroup), { subscriptionId, resourceGroup });
    for (const s of this.o.pool.subscriptions) addScope(s.subscriptionId, s.resourceGroup);
    for (const r of await this.o.store.list()) addScope(r.subscriptionId, r.resourceGroup);
    const arm: ManagedNamespace[] = [];
    const listed = new Set<string>();
    for (const [key, { subscriptionId, resourceGroup }] of scopes) {
      try {
        arm.push(
          ...(await this.o.relay.listNamespaces({
            subscriptionId,
            resourceGroup,
            tag: { name: POOL_TAG, value: this.o.store.poolName },
          })),
        );
        listed.add(key);
      } catch (err) {
        if (!(err instanceof RelayArmError)) throw err;
        // Surfaced (run record, GET /pool's lastRun, the activity's warning): its rows are not judged.
        counts.failed++;
        counts.listsFailed++;
        note(`list of resource group ${resourceGroup} in subscription ${subscriptionId}: ${describeError(err)}`);
      }
    }
    counts.armNamespaces = arm.length;
    const rows = await this.o.store.list();
    const reuseAfter = new Date(now.getTime() - this.o.pool.nameReuseHours * 3_600_000);
    const recentlyDeleted = await this.o.store.tombstones.since(reuseAfter);
    const actions = planReconcile({
      arm,
      listedResourceGroups: listed,
      rows,
      recentlyDeleted,
      subscriptions: this.o.pool.subscriptions,
      cap: this.o.pool.cap,
      now,
      stuckMinutes: this.o.pool.stuckMinutes,
      quarantineRetentionMinutes: this.o.quarantineRetentionMinutes,
    });
    const todo = actions.slice(0, this.o.maxReconcileActions);
    counts.deferred = actions.length - todo.length;
    let next = 0;
    const worker = async () => {
      while (next < todo.length) {
        const action = todo[next++];
        try {
          const done = await this.repair(action, now);
          if (done) counts[done]++;
        } catch (err) {
          counts.failed++;
          note(`${action.kind} ${actionSubject(action)}: ${describeError(err)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.reconcileConcurrency, todo.length) }, worker));
    // Tombstones past the no-reuse window are never read again (neither the plan nor the adoption
    // rule looks further back): forget a bounded number per run.
    try {
      counts.tombstonesPurged = await this.o.store.tombstones.purge(reuseAfter, MAX_TOMBSTONE_PURGE);
    } catch (err) {
      counts.failed++;
      note(`purge of tombstones: ${describeError(err)}`);
    }
    return { counts, errors };
  }

  /** One reconcile repair; returns the counter it adds to (undefined: nothing to do after all). */
  private async repair(action: ReconcileAction, now: Date): Promise<keyof ReconcileCounts | undefined> {
    switch (action.kind) {
      case 'adopt': {
        const ns = action.namespace;
        const row = await this.o.store.insertCreating({
          name: ns.name,
          subscriptionId: ns.subscriptionId,
          resourceGroup: ns.resourceGroup,
          location: ns.location,
          hybridConnection: DEFAULT_HYBRID_CONNECTION,
          now,
        });
        try {
          await this.o.provisioner.prepareAndMarkAvailable(row, { recycleFirst: true });
        } catch (err) {
          if (err instanceof RelayArmError)
            await this.o.store.recordCreateFailure(
              ns.name,
              describeError(err),
              this.o.pool.maxRecycleFailures,
              this.o.clock(),
            );
          throw err;
        }
        return 'adopted';
      }
      case 'deleteOrphan': {
        await this.o.provisioner.deleteInArm({
          subscriptionId: action.namespace.subscriptionId,
          resourceGroup: action.namespace.resourceGroup,
          name: action.namespace.name,
        });
        await this.o.store.tombstones.record(action.namespace.name, this.o.clock());
        return 'orphansDeleted';
      }
      case 'confirmGone': {
        const row = await this.o.store.get(action.name);
        if (!row) return undefined;
        try {
          await this.o.relay.getSessionKeys(refOf(row));
          return undefined; // still there: ARM's list lagged
        } catch (err) {
          if (!(err instanceof RelayResourceNotFoundError)) throw err;
        }
        await this.o.provisioner.retire(action.name, 'namespace gone from ARM', now, { armDelete: false });
        return 'goneRemoved';
      }
      case 'removeDeleted':
        await this.o.store.remove(action.name, this.o.clock());
        return 'goneRemoved';
      case 'retryDelete':
      case 'deleteQuarantined': {
        const outcome = await this.o.steps.delete(action.name);
        if (outcome.result === 'failed') throw new Error(outcome.error ?? 'delete failed');
        return outcome.result === 'deleted'
          ? action.kind === 'retryDelete'
            ? 'deletesRetried'
            : 'quarantinedDeleted'
          : undefined;
      }
      case 'retryCreate': {
        const outcome = await this.o.steps.provision(action.item);
        if (outcome.result === 'failed' || outcome.result === 'quarantined')
          throw new Error(outcome.error ?? outcome.result);
        return outcome.result === 'skipped' ? undefined : 'creatingRetried';
      }
      case 'retryRecycle':
      case 'recycleExpired': {
        const outcome = await this.o.steps.recycle(action.name);
        if (outcome.result === 'failed' || outcome.result === 'quarantined')
          throw new Error(outcome.error ?? outcome.result);
        return outcome.result === 'recycled'
          ? action.kind === 'retryRecycle'
            ? 'recyclingRetried'
            : 'expiredLeasesRecycled'
          : undefined;
      }
    }
  }
}
