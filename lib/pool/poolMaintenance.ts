// Pool maintenance, one method per activity of the maintenance orchestration: plan, provision,
// recycle, delete, reconcile against ARM, and record the run. Each method is safe to run twice
// (its doc comment ends with what the second run does) and reports outcomes, not exceptions, for
// per-namespace ARM failures, so one bad namespace never stops the run.
import type { Config, PoolSubscription } from '../config';
import { ConcurrencyError, ConflictError, describeError, InvalidTransitionError, NotFoundError } from '../errors';
import type { ManagedNamespace, NamespaceRef, RelayManager } from '../relay/relayManager';
import {
  DEFAULT_HYBRID_CONNECTION,
  RelayActivationTimeoutError,
  RelayArmError,
  RelayConflictError,
  RelayQuotaExceededError,
  RelayResourceNotFoundError,
} from '../relay/relayManager';
import type { Sealer } from '../sealing';
import { NAMESPACE_STATES, type Namespace, type NamespaceState } from './namespace';
import { countNamespaces, RECYCLE_CLAIM_STALE_MS, type NamespaceStore, type PoolCounts } from './namespaceStore';
import { planPool, policyFromConfig, type DeletedName, type PoolPlan, type PoolPolicy } from './poolPolicy';
import type { PoolRunRecord, PoolRunStore } from './poolRunStore';
import { sealNamespaceKeys } from './sealedKeys';
import { randomUUID } from 'node:crypto';

/** ARM tag that marks a namespace as a member of a pool (value: the pool name). */
export const POOL_TAG = 'relay-broker-pool';

/** What maintenance needs from RelayManager (tests may pass a fake). */
export type PoolRelayOps = Pick<
  RelayManager,
  'prepareNamespace' | 'getSessionKeys' | 'recycle' | 'deleteNamespace' | 'listNamespaces'
>;

export interface PoolMaintenanceOptions {
  namespaces: NamespaceStore;
  runs: PoolRunStore;
  relay: PoolRelayOps;
  sealer: Sealer;
  pool: Config['pool'];
  /** Mixed into generated names so two deployments never race for one global name (e.g. the storage account). */
  nameSalt?: string;
  /** Period of the timer (default 60 s): how far ahead the policy looks past the creation time. */
  maintenanceSeconds?: number;
  /** Window of the recent lease rate (default 5 min). */
  leaseWindowMinutes?: number;
  /** A failed creation or recycle is retried by the next run once this old (default 60 s). */
  retryBackoffSeconds?: number;
  /** A subscription that answered "quota exceeded" gets no new namespace for this long (default 10 min). */
  quotaBackoffMinutes?: number;
  /** A quarantined namespace is deleted (and replaced) after this long (default 24 h). */
  quarantineRetentionMinutes?: number;
  /** Repairs one reconcile makes at most; the rest wait for the next run (default 50). */
  maxReconcileActions?: number;
  /** Repairs run at once (default 8). */
  reconcileConcurrency?: number;
  now?: () => Date;
}

/** One namespace to create (a name of the plan) or to finish creating (a failed `creating` row). */
export interface ProvisionItem {
  name: string;
  subscriptionId: string;
  resourceGroup: string;
  location: string;
  /** The row exists already (`creating` after a failure): finish it. */
  retry?: boolean;
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
  /** Names waiting for a recycle: failed session recycles, and expired leases. */
  recycle: string[];
  /** Available namespaces the policy shrinks, oldest first. */
  delete: string[];
  byState: Record<NamespaceState, number>;
  /** Subscriptions still skipped after a quota error, with until when. */
  fullSubscriptions: Record<string, string>;
}

export type ProvisionResult = 'available' | 'failed' | 'quarantined' | 'abandoned' | 'quota' | 'skipped';
export interface ProvisionOutcome {
  name: string;
  subscriptionId: string;
  result: ProvisionResult;
  error?: string;
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

export type ReconcileCounts = {
  /** Namespaces tagged as this pool's, across the subscriptions listed. */
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
  /** Repairs left for the next run (maxReconcileActions). */
  deferred: number;
};

export interface ReconcileOutcome {
  counts: ReconcileCounts;
  errors: string[];
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
  /** ARM namespaces tagged as ours, per subscription that could be listed. */
  arm: ManagedNamespace[];
  /** Subscriptions whose ARM list succeeded: rows elsewhere are never judged "gone". */
  listedSubscriptions: ReadonlySet<string>;
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
    const listed = input.listedSubscriptions.has(row.subscriptionId);
    const inArm = armByName.has(row.name);
    if (row.state === 'deleting') {
      actions.push(
        listed && !inArm ? { kind: 'removeDeleted', name: row.name } : { kind: 'retryDelete', name: row.name },
      );
      continue;
    }
    if (row.state === 'creating') {
      if (row.stateChangedAt.getTime() < stuckBefore) {
        actions.push({
          kind: 'retryCreate',
          item: {
            name: row.name,
            subscriptionId: row.subscriptionId,
            resourceGroup: row.resourceGroup,
            location: row.location,
            retry: true,
          },
        });
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
}

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
  lastRun?: PoolRunRecord;
}

const MAX_ERRORS = 20;

export class PoolMaintenance {
  private readonly clock: () => Date;
  private readonly o: Required<Omit<PoolMaintenanceOptions, 'nameSalt' | 'now'>> & { nameSalt?: string };
  /** Subscriptions found full during a run, by run id: later provisions of the run skip them without an ARM call. */
  private readonly fullInRun = new Map<string, Set<string>>();

  constructor(options: PoolMaintenanceOptions) {
    this.clock = options.now ?? (() => new Date());
    this.o = {
      namespaces: options.namespaces,
      runs: options.runs,
      relay: options.relay,
      sealer: options.sealer,
      pool: options.pool,
      nameSalt: options.nameSalt,
      maintenanceSeconds: options.maintenanceSeconds ?? 60,
      leaseWindowMinutes: options.leaseWindowMinutes ?? 5,
      retryBackoffSeconds: options.retryBackoffSeconds ?? 60,
      quotaBackoffMinutes: options.quotaBackoffMinutes ?? 10,
      quarantineRetentionMinutes: options.quarantineRetentionMinutes ?? 24 * 60,
      maxReconcileActions: options.maxReconcileActions ?? 50,
      reconcileConcurrency: Math.max(1, options.reconcileConcurrency ?? 8),
    };
  }

  private get store(): NamespaceStore {
    return this.o.namespaces;
  }

  private get poolName(): string {
    return this.o.namespaces.poolName;
  }

  /** The policy with the subscriptions found full recently capped at what they hold. */
  private policy(fullSubscriptions: Record<string, string>, counts: PoolCounts): PoolPolicy {
    const base = policyFromConfig(this.o.pool, {
      maintenanceSeconds: this.o.maintenanceSeconds,
      nameSalt: this.o.nameSalt,
    });
    return {
      ...base,
      subscriptions: base.subscriptions.map((s) =>
        fullSubscriptions[s.subscriptionId]
          ? { ...s, quota: Math.min(s.quota, counts.bySubscription[s.subscriptionId]?.total ?? 0) }
          : s,
      ),
    };
  }

  /**
   * Reads the pool (rows, tombstones, recent lease rate, and `aboveTargetSince` from the last run
   * record) and plans the run with `planPool`; adds the namespaces waiting for a retry: `creating`
   * rows whose last attempt failed, `recycling` rows whose session recycle failed, leases past
   * `leaseExpiresAt`. A subscription that answered "quota exceeded" within `quotaBackoffMinutes`
   * gets nothing new.
   * Second run: read-only, so it plans again from what it reads (new names if the clock moved).
   */
  async plan(now: Date, runId = now.toISOString()): Promise<MaintenancePlan> {
    const last = await this.o.runs.last();
    const fullSubscriptions: Record<string, string> = {};
    for (const [sub, until] of Object.entries(last?.fullSubscriptions ?? {}))
      if (until > now.toISOString()) fullSubscriptions[sub] = until;
    const aboveTargetSince = last?.aboveTargetSince ? new Date(last.aboveTargetSince) : undefined;
    const snapshot = await this.store.snapshot({
      now,
      leaseWindowMinutes: this.o.leaseWindowMinutes,
      nameReuseHours: this.o.pool.nameReuseHours,
      aboveTargetSince,
    });
    const waiting = await this.store.list({ states: ['creating', 'recycling'] });
    const expired = await this.store.listExpiredLeases(now);
    const plan = planPool(snapshot, this.policy(fullSubscriptions, countSummaries(snapshot.namespaces)), now);
    for (const [sub, until] of Object.entries(fullSubscriptions))
      plan.reasons.push(`subscription ${sub} gets no new namespace until ${until} (quota exceeded)`);

    const retryBefore = now.getTime() - this.o.retryBackoffSeconds * 1000;
    const provision: ProvisionItem[] = plan.create.flatMap((c) =>
      c.names.map((name) => ({
        name,
        subscriptionId: c.subscriptionId,
        resourceGroup: c.resourceGroup,
        location: c.location,
      })),
    );
    const recycle: string[] = [];
    for (const row of waiting) {
      if (row.recycleFailures === 0 || row.stateChangedAt.getTime() > retryBefore) continue;
      if (row.state === 'creating') {
        provision.push({
          name: row.name,
          subscriptionId: row.subscriptionId,
          resourceGroup: row.resourceGroup,
          location: row.location,
          retry: true,
        });
      } else recycle.push(row.name);
    }
    for (const row of expired) recycle.push(row.name);
    return {
      runId,
      plannedAt: now.toISOString(),
      target: plan.target,
      usable: plan.usable,
      reasons: plan.reasons.slice(0, 20),
      ...(plan.aboveTargetSince ? { aboveTargetSince: plan.aboveTargetSince.toISOString() } : {}),
      provision,
      recycle,
      delete: plan.delete,
      byState: plan.counts.byState,
      fullSubscriptions,
    };
  }

  /**
   * Creates one namespace end to end: row `creating` → prepareNamespace (namespace, hybrid
   * connection, Listen and Send rules, tagged `relay-broker-pool: <pool>`) → the two rule keys
   * sealed into the row → `available`. ARM failures are outcomes: "quota exceeded" removes the
   * row and marks the subscription full for the run (`runId`); a namespace that never activates
   * (or whose name is taken elsewhere) is deleted and its name retired; anything else is counted
   * on the row (`creating`, retried by a later run; quarantined after POOL_MAX_RECYCLE_FAILURES).
   * Storage errors are thrown (the activity's retry handles them).
   * Second run: the row exists — still `creating` it is finished (prepareNamespace only writes
   * what is missing); already `available` it is reported as such; in any other state it is skipped.
   */
  async provision(item: ProvisionItem, runId?: string): Promise<ProvisionOutcome> {
    const base = { name: item.name, subscriptionId: item.subscriptionId };
    if (!item.retry && runId && this.fullInRun.get(runId)?.has(item.subscriptionId)) {
      return { ...base, result: 'skipped', error: 'subscription quota exceeded earlier in this run' };
    }
    const now = this.clock();
    let row: Namespace;
    try {
      row = await this.store.insertCreating({ ...item, hybridConnection: DEFAULT_HYBRID_CONNECTION, now });
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      const existing = await this.store.get(item.name);
      if (existing?.state === 'available' && existing.subscriptionId === item.subscriptionId)
        return { ...base, result: 'available' };
      return { ...base, result: 'skipped', error: `row is ${existing?.state ?? 'gone'}` };
    }
    try {
      await this.prepareAndMarkAvailable(row, { recycleFirst: false });
      return { ...base, result: 'available' };
    } catch (err) {
      if (!(err instanceof RelayArmError)) throw err;
      const error = errorSummary(err);
      if (err instanceof RelayQuotaExceededError) {
        if (runId) this.markFull(runId, item.subscriptionId);
        // The PUT was refused: nothing exists in ARM, only the row goes (its name is retired).
        await this.retire(item.name, 'quota exceeded', now, { armDelete: false });
        return { ...base, result: 'quota', error };
      }
      if (err instanceof RelayConflictError && err.operation === 'namespaces.createOrUpdate') {
        // The global name belongs to someone else: never delete it; retire the name.
        await this.retire(item.name, error, now, { armDelete: false });
        return { ...base, result: 'abandoned', error };
      }
      if (err instanceof RelayActivationTimeoutError) {
        // Azure's advice for a namespace stuck activating: delete it and use another name.
        const deleteError = await this.retire(item.name, error, now, { armDelete: true }).then(
          () => undefined,
          (e: unknown) => errorSummary(e),
        );
        // A failed delete leaves the row `deleting`: reconcile retries it.
        return {
          ...base,
          result: deleteError ? 'failed' : 'abandoned',
          error: deleteError ? `${error}; delete failed: ${deleteError}` : error,
        };
      }
      const after = await this.store.recordCreateFailure(
        item.name,
        error,
        this.o.pool.maxRecycleFailures,
        this.clock(),
      );
      return { ...base, result: after.state === 'quarantined' ? 'quarantined' : 'failed', error };
    }
  }

  /**
   * Recycles a namespace that waits for it: a `recycling` row (a session recycle that failed, or
   * one left half-done) or a lease past `leaseExpiresAt` (leased → recycling first). Deletes and
   * recreates the hybrid connection (fresh rules, every issued token dead), seals the new keys for
   * the next generation and makes it `available`. An ARM failure is counted on the row
   * (quarantined after POOL_MAX_RECYCLE_FAILURES).
   * Second run: a namespace no longer waiting (already `available` with a newer generation, leased
   * again, gone) is skipped; one still `recycling` is recycled again, which is harmless.
   */
  async recycle(name: string): Promise<RecycleOutcome> {
    const now = this.clock();
    let ns = await this.store.get(name);
    if (!ns) return { name, result: 'skipped', error: 'no such row' };
    if (ns.state === 'leased') {
      if (!ns.leaseExpiresAt || ns.leaseExpiresAt.getTime() >= now.getTime())
        return { name, result: 'skipped', error: 'lease not expired' };
      try {
        ns = await this.store.beginRecycle(name, { now }, ns.etag);
      } catch (err) {
        if (err instanceof ConcurrencyError) return { name, result: 'skipped', error: 'row changed meanwhile' };
        throw err;
      }
    }
    if (ns.state !== 'recycling') return { name, result: 'skipped', error: `row is ${ns.state}` };
    // A session's recycle (or another maintenance run) may be doing this one's ARM work right now.
    const claimed = await this.store.claimRecycle(name, `maintenance:${randomUUID()}`, {
      now,
      staleAfterMs: RECYCLE_CLAIM_STALE_MS,
    });
    if (!claimed) return { name, result: 'skipped', error: 'another recycle holds it' };
    if (claimed.state !== 'recycling') return { name, result: 'skipped', error: `row is ${claimed.state}` };
    ns = claimed;
    const ref = refOf(ns);
    let sealedKeys: string;
    try {
      await this.o.relay.recycle(ref);
      const keys = await this.o.relay.getSessionKeys(ref);
      sealedKeys = sealNamespaceKeys(this.o.sealer, ns.name, ns.generation + 1, keys);
    } catch (err) {
      if (!(err instanceof RelayArmError)) throw err;
      const after = await this.store.recordRecycleFailure(
        name,
        errorSummary(err),
        this.o.pool.maxRecycleFailures,
        this.clock(),
      );
      return { name, result: after.state === 'quarantined' ? 'quarantined' : 'failed', error: errorSummary(err) };
    }
    await this.store.markRecycled(name, { now: this.clock(), fromGeneration: ns.generation, sealedKeys });
    return { name, result: 'recycled' };
  }

  /**
   * Deletes a namespace the plan shrinks: `deleting` (refused if it was leased since the plan,
   * which skips it) → ARM delete (waits for the operation) → row removed and its name recorded,
   * so it is not generated again within POOL_NAME_REUSE_HOURS. A failed ARM delete leaves the row
   * `deleting`; reconcile retries it.
   * Second run: a row already gone is skipped; one still `deleting` is deleted again (ARM says
   * nothing is left) and removed.
   */
  async delete(name: string): Promise<DeleteOutcome> {
    const now = this.clock();
    const ns = await this.store.get(name);
    if (!ns) return { name, result: 'skipped', error: 'no such row' };
    try {
      await this.store.beginDelete(name, now);
    } catch (err) {
      if (err instanceof InvalidTransitionError)
        return { name, result: 'skipped', error: `row is ${(await this.store.get(name))?.state ?? 'gone'}` };
      if (err instanceof NotFoundError) return { name, result: 'skipped', error: 'no such row' };
      throw err;
    }
    try {
      await this.deleteInArm(refOf(ns));
    } catch (err) {
      if (!(err instanceof RelayArmError)) throw err;
      return { name, result: 'failed', error: errorSummary(err) };
    }
    await this.store.remove(name, this.clock());
    return { name, result: 'deleted' };
  }

  /**
   * Compares ARM with the table, per subscription (configured ones and any a row names), and
   * repairs what differs (see `planReconcile` for the rules): adopts or deletes orphans, removes
   * rows whose namespace is gone, retries stuck creations, recycles and deletes, recycles expired
   * leases, deletes old quarantined namespaces. An adopted namespace is recycled before it is made
   * available: its keys may have been handed out. At most `maxReconcileActions` repairs per run.
   * A subscription whose list fails is skipped (its rows are never judged gone on no evidence).
   * Second run: lists again and repairs what is still off; each repair is itself idempotent.
   */
  async reconcile(now: Date): Promise<ReconcileOutcome> {
    const counts: ReconcileCounts = {
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
      deferred: 0,
    };
    const errors: string[] = [];
    const note = (e: string) => {
      if (errors.length < MAX_ERRORS) errors.push(e.slice(0, 500));
    };
    // ARM first, rows second: a namespace created in between already has its row (rows come first in provision).
    const subscriptionIds = new Set(this.o.pool.subscriptions.map((s) => s.subscriptionId));
    for (const r of await this.store.list()) subscriptionIds.add(r.subscriptionId);
    const arm: ManagedNamespace[] = [];
    const listed = new Set<string>();
    for (const subscriptionId of subscriptionIds) {
      try {
        arm.push(
          ...(await this.o.relay.listNamespaces({ subscriptionId, tag: { name: POOL_TAG, value: this.poolName } })),
        );
        listed.add(subscriptionId);
      } catch (err) {
        if (!(err instanceof RelayArmError)) throw err;
        counts.failed++;
        note(`list of subscription ${subscriptionId}: ${errorSummary(err)}`);
      }
    }
    counts.armNamespaces = arm.length;
    const rows = await this.store.list();
    const recentlyDeleted = await this.store.recentlyDeleted(
      new Date(now.getTime() - this.o.pool.nameReuseHours * 3_600_000),
    );
    const actions = planReconcile({
      arm,
      listedSubscriptions: listed,
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
          note(
            `${action.kind} ${'name' in action ? action.name : 'item' in action ? action.item.name : action.namespace.name}: ${errorSummary(err)}`,
          );
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.reconcileConcurrency, todo.length) }, worker));
    return { counts, errors };
  }

  /**
   * Stores the run's record (duration, outcome, counts per step, errors, the target and its
   * reasons, `aboveTargetSince` for the next plan, subscriptions found full).
   * Second run: stores the same record again; a later run's record is never overwritten.
   */
  async recordRun(summary: RunSummary): Promise<PoolRunRecord> {
    const fullSubscriptions: Record<string, string> = { ...(summary.plan?.fullSubscriptions ?? {}) };
    const until = new Date(new Date(summary.finishedAt).getTime() + this.o.quotaBackoffMinutes * 60_000).toISOString();
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
      errors: summary.errors.slice(0, MAX_ERRORS).map((e) => e.slice(0, 1000)),
      fullSubscriptions,
    };
    await this.o.runs.record(record);
    if (this.fullInRun.size > 16) this.fullInRun.clear();
    this.fullInRun.delete(summary.runId);
    return record;
  }

  /** The last recorded run. Read-only. */
  lastRun(): Promise<PoolRunRecord | undefined> {
    return this.o.runs.last();
  }

  /** What GET /pool shows: counts by state and subscription, the target now and why, the last run. Read-only. */
  async status(now: Date): Promise<PoolStatus> {
    const last = await this.o.runs.last();
    const rows = await this.store.list();
    const counts = countNamespaces(rows);
    const fullSubscriptions: Record<string, string> = {};
    for (const [sub, until] of Object.entries(last?.fullSubscriptions ?? {}))
      if (until > now.toISOString()) fullSubscriptions[sub] = until;
    const snapshot = await this.store.snapshot({
      now,
      leaseWindowMinutes: this.o.leaseWindowMinutes,
      nameReuseHours: this.o.pool.nameReuseHours,
      ...(last?.aboveTargetSince ? { aboveTargetSince: new Date(last.aboveTargetSince) } : {}),
    });
    const plan = planPool(snapshot, this.policy(fullSubscriptions, countSummaries(snapshot.namespaces)), now);
    const configured = new Map(this.o.pool.subscriptions.map((s) => [s.subscriptionId, s]));
    const subIds = [...new Set([...configured.keys(), ...Object.keys(counts.bySubscription)])];
    return {
      pool: this.poolName,
      total: counts.total,
      byState: counts.byState,
      bySubscription: subIds.map((id) => {
        const c = counts.bySubscription[id];
        const sub = configured.get(id);
        const byState = Object.fromEntries(NAMESPACE_STATES.map((s) => [s, c?.[s] ?? 0])) as Record<
          NamespaceState,
          number
        >;
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
      ...(last ? { lastRun: last } : {}),
    };
  }

  // -------------------------------------------------------------------------------------------

  /** One reconcile repair; returns the counter it adds to (undefined: nothing to do after all). */
  private async repair(action: ReconcileAction, now: Date): Promise<keyof ReconcileCounts | undefined> {
    switch (action.kind) {
      case 'adopt': {
        const ns = action.namespace;
        const row = await this.store.insertCreating({
          name: ns.name,
          subscriptionId: ns.subscriptionId,
          resourceGroup: ns.resourceGroup,
          location: ns.location,
          hybridConnection: DEFAULT_HYBRID_CONNECTION,
          now,
        });
        try {
          await this.prepareAndMarkAvailable(row, { recycleFirst: true });
        } catch (err) {
          if (err instanceof RelayArmError)
            await this.store.recordCreateFailure(
              ns.name,
              errorSummary(err),
              this.o.pool.maxRecycleFailures,
              this.clock(),
            );
          throw err;
        }
        return 'adopted';
      }
      case 'deleteOrphan': {
        await this.deleteInArm({
          subscriptionId: action.namespace.subscriptionId,
          resourceGroup: action.namespace.resourceGroup,
          name: action.namespace.name,
        });
        await this.store.recordDeletedName(action.namespace.name, this.clock());
        return 'orphansDeleted';
      }
      case 'confirmGone': {
        const row = await this.store.get(action.name);
        if (!row) return undefined;
        try {
          await this.o.relay.getSessionKeys(refOf(row));
          return undefined; // still there: ARM's list lagged
        } catch (err) {
          if (!(err instanceof RelayResourceNotFoundError)) throw err;
        }
        await this.retire(action.name, 'namespace gone from ARM', now, { armDelete: false });
        return 'goneRemoved';
      }
      case 'removeDeleted':
        await this.store.remove(action.name, this.clock());
        return 'goneRemoved';
      case 'retryDelete':
      case 'deleteQuarantined': {
        const outcome = await this.delete(action.name);
        if (outcome.result === 'failed') throw new Error(outcome.error ?? 'delete failed');
        return outcome.result === 'deleted'
          ? action.kind === 'retryDelete'
            ? 'deletesRetried'
            : 'quarantinedDeleted'
          : undefined;
      }
      case 'retryCreate': {
        const outcome = await this.provision(action.item);
        if (outcome.result === 'failed' || outcome.result === 'quarantined')
          throw new Error(outcome.error ?? outcome.result);
        return outcome.result === 'skipped' ? undefined : 'creatingRetried';
      }
      case 'retryRecycle':
      case 'recycleExpired': {
        const outcome = await this.recycle(action.name);
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

  /**
   * prepareNamespace (+ a recycle when the namespace's history is unknown) → keys → sealed for the
   * row's generation → available.
   */
  private async prepareAndMarkAvailable(row: Namespace, options: { recycleFirst: boolean }): Promise<Namespace> {
    const prepared = await this.o.relay.prepareNamespace({
      subscriptionId: row.subscriptionId,
      resourceGroup: row.resourceGroup,
      location: row.location,
      name: row.name,
      tags: { [POOL_TAG]: this.poolName },
      hybridConnection: row.hybridConnection ?? DEFAULT_HYBRID_CONNECTION,
    });
    const ref: NamespaceRef = {
      subscriptionId: row.subscriptionId,
      resourceGroup: row.resourceGroup,
      name: row.name,
      hybridConnection: prepared.hybridConnection,
      endpoint: prepared.endpoint,
    };
    if (options.recycleFirst) await this.o.relay.recycle(ref);
    const keys = await this.o.relay.getSessionKeys(ref);
    return this.store.markAvailable(row.name, {
      endpoint: prepared.endpoint,
      hybridConnection: prepared.hybridConnection,
      sealedKeys: sealNamespaceKeys(this.o.sealer, row.name, row.generation, keys),
      now: this.clock(),
    });
  }

  /**
   * Takes a row out of the pool for good, along the state machine (leased → recycling →
   * quarantined → deleting, or the shorter path from where it is), deletes the namespace in ARM
   * when asked, and removes the row with a tombstone.
   */
  private async retire(name: string, reason: string, now: Date, options: { armDelete: boolean }): Promise<void> {
    let ns = await this.store.get(name);
    if (!ns) return;
    if (ns.state === 'leased') ns = await this.store.beginRecycle(name, { now });
    if (ns.state === 'recycling') ns = await this.store.quarantine(name, reason, now);
    if (ns.state !== 'deleting') ns = await this.store.beginDelete(name, now);
    if (options.armDelete) await this.deleteInArm(refOf(ns));
    await this.store.remove(name, this.clock());
  }

  private async deleteInArm(ref: NamespaceRef): Promise<void> {
    try {
      await this.o.relay.deleteNamespace(ref);
    } catch (err) {
      if (!(err instanceof RelayResourceNotFoundError)) throw err;
    }
  }

  private markFull(runId: string, subscriptionId: string): void {
    let set = this.fullInRun.get(runId);
    if (!set) this.fullInRun.set(runId, (set = new Set()));
    set.add(subscriptionId);
  }
}

function refOf(ns: Namespace): NamespaceRef {
  return {
    subscriptionId: ns.subscriptionId,
    resourceGroup: ns.resourceGroup,
    name: ns.name,
    ...(ns.hybridConnection ? { hybridConnection: ns.hybridConnection } : {}),
    ...(ns.endpoint ? { endpoint: ns.endpoint } : {}),
  };
}

function countSummaries(rows: readonly { subscriptionId: string; state: NamespaceState }[]): PoolCounts {
  const counts: PoolCounts = {
    total: 0,
    byState: Object.fromEntries(NAMESPACE_STATES.map((s) => [s, 0])) as Record<NamespaceState, number>,
    bySubscription: {},
  };
  for (const r of rows) {
    counts.total++;
    counts.byState[r.state]++;
    const sub = (counts.bySubscription[r.subscriptionId] ??= {
      total: 0,
      ...(Object.fromEntries(NAMESPACE_STATES.map((s) => [s, 0])) as Record<NamespaceState, number>),
    });
    sub.total++;
    sub[r.state]++;
  }
  return counts;
}

/** An error's text for a row's lastError or the run record: lib/errors.ts describeError (redacted, short). */
export function errorSummary(err: unknown): string {
  return describeError(err, 500);
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Name of the maintenance orchestration (registered in functions/poolMaintenance.ts). */
export const POOL_MAINTENANCE_ORCHESTRATION = 'poolMaintenance';

/** The fixed instance id of a pool's maintenance orchestration: one run at a time per pool. */
export function poolMaintenanceInstanceId(pool: string): string {
  return `pool-maintenance-${pool}`;
}
