// The namespace pool on Azure Tables: the named transitions of the state machine, each one
// conditional on the ETag it read (If-Match, lib/storage/tables.ts), so a lost race never
// overwrites anyone. Where a lease looks for candidates is leaseAllocator.ts; the names this pool
// deleted are tombstones.ts.
//
// Layout of the pool partition (PK = pool name): one row per namespace (RK = its name, [a-z0-9-]),
// and one lease-index row per leased namespace (RK = `~lease~<sessionId>`, written and deleted in
// the same entity-group transaction as the lease and its end), so "what does this session hold"
// is a point read, and two concurrent leases for one session cannot both commit. '~' sorts after
// every namespace name, so `RowKey lt '~'` selects namespace rows only. Tombstones of deleted
// names live in the partition `<pool>~deleted`.
import { odata, type TableClient } from '@azure/data-tables';
import { ConcurrencyError, InvalidTransitionError, NamespaceExistsError, NamespaceNotFoundError } from '../errors';
import { conditionalUpdate, deleteIfExists, getOrUndefined, insertOrConflict } from '../storage/tables';
import {
  LeaseAllocator,
  leaseIndexRowKey,
  type LeaseAllocatorOptions,
  type LeaseOptions,
  type LeaseStats,
} from './leaseAllocator';
import {
  assertTransition,
  namespaceFromEntity,
  namespaceToEntity,
  type Namespace,
  type NamespaceState,
} from './namespace';
import type { PoolSnapshot } from './poolPolicy';
import { Tombstones } from './tombstones';

/**
 * How long a recycle claim holds before another recycler may take it over: longer than one
 * recycle's ARM calls with their retries (RelayManager's deadline is 120 s per call).
 */
export const RECYCLE_CLAIM_STALE_MS = 10 * 60_000;

export type NamespaceStoreOptions = LeaseAllocatorOptions;

export interface NamespaceFilter {
  states?: readonly NamespaceState[];
  subscriptionId?: string;
  sessionId?: string;
  /** Only rows whose state changed strictly before this time. */
  stateChangedBefore?: Date;
  /** Only rows whose lease expires strictly before this time. */
  leaseExpiresBefore?: Date;
}

/** Whether `ns` is being recycled under the claim `claimId` (see NamespaceStore.beginRecycle). */
export function holdsRecycleClaim(ns: Namespace, claimId: string): boolean {
  return ns.state === 'recycling' && ns.recycleClaim === claimId;
}

type Decision = Namespace | 'unchanged';

export class NamespaceStore {
  /** The names this pool deleted (the partition `<pool>~deleted`). */
  readonly tombstones: Tombstones;
  private readonly allocator: LeaseAllocator;

  constructor(
    private readonly table: TableClient,
    readonly poolName: string,
    options: NamespaceStoreOptions = {},
  ) {
    this.tombstones = new Tombstones(table, poolName);
    this.allocator = new LeaseAllocator(table, poolName, (name) => this.get(name), options);
  }

  /** Counters of the lease path since the store was made. */
  get stats(): LeaseStats {
    return this.allocator.stats;
  }

  /** The namespace `sessionId` holds, if any (see LeaseAllocator.leaseFor). Read-only. */
  leaseFor(sessionId: string): Promise<Namespace | undefined> {
    return this.allocator.leaseFor(sessionId);
  }

  /**
   * Leases an available namespace to `sessionId`: available → leased, conditional on the ETag read,
   * in one transaction with the session's lease-index row; PoolExhaustedError when none is left.
   * See LeaseAllocator.lease for how candidates are drawn and why leases rarely contend.
   * Second run: returns the namespace the session already holds, unchanged.
   */
  lease(sessionId: string, options: LeaseOptions): Promise<Namespace> {
    return this.allocator.lease(sessionId, options);
  }

  /** Creates the table if needed. Second run: no-op. */
  async ensureTable(): Promise<void> {
    await this.table.createTable();
  }

  /**
   * Records a namespace about to be created in ARM, state `creating`.
   * Second run: returns the existing row when it is the same namespace still `creating`;
   * throws ConflictError(namespace_exists) when the name is taken by something else.
   */
  async insertCreating(input: {
    name: string;
    subscriptionId: string;
    resourceGroup: string;
    location: string;
    hybridConnection?: string;
    now?: Date;
  }): Promise<Namespace> {
    const now = input.now ?? new Date();
    const ns: Namespace = {
      pool: this.poolName,
      name: input.name,
      state: 'creating',
      subscriptionId: input.subscriptionId,
      resourceGroup: input.resourceGroup,
      location: input.location,
      hybridConnection: input.hybridConnection,
      generation: 0,
      createdAt: now,
      stateChangedAt: now,
      recycleFailures: 0,
    };
    const created = await insertOrConflict(this.table, namespaceToEntity(ns));
    if (created !== 'conflict') return { ...ns, etag: created.etag };
    const existing = await this.get(input.name);
    if (existing && existing.state === 'creating' && existing.subscriptionId === input.subscriptionId) return existing;
    throw new NamespaceExistsError(
      `namespace ${input.name} already exists in pool ${this.poolName} (state ${existing?.state ?? 'unknown'})`,
      { op: 'namespaceStore.insertCreating' },
    );
  }

  /** The namespace, or undefined when the pool has no such row. Read-only: a second run reads again. */
  async get(name: string): Promise<Namespace | undefined> {
    return getOrUndefined(this.table, this.poolName, name, namespaceFromEntity);
  }

  /** Rows of this pool matching every given filter (a query built with `odata`). Read-only. */
  async list(filter: NamespaceFilter = {}): Promise<Namespace[]> {
    const parts = [odata`PartitionKey eq ${this.poolName} and RowKey lt ${'~'}`];
    if (filter.states && filter.states.length > 0) {
      parts.push(`(${filter.states.map((s) => odata`state eq ${s}`).join(' or ')})`);
    }
    if (filter.subscriptionId !== undefined) parts.push(odata`subscriptionId eq ${filter.subscriptionId}`);
    if (filter.sessionId !== undefined) parts.push(odata`sessionId eq ${filter.sessionId}`);
    // Times are stored as fixed-width UTC ISO strings, so string order is time order.
    if (filter.stateChangedBefore) parts.push(odata`stateChangedAt lt ${filter.stateChangedBefore.toISOString()}`);
    if (filter.leaseExpiresBefore) parts.push(odata`leaseExpiresAt lt ${filter.leaseExpiresBefore.toISOString()}`);
    const out: Namespace[] = [];
    for await (const entity of this.table.listEntities({ queryOptions: { filter: parts.join(' and ') } })) {
      out.push(namespaceFromEntity(entity));
    }
    return out;
  }

  /**
   * What the sizing policy reads: every row, the names deleted within `nameReuseHours`, and the
   * leases started within `leaseWindowMinutes` (from `lastLeasedAt`, which survives recycle; a
   * namespace leased twice in the window counts once, so the rate is a slight underestimate).
   * Read-only.
   */
  async snapshot(input: {
    now: Date;
    leaseWindowMinutes: number;
    nameReuseHours: number;
    aboveTargetSince?: Date;
  }): Promise<PoolSnapshot> {
    const rows = await this.list();
    const windowStart = input.now.getTime() - input.leaseWindowMinutes * 60_000;
    const recent = rows.filter((n) => n.lastLeasedAt !== undefined && n.lastLeasedAt.getTime() >= windowStart).length;
    return {
      namespaces: rows.map((n) => ({
        name: n.name,
        subscriptionId: n.subscriptionId,
        state: n.state,
        createdAt: n.createdAt,
        stateChangedAt: n.stateChangedAt,
      })),
      recentlyDeleted: await this.tombstones.since(new Date(input.now.getTime() - input.nameReuseHours * 3_600_000)),
      recentLeases: { count: recent, windowMinutes: input.leaseWindowMinutes },
      ...(input.aboveTargetSince ? { aboveTargetSince: input.aboveTargetSince } : {}),
    };
  }

  /**
   * Prepared in ARM: creating → available, with its endpoint, hybrid connection and (optionally)
   * its rule keys sealed for the current generation.
   * Second run: an `available` namespace with the same endpoint is returned unchanged (its sealed
   * keys too: a second seal of the same keys only differs by its nonce).
   */
  async markAvailable(
    name: string,
    prepared: { endpoint: string; hybridConnection: string; sealedKeys?: string; now?: Date },
    etag?: string,
  ): Promise<Namespace> {
    const now = prepared.now ?? new Date();
    const ns = await this.transition(name, 'namespaceStore.markAvailable', etag, (cur) => {
      if (
        cur.state === 'available' &&
        cur.endpoint === prepared.endpoint &&
        cur.hybridConnection === prepared.hybridConnection
      )
        return 'unchanged';
      return {
        ...cur,
        state: 'available',
        endpoint: prepared.endpoint,
        hybridConnection: prepared.hybridConnection,
        sealedKeys: prepared.sealedKeys,
        stateChangedAt: now,
        recycleFailures: 0,
        lastError: undefined,
        quarantineReason: undefined,
      };
    });
    this.allocator.offer(ns);
    return ns;
  }

  /**
   * Starts a recycle: leased → recycling (the session ended), or available/quarantined → recycling
   * (key rotation, repair). With `sessionId`, only that session's lease is ended: the session id
   * stays on the row until markRecycled, which says whose keys are being changed.
   *
   * With `claimId`, the same write claims the recycle's ARM work (`recycleClaim`), so a session's
   * retry and maintenance never delete and recreate one hybrid connection at the same time. On a
   * row already `recycling` the claim is taken when it is free, the caller's own (renewed), or
   * older than RECYCLE_CLAIM_STALE_MS; a younger claim of another holder leaves the row unchanged.
   * The caller checks the row it gets back with `holdsRecycleClaim`.
   *
   * Second run: a namespace already `recycling` is returned unchanged (without `claimId`) or with
   * the claim renewed (same `claimId`); with `sessionId`, a namespace that no longer holds that
   * session (its lease already ended, maybe it was leased again) is returned unchanged.
   */
  async beginRecycle(
    name: string,
    options: { sessionId?: string; claimId?: string; now?: Date } = {},
    etag?: string,
  ): Promise<Namespace> {
    const now = options.now ?? new Date();
    const { claimId } = options;
    const claim = claimId === undefined ? {} : { recycleClaim: claimId, recycleClaimedAt: now };
    return this.transition(name, 'namespaceStore.beginRecycle', etag, (cur) => {
      if (cur.state === 'recycling') {
        if (claimId === undefined) return 'unchanged';
        const claimedAt = cur.recycleClaimedAt?.getTime() ?? 0;
        const heldElsewhere =
          cur.recycleClaim !== undefined &&
          cur.recycleClaim !== claimId &&
          now.getTime() - claimedAt < RECYCLE_CLAIM_STALE_MS;
        return heldElsewhere ? 'unchanged' : { ...cur, ...claim };
      }
      if (options.sessionId !== undefined && !(cur.state === 'leased' && cur.sessionId === options.sessionId))
        return 'unchanged';
      this.allocator.forget(cur.name);
      return { ...cur, state: 'recycling', stateChangedAt: now, ...claim };
    });
  }

  /**
   * Keys were regenerated and the hybrid connection recreated: recycling → available, generation
   * bumped, session fields and failures cleared, and the new keys stored sealed for the new
   * generation (`sealedKeys`; without it the old sealed keys are dropped, they are dead anyway).
   * Call it ONLY after the keys changed.
   * Second run: when the namespace is no longer `recycling` and its generation is past
   * `fromGeneration` (or, without it, it is `available`), it is returned unchanged: never bumped twice.
   */
  async markRecycled(
    name: string,
    options: {
      now?: Date;
      fromGeneration?: number;
      endpoint?: string;
      hybridConnection?: string;
      sealedKeys?: string;
    } = {},
    etag?: string,
  ): Promise<Namespace> {
    const now = options.now ?? new Date();
    const ns = await this.transition(name, 'namespaceStore.markRecycled', etag, (cur) => {
      if (cur.state !== 'recycling') {
        if (options.fromGeneration !== undefined ? cur.generation > options.fromGeneration : cur.state === 'available')
          return 'unchanged';
      }
      return {
        ...cur,
        state: 'available',
        endpoint: options.endpoint ?? cur.endpoint,
        hybridConnection: options.hybridConnection ?? cur.hybridConnection,
        hybridConnectionDeletedAt: undefined,
        sealedKeys: options.sealedKeys,
        generation: cur.generation + 1,
        sessionId: undefined,
        leasedAt: undefined,
        leaseExpiresAt: undefined,
        stateChangedAt: now,
        recycleFailures: 0,
        lastError: undefined,
        quarantineReason: undefined,
        recycleClaim: undefined,
        recycleClaimedAt: undefined,
      };
    });
    this.allocator.offer(ns);
    return ns;
  }

  /**
   * A recycle's first step is done: the hybrid connection `hybridConnection` of a `recycling`
   * namespace was deleted (connections dropped, tokens dead). Records when, keeps the claim.
   * Second run: a row already marked, no longer `recycling`, or holding another hybrid connection
   * is returned unchanged.
   */
  async markHybridConnectionDeleted(name: string, hybridConnection: string, now?: Date): Promise<Namespace> {
    return this.transition(name, 'namespaceStore.markHybridConnectionDeleted', undefined, (cur) => {
      if (cur.state !== 'recycling' || cur.hybridConnectionDeletedAt || cur.hybridConnection !== hybridConnection)
        return 'unchanged';
      return { ...cur, hybridConnectionDeletedAt: now ?? new Date() };
    });
  }

  /**
   * A recycle failed: recycling → recycling with the error and one more failure, or → quarantined
   * once `maxFailures` is reached.
   * Second run: counts the failure again (only brings quarantine one failure sooner); a namespace
   * already `quarantined` is returned unchanged.
   */
  async recordRecycleFailure(name: string, error: string, maxFailures: number, now?: Date): Promise<Namespace> {
    return this.recordFailure(
      name,
      'recycling',
      error,
      maxFailures,
      now ?? new Date(),
      'namespaceStore.recordRecycleFailure',
    );
  }

  /**
   * Preparing a `creating` namespace failed (ARM error, or reconcile found it stuck): creating →
   * creating with the error and one more failure, or → quarantined once `maxFailures` is reached.
   * Second run: as recordRecycleFailure.
   */
  async recordCreateFailure(name: string, error: string, maxFailures: number, now?: Date): Promise<Namespace> {
    return this.recordFailure(
      name,
      'creating',
      error,
      maxFailures,
      now ?? new Date(),
      'namespaceStore.recordCreateFailure',
    );
  }

  /**
   * Takes a namespace out of service with the reason (from creating or recycling, per the table).
   * Second run: a namespace already `quarantined` is returned unchanged (the first reason is kept).
   */
  async quarantine(name: string, reason: string, now?: Date, etag?: string): Promise<Namespace> {
    const at = now ?? new Date();
    return this.transition(name, 'namespaceStore.quarantine', etag, (cur) => {
      if (cur.state === 'quarantined') return 'unchanged';
      return { ...cur, state: 'quarantined', quarantineReason: reason.slice(0, 2000), stateChangedAt: at };
    });
  }

  /**
   * Marks a namespace for deletion in ARM (from creating, available or quarantined). A namespace
   * leased since the plan was made is refused with InvalidTransitionError.
   * Second run: a namespace already `deleting` is returned unchanged.
   */
  async beginDelete(name: string, now?: Date, etag?: string): Promise<Namespace> {
    const at = now ?? new Date();
    return this.transition(name, 'namespaceStore.beginDelete', etag, (cur) => {
      if (cur.state === 'deleting') return 'unchanged';
      this.allocator.forget(cur.name);
      return { ...cur, state: 'deleting', stateChangedAt: at };
    });
  }

  /**
   * ARM deleted the namespace: records its name as deleted (tombstone first, so a crash never
   * forgets a name) and removes the `deleting` row, conditional on its ETag. Refuses any other state.
   * Second run: a row already gone is a no-op.
   */
  async remove(name: string, now?: Date): Promise<void> {
    const at = now ?? new Date();
    await conditionalUpdate<Namespace, void>({
      op: 'namespaceStore.remove',
      subject: `namespace ${name}`,
      read: () => this.get(name),
      decide: (cur) => {
        if (!cur) return { done: undefined };
        if (cur.state !== 'deleting') {
          throw new InvalidTransitionError(`namespace ${name} is ${cur.state}; only a deleting namespace is removed`, {
            op: 'namespaceStore.remove',
          });
        }
        return {
          write: async () => {
            await this.tombstones.record(name, at);
            await deleteIfExists(this.table, this.poolName, name, cur.etag);
          },
        };
      },
    });
  }

  /** For plan and reconcile: leased rows whose lease expired before `now` (their session is gone or overdue). Read-only. */
  async listExpiredLeases(now: Date): Promise<Namespace[]> {
    return this.list({ states: ['leased'], leaseExpiresBefore: now });
  }

  /**
   * One read-decide-write cycle, conditional on the ETag read. With a caller's `etag` the caller
   * said what it read: a row that changed since is a ConcurrencyError. Without one, a lost race
   * re-reads and decides again (the decision is idempotent).
   */
  private async transition(
    name: string,
    op: string,
    etag: string | undefined,
    decide: (current: Namespace) => Decision,
  ): Promise<Namespace> {
    let indexMissing = false;
    let endsLease = false;
    return conditionalUpdate<Namespace, Namespace>({
      op,
      subject: `namespace ${name}`,
      read: () => this.get(name),
      decide: (cur) => {
        if (!cur) throw new NamespaceNotFoundError(`namespace ${name} is not in pool ${this.poolName}`, { op });
        if (etag !== undefined && cur.etag !== etag) {
          throw new ConcurrencyError(`namespace ${name} changed since it was read (now ${cur.state})`, { op });
        }
        const next = decide(cur);
        if (next === 'unchanged') return { done: cur };
        assertTransition(cur.state, next.state, name);
        // Leaving `leased` ends the session's lease-index row in the same transaction.
        endsLease = cur.state === 'leased' && cur.sessionId !== undefined && !indexMissing;
        const entity = namespaceToEntity(next);
        return {
          write: async () => {
            if (!endsLease) {
              return { ...next, etag: (await this.table.updateEntity(entity, 'Replace', { etag: cur.etag })).etag };
            }
            const res = await this.table.submitTransaction([
              ['update', entity, 'Replace', { etag: cur.etag }],
              ['delete', { partitionKey: this.poolName, rowKey: leaseIndexRowKey(cur.sessionId!) }],
            ]);
            return { ...next, etag: res.subResponses[0]?.etag };
          },
        };
      },
      retry: (fault) => {
        // 404 in the transaction: the row or its index is gone; the next attempt re-reads the row
        // and, if it is still there, moves it without the (missing) index row.
        if (fault === 'notFound' && endsLease) return (indexMissing = true);
        return etag === undefined;
      },
    });
  }

  private async recordFailure(
    name: string,
    state: 'creating' | 'recycling',
    error: string,
    maxFailures: number,
    now: Date,
    op: string,
  ): Promise<Namespace> {
    return this.transition(name, op, undefined, (cur) => {
      if (cur.state === 'quarantined') return 'unchanged';
      if (cur.state !== state) {
        throw new InvalidTransitionError(
          `namespace ${name} is ${cur.state}, not ${state}: no ${state} failure to record`,
          { op },
        );
      }
      const failures = cur.recycleFailures + 1;
      const lastError = error.slice(0, 2000);
      // A failed attempt releases its recycle claim: the next attempt (whoever makes it) may go.
      const released = { recycleClaim: undefined, recycleClaimedAt: undefined };
      if (failures >= maxFailures) {
        return {
          ...cur,
          ...released,
          state: 'quarantined',
          recycleFailures: failures,
          lastError,
          quarantineReason: `${state} failed ${failures} times: ${lastError}`.slice(0, 2000),
          stateChangedAt: now,
        };
      }
      return { ...cur, ...released, state, recycleFailures: failures, lastError, stateChangedAt: now };
    });
  }
}
