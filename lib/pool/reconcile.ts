// Reconcile's decisions, pure: which repairs bring the table and ARM back in line (adopt or delete
// orphans, remove rows whose namespace is gone, retry what is stuck, recycle expired leases,
// delete old quarantined namespaces). PoolMaintenance.reconcile lists ARM and the rows, then
// carries the actions out; this file decides them, beside poolPolicy.ts, the other planner.
import type { PoolSubscription } from '../config';
import type { ManagedNamespace } from '../relay/relayManager';
import type { Namespace } from './namespace';
import { retryItemOf, type ProvisionItem } from './maintenanceRun';
import type { DeletedName } from './poolPolicy';

export type ReconcileCounts = {
  /** Namespaces tagged as this pool's, across the resource groups listed. */
  armNamespaces: number;
  adopted: number;
  orphansDeleted: number;
  /** Rows whose namespace is gone from ARM, removed. */
  goneRemoved: number;
  creatingRetried: number;
  recyclingRetried: number;
  expiredLeasesRecycled: number;
  deletesRetried: number;
  quarantinedDeleted: number;
  /** Repairs that failed (the next run tries again). */
  failed: number;
  /** ARM lists (one per resource group) that failed, e.g. 403 AuthorizationFailed: also in `failed`. */
  listsFailed: number;
  /** Repairs left for the next run (maxReconcileActions). */
  deferred: number;
  /** Tombstones older than POOL_NAME_REUSE_HOURS forgotten (nothing reads them any more). */
  tombstonesPurged: number;
  /** Namespaces whose hybrid connection, rules and keys were compared with their row. */
  driftChecked: number;
  /** … of which differed (foreign rule or hybrid connection, a key rotated out of band, …). */
  driftFound: number;
  /** … and were repaired (recycled, or their foreign rules deleted). */
  driftRepaired: number;
};

export interface ReconcileOutcome {
  counts: ReconcileCounts;
  errors: string[];
}

/** Every counter at zero: where a reconcile starts. */
export function zeroReconcileCounts(): ReconcileCounts {
  return {
    armNamespaces: 0,
    adopted: 0,
    orphansDeleted: 0,
    goneRemoved: 0,
    creatingRetried: 0,
    recyclingRetried: 0,
    expiredLeasesRecycled: 0,
    deletesRetried: 0,
    quarantinedDeleted: 0,
    failed: 0,
    listsFailed: 0,
    deferred: 0,
    tombstonesPurged: 0,
    driftChecked: 0,
    driftFound: 0,
    driftRepaired: 0,
  };
}

/** A repair reconcile decided on (see `planReconcile`). */
export type ReconcileAction =
  | { kind: 'adopt'; namespace: ManagedNamespace }
  | { kind: 'deleteOrphan'; namespace: ManagedNamespace; reason: string }
  | { kind: 'confirmGone'; name: string }
  | { kind: 'removeDeleted'; name: string }
  | { kind: 'retryDelete'; name: string }
  | { kind: 'retryCreate'; item: ProvisionItem }
  | { kind: 'retryRecycle'; name: string }
  | { kind: 'recycleExpired'; name: string }
  | { kind: 'deleteQuarantined'; name: string };

export interface ReconcileInput {
  /** ARM namespaces tagged as ours, per resource group that could be listed. */
  arm: ManagedNamespace[];
  /**
   * Resource groups whose ARM list succeeded, as `scopeKey(subscriptionId, resourceGroup)`: rows
   * elsewhere are never judged "gone".
   */
  listedResourceGroups: ReadonlySet<string>;
  /** Every row, read AFTER the ARM lists (so a namespace created meanwhile has its row). */
  rows: Namespace[];
  recentlyDeleted: DeletedName[];
  subscriptions: readonly PoolSubscription[];
  cap: number;
  now: Date;
  stuckMinutes: number;
  quarantineRetentionMinutes: number;
}

/**
 * Decides reconcile's repairs, pure:
 * - an ARM namespace tagged as ours with no row: adopted when it is `Succeeded`, in a configured
 *   subscription with quota and cap left, and its name was not deleted by us; deleted otherwise
 *   (one in `Deleting` is left alone);
 * - a row whose namespace ARM does not list: `deleting` rows are removed; `creating` rows are not
 *   judged (their namespace may not exist yet); other rows are confirmed gone (one more ARM call)
 *   before they are removed;
 * - rows in `creating` or `recycling` unchanged for `stuckMinutes`: retried; `deleting` rows: the
 *   delete is retried; leases past `leaseExpiresAt`: recycled; `quarantined` rows older than
 *   `quarantineRetentionMinutes`, or still naming the session whose recycle failed: deleted.
 */
export function planReconcile(input: ReconcileInput): ReconcileAction[] {
  const actions: ReconcileAction[] = [];
  const rowsByName = new Map(input.rows.map((r) => [r.name, r]));
  const armByName = new Map(input.arm.map((a) => [a.name, a]));
  const perSubscription = new Map<string, number>();
  for (const r of input.rows) perSubscription.set(r.subscriptionId, (perSubscription.get(r.subscriptionId) ?? 0) + 1);
  let total = input.rows.length;
  const deleted = new Set(input.recentlyDeleted.map((d) => d.name));
  const stuckBefore = input.now.getTime() - input.stuckMinutes * 60_000;
  const quarantineBefore = input.now.getTime() - input.quarantineRetentionMinutes * 60_000;

  for (const ns of [...input.arm].sort((a, b) => cmp(a.name, b.name))) {
    if (rowsByName.has(ns.name)) continue;
    if (ns.provisioningState === 'Deleting') continue;
    const sub = input.subscriptions.find((s) => s.subscriptionId === ns.subscriptionId);
    const used = perSubscription.get(ns.subscriptionId) ?? 0;
    let refusal: string | undefined;
    if (ns.provisioningState !== 'Succeeded') refusal = `provisioning state ${ns.provisioningState ?? 'unknown'}`;
    else if (!sub) refusal = 'subscription not configured';
    else if (deleted.has(ns.name)) refusal = 'name deleted by this pool';
    else if (used >= sub.quota) refusal = `subscription quota ${sub.quota} reached`;
    else if (total >= input.cap) refusal = `pool cap ${input.cap} reached`;
    if (refusal) {
      actions.push({ kind: 'deleteOrphan', namespace: ns, reason: refusal });
    } else {
      actions.push({ kind: 'adopt', namespace: ns });
      perSubscription.set(ns.subscriptionId, used + 1);
      total++;
    }
  }

  for (const row of [...input.rows].sort((a, b) => cmp(a.name, b.name))) {
    const listed = input.listedResourceGroups.has(scopeKey(row.subscriptionId, row.resourceGroup));
    const inArm = armByName.has(row.name);
    if (row.state === 'deleting') {
      actions.push(
        listed && !inArm ? { kind: 'removeDeleted', name: row.name } : { kind: 'retryDelete', name: row.name },
      );
      continue;
    }
    if (row.state === 'creating') {
      if (row.stateChangedAt.getTime() < stuckBefore) {
        actions.push({ kind: 'retryCreate', item: retryItemOf(row) });
      }
      continue;
    }
    if (listed && !inArm) {
      actions.push({ kind: 'confirmGone', name: row.name });
      continue;
    }
    if (row.state === 'recycling' && row.stateChangedAt.getTime() < stuckBefore)
      actions.push({ kind: 'retryRecycle', name: row.name });
    else if (row.state === 'leased' && row.leaseExpiresAt && row.leaseExpiresAt.getTime() < input.now.getTime())
      actions.push({ kind: 'recycleExpired', name: row.name });
    // A quarantined namespace that still names a session failed to recycle after that session: its
    // hybrid connection (and any live tunnel on it) may still exist, so it is deleted at once.
    else if (
      row.state === 'quarantined' &&
      (row.sessionId !== undefined || row.stateChangedAt.getTime() < quarantineBefore)
    ) {
      actions.push({ kind: 'deleteQuarantined', name: row.name });
    }
  }
  return actions;
}

/** How a listed resource group is named in `listedResourceGroups` (ARM names are case-insensitive). */
export function scopeKey(subscriptionId: string, resourceGroup: string): string {
  return `${subscriptionId}/${resourceGroup}`.toLowerCase();
}

/** The namespace a repair is about, for its error line. */
export function actionSubject(action: ReconcileAction): string {
  if ('name' in action) return action.name;
  return 'item' in action ? action.item.name : action.namespace.name;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
