// Pool maintenance, one method per activity of the maintenance orchestration: plan, provision,
// recycle, delete, reconcile against ARM (the decisions are reconcile.ts), and record the run; and
// what GET /pool reads (the answer's shape is poolStatus.ts). Each method is safe to run twice
// (its doc comment ends with what the second run does) and reports outcomes, not exceptions, for
// per-namespace ARM failures, so one bad namespace never stops the run.
import { recordMaintenanceRun, recordPoolCounts } from '../metrics';
import { randomUUID } from 'node:crypto';
import type { Config } from '../config';
import { ConcurrencyError, ConflictError, describeError, InvalidTransitionError, NotFoundError } from '../errors';
import {
  DEFAULT_HYBRID_CONNECTION,
  RelayActivationTimeoutError,
  RelayArmError,
  RelayConflictError,
  RelayQuotaExceededError,
  RelayThrottledError,
} from '../relay/relayManager';
import type { Sealer } from '../sealing';
import {
  MAX_RUN_ERRORS,
  retryItemOf,
  runRecordOf,
  type DeleteOutcome,
  type MaintenancePlan,
  type ProvisionItem,
  type ProvisionOutcome,
  type RecycleOutcome,
  type RunSummary,
} from './maintenanceRun';
import { countNamespaces, refOf, type Namespace, type PoolCounts } from './namespace';
import { holdsRecycleClaim, type NamespaceStore } from './namespaceStore';
import { planPool, policyFromConfig, type PoolPolicy } from './poolPolicy';
import type { PoolRunRecord, PoolRunStore } from './poolRunStore';
import { poolGrowth, type PoolGrowth } from './poolGrowth';
import { buildPoolStatus, type PoolStatus } from './poolStatus';
import { NamespaceProvisioner, type PoolRelayOps } from './provisioner';
import type { ReconcileOutcome } from './reconcile';
import { ReconcileRunner } from './reconcileRunner';
import { prepareNextGeneration } from './recycleSteps';
import {
  DEFAULT_PROVISION_PER_SUBSCRIPTION,
  type ProvisionArmReport,
  type SubscriptionArmBudget,
} from './provisionPacing';
import { openNamespaceKeys } from './sealedKeys';

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
  /** Namespaces whose ARM state reconcile compares with their row per run (default 10; 3-5 ARM calls each). */
  maxDriftChecks?: number;
  /** Creations in flight at once per subscription in a run (default 20; provisionPacing.ts). */
  provisionPerSubscription?: number;
  now?: () => Date;
}

/** Subscriptions whose Relay namespace writes were refused (429) past `now`, with until when. */
function stillRefused(last: PoolRunRecord | undefined, now: Date): Record<string, string> {
  const refused: Record<string, string> = {};
  for (const [sub, b] of Object.entries(last?.armBudget ?? {}))
    if (b.refusedUntil && b.refusedUntil > now.toISOString()) refused[sub] = b.refusedUntil;
  return refused;
}

/** Subscriptions the last run found full whose backoff has not ended at `now`, with until when. */
function stillFull(last: PoolRunRecord | undefined, now: Date): Record<string, string> {
  const full: Record<string, string> = {};
  for (const [sub, until] of Object.entries(last?.fullSubscriptions ?? {}))
    if (until > now.toISOString()) full[sub] = until;
  return full;
}

export class PoolMaintenance {
  private readonly clock: () => Date;
  private readonly o: Required<Omit<PoolMaintenanceOptions, 'nameSalt' | 'now'>> & { nameSalt?: string };
  /** Subscriptions found full during a run, by run id: later provisions of the run skip them without an ARM call. */
  private readonly fullInRun = new Map<string, Set<string>>();
  private readonly provisioner: NamespaceProvisioner;
  private readonly reconciler: ReconcileRunner;

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
      maxDriftChecks: Math.max(0, options.maxDriftChecks ?? 10),
      provisionPerSubscription: Math.max(1, options.provisionPerSubscription ?? DEFAULT_PROVISION_PER_SUBSCRIPTION),
    };
    this.provisioner = new NamespaceProvisioner(this.o.namespaces, this.o.relay, this.o.sealer, this.clock);
    this.reconciler = new ReconcileRunner({
      store: this.o.namespaces,
      relay: this.o.relay,
      provisioner: this.provisioner,
      steps: this,
      pool: this.o.pool,
      quarantineRetentionMinutes: this.o.quarantineRetentionMinutes,
      maxReconcileActions: this.o.maxReconcileActions,
      reconcileConcurrency: this.o.reconcileConcurrency,
      clock: this.clock,
    });
  }

  private get store(): NamespaceStore {
    return this.o.namespaces;
  }

  private get poolName(): string {
    return this.o.namespaces.poolName;
  }

  /**
   * The policy with the subscriptions found full recently, or whose namespace writes ARM refuses
   * for now, capped at what they hold (their share of the creations goes to the others).
   */
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
    const { fullSubscriptions, refused, last, plan } = await this.planNow(now);
    const waiting = await this.store.list({ states: ['creating', 'recycling'] });
    const expired = await this.store.listExpiredLeases(now);
    for (const [sub, until] of Object.entries(fullSubscriptions))
      plan.reasons.push(`subscription ${sub} gets no new namespace until ${until} (quota exceeded)`);
    for (const [sub, until] of Object.entries(refused))
      plan.reasons.push(
        `subscription ${sub} gets no new namespace until ${until} (ARM throttles its namespace writes)`,
      );
    const budget: Record<string, SubscriptionArmBudget> = {};
    for (const [sub, b] of Object.entries(last?.armBudget ?? {}))
      if (b.namespaceWritesRemaining !== undefined && !refused[sub])
        budget[sub] = { namespaceWritesRemaining: b.namespaceWritesRemaining };

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
      if (row.state === 'creating') provision.push(retryItemOf(row));
      else recycle.push(row.name);
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
      pacing: { perSubscription: this.o.provisionPerSubscription, budget },
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
   * A 429 whose Retry-After is longer than a call waits (RelayThrottledError) is `throttled`, not a
   * failure: a refused namespace PUT removes the row (nothing exists in ARM), a refused later step
   * leaves it `creating` for a later run; the outcome's `arm` says until when, and every outcome
   * the Relay namespace writes left that its own PUT was told (provisionPacing.ts reads them).
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
    const arm: ProvisionArmReport = {};
    try {
      await this.provisioner.prepareAndMarkAvailable(row, {
        recycleFirst: false,
        onPrepared: (p) => {
          if (p.namespaceWritesRemaining !== undefined) arm.namespaceWritesRemaining = p.namespaceWritesRemaining;
          if (p.arm.throttled) arm.throttled = p.arm.throttled;
        },
      });
      return { ...base, result: 'available', ...(Object.keys(arm).length > 0 ? { arm } : {}) };
    } catch (err) {
      if (!(err instanceof RelayArmError)) throw err;
      const error = describeError(err);
      if (err instanceof RelayThrottledError) {
        // Handled, not failed: ARM asked for a wait no activity should hold. The run defers the rest
        // of this subscription (provisionPacing.ts); the next plans skip it until the wait is over.
        const refusedUntil = new Date(this.clock().getTime() + err.retryAfterMs).toISOString();
        if (err.operation === 'namespaces.createOrUpdate') {
          // The PUT was refused: nothing exists in ARM; the row goes (its name is retired).
          await this.provisioner.retire(item.name, 'throttled', now, { armDelete: false });
          return {
            ...base,
            result: 'throttled',
            error,
            arm: { refusedUntil, namespaceWritesRemaining: 0, throttled: 1 },
          };
        }
        // A later step: the namespace exists; the row stays `creating` and a later run finishes it.
        await this.store.recordCreateFailure(item.name, error, Number.MAX_SAFE_INTEGER, this.clock());
        return { ...base, result: 'throttled', error, arm: { throttled: 1 } };
      }
      if (err instanceof RelayQuotaExceededError) {
        if (runId) this.markFull(runId, item.subscriptionId);
        // The PUT was refused: nothing exists in ARM, only the row goes (its name is retired).
        await this.provisioner.retire(item.name, 'quota exceeded', now, { armDelete: false });
        return { ...base, result: 'quota', error };
      }
      if (err instanceof RelayConflictError && err.operation === 'namespaces.createOrUpdate') {
        // The global name belongs to someone else: never delete it; retire the name.
        await this.provisioner.retire(item.name, error, now, { armDelete: false });
        return { ...base, result: 'abandoned', error };
      }
      if (err instanceof RelayActivationTimeoutError) {
        // Azure's advice for a namespace stuck activating: delete it and use another name.
        const deleteError = await this.provisioner.retire(item.name, error, now, { armDelete: true }).then(
          () => undefined,
          (e: unknown) => describeError(e),
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
   * one left half-done) or a lease past `leaseExpiresAt` (leased → recycling first). Deletes the
   * hybrid connection (every issued token dead) unless a session's end already did, then prepares
   * the next generation under a fresh name (recycleSteps.ts: foreign rules gone, root keys rotated,
   * writes one after another), seals its keys and makes it `available`. An ARM failure is counted on the row (a throttled one never quarantines it)
   * (quarantined after POOL_MAX_RECYCLE_FAILURES).
   * Second run: a namespace no longer waiting (already `available` with a newer generation, leased
   * again, gone) is skipped; one still `recycling` is recycled again, which is harmless.
   */
  async recycle(name: string): Promise<RecycleOutcome> {
    const now = this.clock();
    const ns = await this.store.get(name);
    if (!ns) return { name, result: 'skipped', error: 'no such row' };
    if (ns.state === 'leased' && (!ns.leaseExpiresAt || ns.leaseExpiresAt.getTime() >= now.getTime()))
      return { name, result: 'skipped', error: 'lease not expired' };
    if (ns.state !== 'leased' && ns.state !== 'recycling')
      return { name, result: 'skipped', error: `row is ${ns.state}` };
    // Ends an expired lease (only the one read) and claims the ARM work in one write: a session's
    // recycle (or another maintenance run) may be doing this one's ARM work right now.
    return this.recycleClaimed(ns, now, ns.state === 'leased' ? ns.etag : undefined);
  }

  /**
   * Claims the row's recycle (leased or available → recycling, `etag` when only the row read may
   * move) and carries it out: the hybrid connection deleted unless it already is, the next
   * generation prepared. ARM failures are counted on the row (quarantine after N).
   */
  private async recycleClaimed(ns: Namespace, now: Date, etag: string | undefined): Promise<RecycleOutcome> {
    const name = ns.name;
    const claimId = `maintenance:${randomUUID()}`;
    try {
      ns = await this.store.beginRecycle(name, { now, claimId }, etag);
    } catch (err) {
      if (err instanceof ConcurrencyError) return { name, result: 'skipped', error: 'row changed meanwhile' };
      throw err;
    }
    if (!holdsRecycleClaim(ns, claimId))
      return {
        name,
        result: 'skipped',
        error: ns.state === 'recycling' ? 'another recycle holds it' : `row is ${ns.state}`,
      };
    try {
      await prepareNextGeneration(this.store, this.o.relay, this.o.sealer, ns, this.clock);
    } catch (err) {
      if (!(err instanceof RelayArmError)) throw err;
      // ARM being busy (429s past the retries) says nothing wrong of the namespace: counted, never
      // quarantined for it (a burst of ends in one subscription would quarantine half the pool).
      const throttled = err.armStatus === 429;
      const after = await this.store.recordRecycleFailure(
        name,
        describeError(err),
        throttled ? Number.MAX_SAFE_INTEGER : this.o.pool.maxRecycleFailures,
        this.clock(),
      );
      return { name, result: after.state === 'quarantined' ? 'quarantined' : 'failed', error: describeError(err) };
    }
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
      await this.provisioner.deleteInArm(refOf(ns));
    } catch (err) {
      if (!(err instanceof RelayArmError)) throw err;
      return { name, result: 'failed', error: describeError(err) };
    }
    await this.store.remove(name, this.clock());
    return { name, result: 'deleted' };
  }

  /**
   * Compares ARM with the table and repairs what differs (ReconcileRunner.run, the rules are
   * `planReconcile`). Second run: lists again and repairs what is still off; each repair is itself
   * idempotent.
   */
  async reconcile(now: Date): Promise<ReconcileOutcome> {
    const outcome = await this.reconciler.run(now);
    await this.checkDrift(outcome, now);
    return outcome;
  }

  /**
   * Off the open path, a few namespaces per run (`maxDriftChecks`, drawn at random among the
   * available and leased ones): does ARM hold exactly the row's hybrid connection with the pool's
   * two rules and, for an available one, the keys sealed in the row, and no foreign namespace-level
   * rule or hybrid connection? An available namespace that drifted is recycled (a fresh generation,
   * foreign rules deleted, root key rotated; quarantined after N failures); a leased one gets its
   * foreign rules and hybrid connections deleted (its session's own are left alone until its end).
   * Each drift is named in the outcome's errors (so the run record, GET /pool and the log show it).
   * Second run: draws again; what was repaired matches now.
   */
  private async checkDrift(outcome: ReconcileOutcome, now: Date): Promise<void> {
    const note = (e: string) => {
      if (outcome.errors.length < MAX_RUN_ERRORS) outcome.errors.push(e.slice(0, 500));
    };
    const rows = await this.store.list({ states: ['available', 'leased'] });
    for (let i = rows.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [rows[i], rows[j]] = [rows[j], rows[i]];
    }
    for (const row of rows.slice(0, this.o.maxDriftChecks)) {
      if (!row.hybridConnection) continue;
      outcome.counts.driftChecked++;
      let drift: string[];
      try {
        const keys = row.state === 'available' ? openNamespaceKeys(this.o.sealer, row) : undefined;
        drift = await this.o.relay.checkDrift(refOf(row), keys);
      } catch (err) {
        if (!(err instanceof RelayArmError)) throw err;
        outcome.counts.failed++;
        note(`drift check of ${row.name}: ${describeError(err)}`);
        continue;
      }
      if (drift.length === 0) continue;
      outcome.counts.driftFound++;
      note(`drift of ${row.name} (generation ${row.generation}): ${drift.join('; ')}`);
      if (row.state === 'leased') {
        try {
          await this.o.relay.scrubNamespace(refOf(row), row.hybridConnection);
          outcome.counts.driftRepaired++;
        } catch (err) {
          if (!(err instanceof RelayArmError)) throw err;
          outcome.counts.failed++;
          note(`scrub of leased ${row.name}: ${describeError(err)}`);
        }
        continue;
      }
      const repaired = await this.recycleClaimed(row, now, row.etag);
      if (repaired.result === 'recycled') outcome.counts.driftRepaired++;
      else if (repaired.result !== 'skipped') {
        outcome.counts.failed++;
        note(`recycle of drifted ${row.name}: ${repaired.result} ${repaired.error ?? ''}`);
      }
    }
  }

  /**
   * Stores the run's record (duration, outcome, counts per step, errors, the target and its
   * reasons, `aboveTargetSince` for the next plan, subscriptions found full).
   * Second run: stores the same record again; a later run's record is never overwritten.
   */
  async recordRun(summary: RunSummary): Promise<PoolRunRecord> {
    const record = runRecordOf(summary, this.o.quotaBackoffMinutes, (await this.o.runs.last())?.armBudget);
    await this.o.runs.record(record);
    recordMaintenanceRun(record.outcome, record.durationMs);
    if (this.fullInRun.size > 16) this.fullInRun.clear();
    this.fullInRun.delete(summary.runId);
    return record;
  }

  /**
   * What GET /pool shows: counts by state and subscription, the target now and why (the same
   * `planPool` the next run will call), the last run. Read-only.
   */
  async status(now: Date): Promise<PoolStatus> {
    const { last, fullSubscriptions, counts, plan } = await this.planNow(now);
    return buildPoolStatus({
      pool: this.poolName,
      subscriptions: this.o.pool.subscriptions,
      counts,
      plan,
      growth: this.growthOf(fullSubscriptions, counts),
      lastRun: last,
    });
  }

  /**
   * Whether the pool can still grow or what stops it (lib/pool/poolGrowth.ts), for a pool_exhausted
   * answer: the rows and the last run record only. Concurrent callers (a burst of refused opens)
   * share one read. Read-only.
   */
  growth(now: Date = this.clock()): Promise<PoolGrowth> {
    this.growthRead ??= (async () => {
      const [last, rows] = await Promise.all([this.o.runs.last(), this.store.list()]);
      return this.growthOf(stillFull(last, now), countNamespaces(rows));
    })().finally(() => (this.growthRead = undefined));
    return this.growthRead;
  }

  private growthRead?: Promise<PoolGrowth>;

  /** The quotas the planner uses: a subscription found full recently counts as what it holds. */
  private growthOf(fullSubscriptions: Record<string, string>, counts: PoolCounts): PoolGrowth {
    return poolGrowth({
      cap: this.o.pool.cap,
      total: counts.total,
      subscriptions: this.policy(fullSubscriptions, counts).subscriptions,
      bySubscription: counts.bySubscription,
    });
  }

  /**
   * What plan and status both start from: the last run record (its `aboveTargetSince` and the
   * subscriptions still full), the pool's snapshot and counts, and `planPool` over them. Read-only.
   */
  private async planNow(now: Date) {
    const last = await this.o.runs.last();
    const fullSubscriptions = stillFull(last, now);
    const refused = stillRefused(last, now);
    const snapshot = await this.store.snapshot({
      now,
      leaseWindowMinutes: this.o.leaseWindowMinutes,
      nameReuseHours: this.o.pool.nameReuseHours,
      ...(last?.aboveTargetSince ? { aboveTargetSince: new Date(last.aboveTargetSince) } : {}),
    });
    const counts = countNamespaces(snapshot.namespaces);
    recordPoolCounts(this.poolName, counts);
    const plan = planPool(snapshot, this.policy({ ...refused, ...fullSubscriptions }, counts), now);
    return { last, fullSubscriptions, refused, counts, plan };
  }

  private markFull(runId: string, subscriptionId: string): void {
    let set = this.fullInRun.get(runId);
    if (!set) this.fullInRun.set(runId, (set = new Set()));
    set.add(subscriptionId);
  }
}
