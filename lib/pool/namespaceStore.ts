// The namespace pool on Azure Tables: every transition is a conditional update on the ETag that
// was read (If-Match), so a lost race never overwrites anyone; leases avoid contention by drawing
// from a short-lived, process-wide cache of the available set, each instance in its own region.
//
// Layout of the pool partition (PK = pool name): one row per namespace (RK = its name, [a-z0-9-]),
// and one lease-index row per leased namespace (RK = `~lease~<sessionId>`, written and deleted in
// the same entity-group transaction as the lease and its end), so "what does this session hold"
// is a point read, and two concurrent leases for one session cannot both commit. '~' sorts after
// every namespace name, so `RowKey lt '~'` selects namespace rows only. Tombstones of deleted
// names live in the partition `<pool>~deleted`.
import { odata, type TableClient, type TransactionAction } from '@azure/data-tables';
import { z } from 'zod';
import {
  ConcurrencyError,
  InvalidTransitionError,
  NamespaceExistsError,
  NamespaceNotFoundError,
  PoolExhaustedError,
  ValidationError,
} from '../errors';
import {
  assertTransition,
  NAMESPACE_STATES,
  namespaceFromEntity,
  namespaceToEntity,
  type Namespace,
  type NamespaceState,
} from './namespace';
import type { DeletedName, PoolSnapshot } from './poolPolicy';

/**
 * How long a recycle claim holds before another recycler may take it over: longer than one
 * recycle's ARM calls with their retries (RelayManager's deadline is 120 s per call).
 */
export const RECYCLE_CLAIM_STALE_MS = 10 * 60_000;

export interface NamespaceStoreOptions {
  /** How long a read of the available set is used before it is read again (default 1000 ms). */
  availableCacheTtlMs?: number;
  /** Conditional writes one lease tries before it gives up with pool_exhausted (default 32). */
  maxLeaseAttempts?: number;
  /** Reads of the available set one lease may wait for (default 4). */
  maxLeaseRefreshes?: number;
  /** Source of randomness for where the draw cursor jumps (tests may pin it). */
  random?: () => number;
}

export interface NamespaceFilter {
  states?: readonly NamespaceState[];
  subscriptionId?: string;
  sessionId?: string;
  /** Only rows whose state changed strictly before this time. */
  stateChangedBefore?: Date;
  /** Only rows whose lease expires strictly before this time. */
  leaseExpiresBefore?: Date;
}

export interface PoolCounts {
  total: number;
  byState: Record<NamespaceState, number>;
  bySubscription: Record<string, { total: number } & Record<NamespaceState, number>>;
}

export interface LeaseOptions {
  leaseExpiresAt: Date;
  now?: Date;
}

/** Counters of the lease path since the store was made (for logs and the benchmark). */
export interface LeaseStats {
  leased: number;
  idempotentHits: number;
  exhausted: number;
  /** Conditional writes that lost a race (412) or found the row gone (404). */
  conflicts: number;
  refreshes: number;
}

const tombstoneSchema = z.object({ rowKey: z.string().min(1), deletedAt: z.iso.datetime({ offset: false }) });
const leaseIndexSchema = z.object({ namespace: z.string().min(1), etag: z.string().min(1) });

const LEASE_INDEX_PREFIX = '~lease~';
/** Session ids become row keys: no '/', '\\', '#', '?' or control characters, at most 200 chars. */
const SESSION_ID_PATTERN = /^[^/\\#?\u0000-\u001f\u007f-\u009f]{1,200}$/;

function assertSessionId(sessionId: string): void {
  if (!SESSION_ID_PATTERN.test(sessionId)) {
    throw new ValidationError('sessionId must be 1-200 characters without / \\ # ? or control characters', [
      { path: 'sessionId', message: 'invalid' },
    ]);
  }
}

/** A 412 (ETag mismatch) or 404 (row gone) status from an Azure SDK error; undefined for anything else. */
function statusOf(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'statusCode' in err) {
    const code = (err as { statusCode: unknown }).statusCode;
    if (typeof code === 'number') return code;
  }
  return undefined;
}

const emptyCounts = (): Record<NamespaceState, number> =>
  Object.fromEntries(NAMESPACE_STATES.map((s) => [s, 0])) as Record<NamespaceState, number>;

/** Attempts of a read-decide-write cycle when the caller gave no ETag and the row changed meanwhile. */
const MAX_TRANSITION_ATTEMPTS = 4;

type Decision = Namespace | 'unchanged';

export class NamespaceStore {
  readonly stats: LeaseStats = { leased: 0, idempotentHits: 0, exhausted: 0, conflicts: 0, refreshes: 0 };
  private readonly ttlMs: number;
  private readonly maxAttempts: number;
  private readonly maxRefreshes: number;
  private readonly random: () => number;
  /** Available rows not yet handed to a caller of this process, each with the ETag it was read with. */
  private cache: Namespace[] = [];
  private cacheReadStartedAt = Number.NEGATIVE_INFINITY;
  private refreshing?: Promise<void>;
  /** Names this process took from the cache, with when: filtered out of reads that started earlier. */
  private readonly taken = new Map<string, number>();
  private readonly inFlight = new Set<string>();
  /** Where this instance draws next in the cache, which is sorted by ring position (see lease). */
  private cursor = 0;

  constructor(
    private readonly table: TableClient,
    readonly poolName: string,
    options: NamespaceStoreOptions = {},
  ) {
    this.ttlMs = options.availableCacheTtlMs ?? 1000;
    this.maxAttempts = options.maxLeaseAttempts ?? 32;
    this.maxRefreshes = options.maxLeaseRefreshes ?? 4;
    this.random = options.random ?? Math.random;
  }

  /** Partition of the tombstones of deleted names ('~' cannot occur in a pool name). */
  get deletedPartition(): string {
    return `${this.poolName}~deleted`;
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
    try {
      const res = await this.table.createEntity(namespaceToEntity(ns));
      return { ...ns, etag: res.etag };
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
      const existing = await this.get(input.name);
      if (existing && existing.state === 'creating' && existing.subscriptionId === input.subscriptionId)
        return existing;
      throw new NamespaceExistsError(
        `namespace ${input.name} already exists in pool ${this.poolName} (state ${existing?.state ?? 'unknown'})`,
        {
          op: 'namespaceStore.insertCreating',
        },
      );
    }
  }

  /** The namespace, or undefined when the pool has no such row. Read-only: a second run reads again. */
  async get(name: string): Promise<Namespace | undefined> {
    try {
      const entity = await this.table.getEntity(this.poolName, name);
      return namespaceFromEntity(entity);
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
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

  /** Counts by state, in total and per subscription (one partition read). Read-only. */
  async countsByStateAndSubscription(): Promise<PoolCounts> {
    return countNamespaces(await this.list());
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
      recentlyDeleted: await this.recentlyDeleted(new Date(input.now.getTime() - input.nameReuseHours * 3_600_000)),
      recentLeases: { count: recent, windowMinutes: input.leaseWindowMinutes },
      ...(input.aboveTargetSince ? { aboveTargetSince: input.aboveTargetSince } : {}),
    };
  }

  /**
   * The namespace `sessionId` holds, if any: a point read of its lease-index row, then of the
   * namespace, which must still be leased to that session. Read-only.
   */
  async leaseFor(sessionId: string): Promise<Namespace | undefined> {
    assertSessionId(sessionId);
    return (await this.readLeaseIndex(sessionId))?.namespace;
  }

  /**
   * Leases an available namespace to `sessionId`: available → leased, conditional on the ETag read,
   * in one transaction with the session's lease-index row.
   *
   * Contention: candidates come from this process's cache of the available set (read at most
   * every availableCacheTtlMs, one read shared by all concurrent callers), and a candidate drawn
   * by one caller is never offered to another caller of this process, so concurrent leases in
   * one instance never collide. Across instances: the cache is ordered by a hash of the name (a
   * ring the same for every instance); each instance takes consecutive rows from a random start
   * and, when it loses a race (412) or finds a row gone (404), jumps to a new random place; so
   * instances work in different regions of the set instead of all fighting over the first row,
   * and one that runs into another's region leaves it at once instead of trailing behind it.
   *
   * Exhaustion: PoolExhaustedError when a read of the available set that started after this call
   * began has nothing left to offer (so a refusal is never based on an older view), or after
   * maxLeaseAttempts lost races.
   *
   * Second run: returns the namespace the session already holds, unchanged. No read is spent on
   * this up front: the transaction creates the session's lease-index row, which fails (409, and
   * the candidate is left untouched) when the session already holds a namespace; that one is
   * then returned. Two concurrent runs for one session therefore cannot both commit.
   */
  async lease(sessionId: string, options: LeaseOptions): Promise<Namespace> {
    assertSessionId(sessionId);
    const callStartedAt = Date.now();
    const now = options.now ?? new Date();
    const budget = { refreshes: this.maxRefreshes };
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const candidate = await this.nextCandidate(callStartedAt, budget);
      if (!candidate) break;
      const next: Namespace = {
        ...candidate,
        state: 'leased',
        sessionId,
        leasedAt: now,
        leaseExpiresAt: options.leaseExpiresAt,
        lastLeasedAt: now,
        stateChangedAt: now,
      };
      assertTransition(candidate.state, 'leased', candidate.name);
      const actions: TransactionAction[] = [
        ['update', namespaceToEntity(next), 'Replace', { etag: candidate.etag }],
        ['create', { partitionKey: this.poolName, rowKey: LEASE_INDEX_PREFIX + sessionId, namespace: candidate.name }],
      ];
      this.inFlight.add(candidate.name);
      try {
        const res = await this.table.submitTransaction(actions);
        this.stats.leased++;
        return { ...next, etag: res.subResponses[0]?.etag };
      } catch (err) {
        const status = statusOf(err);
        if (status === 409) {
          // The index row exists: a concurrent run for this session committed first. The candidate
          // was not touched (the transaction is atomic), so it goes back to the cache.
          this.inFlight.delete(candidate.name);
          this.offer(candidate);
          const winner = await this.readLeaseIndex(sessionId);
          if (winner?.namespace) {
            this.stats.idempotentHits++;
            return winner.namespace;
          }
          if (winner) await this.deleteStaleLeaseIndex(sessionId, winner.etag);
          continue;
        }
        if (status !== 412 && status !== 404) throw err;
        this.stats.conflicts++;
        // Lost to another instance: its region is probably here; jump elsewhere rather than follow it.
        this.hop();
      } finally {
        this.inFlight.delete(candidate.name);
      }
    }
    // Only a refused call pays for this read: a retried lease whose session already holds a
    // namespace gets it back even when nothing is left (the 409 path covers every other retry).
    const held = await this.readLeaseIndex(sessionId);
    if (held?.namespace) {
      this.stats.idempotentHits++;
      return held.namespace;
    }
    this.stats.exhausted++;
    throw new PoolExhaustedError(`no namespace of pool ${this.poolName} is available; retry later`, 30, {
      op: 'namespaceStore.lease',
    });
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
    this.offer(ns);
    return ns;
  }

  /**
   * Starts a recycle: leased → recycling (the session ended), or available/quarantined → recycling
   * (key rotation, repair). With `sessionId`, only that session's lease is ended: the session id
   * stays on the row until markRecycled, which says whose keys are being changed.
   * Second run: a namespace already `recycling` is returned unchanged; with `sessionId`, so is a
   * namespace that no longer holds that session (its lease already ended, maybe it was leased again).
   */
  async beginRecycle(
    name: string,
    options: { sessionId?: string; now?: Date } = {},
    etag?: string,
  ): Promise<Namespace> {
    const now = options.now ?? new Date();
    return this.transition(name, 'namespaceStore.beginRecycle', etag, (cur) => {
      if (cur.state === 'recycling') return 'unchanged';
      if (options.sessionId !== undefined && !(cur.state === 'leased' && cur.sessionId === options.sessionId))
        return 'unchanged';
      this.forget(cur.name);
      return { ...cur, state: 'recycling', stateChangedAt: now };
    });
  }

  /** `release` is the session's end: beginRecycle of the namespace that session holds. */
  async release(name: string, sessionId: string, now?: Date): Promise<Namespace> {
    return this.beginRecycle(name, { sessionId, now });
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
    this.offer(ns);
    return ns;
  }

  /**
   * Claims the ARM work of a recycle (recycling → recycling with `recycleClaim`), so a session's
   * retry and maintenance never delete and recreate one hybrid connection at the same time.
   * Returns the claimed row; the row unchanged when it is no longer `recycling` (the caller
   * checks its state); undefined when another holder's claim is younger than `staleAfterMs`.
   * Second run (same `claimId`): the claim is renewed.
   */
  async claimRecycle(
    name: string,
    claimId: string,
    options: { now?: Date; staleAfterMs: number },
  ): Promise<Namespace | undefined> {
    const now = options.now ?? new Date();
    let heldElsewhere = false;
    const ns = await this.transition(name, 'namespaceStore.claimRecycle', undefined, (cur) => {
      heldElsewhere = false;
      if (cur.state !== 'recycling') return 'unchanged';
      const claimedAt = cur.recycleClaimedAt?.getTime() ?? 0;
      if (cur.recycleClaim && cur.recycleClaim !== claimId && now.getTime() - claimedAt < options.staleAfterMs) {
        heldElsewhere = true;
        return 'unchanged';
      }
      return { ...cur, recycleClaim: claimId, recycleClaimedAt: now };
    });
    return heldElsewhere ? undefined : ns;
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
      this.forget(cur.name);
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
    for (let attempt = 0; attempt < MAX_TRANSITION_ATTEMPTS; attempt++) {
      const cur = await this.get(name);
      if (!cur) return;
      if (cur.state !== 'deleting') {
        throw new InvalidTransitionError(`namespace ${name} is ${cur.state}; only a deleting namespace is removed`, {
          op: 'namespaceStore.remove',
        });
      }
      await this.recordDeletedName(name, at);
      try {
        await this.table.deleteEntity(this.poolName, name, { etag: cur.etag });
        return;
      } catch (err) {
        const status = statusOf(err);
        if (status === 404) return;
        if (status !== 412) throw err;
      }
    }
    throw new ConcurrencyError(`namespace ${name} kept changing while being removed`, { op: 'namespaceStore.remove' });
  }

  /**
   * Records that `name` was deleted at `deletedAt` (also for names reconcile deleted without a row).
   * Second run: overwrites the time with the later one, which only extends the no-reuse window.
   */
  async recordDeletedName(name: string, deletedAt: Date): Promise<void> {
    await this.table.upsertEntity(
      { partitionKey: this.deletedPartition, rowKey: name, deletedAt: deletedAt.toISOString() },
      'Replace',
    );
  }

  /** Names deleted at or after `since`. Read-only. */
  async recentlyDeleted(since: Date): Promise<DeletedName[]> {
    const filter = odata`PartitionKey eq ${this.deletedPartition} and deletedAt ge ${since.toISOString()}`;
    const out: DeletedName[] = [];
    for await (const entity of this.table.listEntities({ queryOptions: { filter } })) {
      const t = tombstoneSchema.parse(entity);
      out.push({ name: t.rowKey, deletedAt: new Date(t.deletedAt) });
    }
    return out;
  }

  /** Forgets tombstones older than `before`; returns how many. Second run: finds fewer, deletes them. */
  async purgeDeletedNames(before: Date): Promise<number> {
    const filter = odata`PartitionKey eq ${this.deletedPartition} and deletedAt lt ${before.toISOString()}`;
    let n = 0;
    for await (const entity of this.table.listEntities({ queryOptions: { filter } })) {
      const t = tombstoneSchema.parse(entity);
      try {
        await this.table.deleteEntity(this.deletedPartition, t.rowKey);
        n++;
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
      }
    }
    return n;
  }

  /** For reconcile: rows in creating/recycling (default) whose state changed before `olderThan`. Read-only. */
  async listStuck(
    olderThan: Date,
    states: readonly NamespaceState[] = ['creating', 'recycling'],
  ): Promise<Namespace[]> {
    return this.list({ states, stateChangedBefore: olderThan });
  }

  /** For reconcile: leased rows whose lease expired before `now` (their session is gone or overdue). Read-only. */
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
    for (let attempt = 0; attempt < MAX_TRANSITION_ATTEMPTS; attempt++) {
      const cur = await this.get(name);
      if (!cur) throw new NamespaceNotFoundError(`namespace ${name} is not in pool ${this.poolName}`, { op });
      if (etag !== undefined && cur.etag !== etag) {
        throw new ConcurrencyError(`namespace ${name} changed since it was read (now ${cur.state})`, { op });
      }
      const next = decide(cur);
      if (next === 'unchanged') return cur;
      assertTransition(cur.state, next.state, name);
      // Leaving `leased` ends the session's lease-index row in the same transaction.
      const endsLease = cur.state === 'leased' && cur.sessionId !== undefined && !indexMissing;
      try {
        let newEtag: string | undefined;
        if (endsLease) {
          const res = await this.table.submitTransaction([
            ['update', namespaceToEntity(next), 'Replace', { etag: cur.etag }],
            ['delete', { partitionKey: this.poolName, rowKey: LEASE_INDEX_PREFIX + cur.sessionId }],
          ]);
          newEtag = res.subResponses[0]?.etag;
        } else {
          newEtag = (await this.table.updateEntity(namespaceToEntity(next), 'Replace', { etag: cur.etag })).etag;
        }
        return { ...next, etag: newEtag };
      } catch (err) {
        const status = statusOf(err);
        if (status !== 412 && status !== 404) throw err;
        // 404 in the transaction: the row or its index is gone; the next attempt re-reads the row
        // and, if it is still there, moves it without the (missing) index row.
        if (status === 404 && endsLease) indexMissing = true;
        else if (etag !== undefined)
          throw new ConcurrencyError(`namespace ${name} changed since it was read`, { op, cause: err });
      }
    }
    throw new ConcurrencyError(`namespace ${name} kept changing; gave up after ${MAX_TRANSITION_ATTEMPTS} attempts`, {
      op,
    });
  }

  /** The session's lease-index row, and the namespace it names if that is still leased to the session. */
  private async readLeaseIndex(sessionId: string): Promise<{ etag: string; namespace?: Namespace } | undefined> {
    let index: z.infer<typeof leaseIndexSchema>;
    try {
      index = leaseIndexSchema.parse(await this.table.getEntity(this.poolName, LEASE_INDEX_PREFIX + sessionId));
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
    const ns = await this.get(index.namespace);
    const held = ns && ns.state === 'leased' && ns.sessionId === sessionId ? ns : undefined;
    return { etag: index.etag, ...(held ? { namespace: held } : {}) };
  }

  /** An index row whose namespace is no longer leased to the session (cannot happen through this store; repaired if found). */
  private async deleteStaleLeaseIndex(sessionId: string, etag: string): Promise<void> {
    try {
      await this.table.deleteEntity(this.poolName, LEASE_INDEX_PREFIX + sessionId, { etag });
    } catch (err) {
      const status = statusOf(err);
      if (status !== 404 && status !== 412) throw err;
    }
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

  /**
   * A candidate for a lease that started at `callStartedAt`: drawn from the cache while it is
   * fresh; otherwise the cache is read again (shared with concurrent callers). Undefined when a
   * read that started after the call began has nothing left, or the refresh budget is spent.
   */
  private async nextCandidate(callStartedAt: number, budget: { refreshes: number }): Promise<Namespace | undefined> {
    for (;;) {
      const fresh = Date.now() - this.cacheReadStartedAt <= this.ttlMs;
      if (this.cache.length > 0 && fresh) return this.draw();
      if (this.cache.length === 0 && this.cacheReadStartedAt >= callStartedAt) return undefined;
      if (budget.refreshes <= 0) return undefined;
      budget.refreshes--;
      await this.refreshAvailable();
    }
  }

  /** One read of the available set at a time; concurrent callers share it. */
  private refreshAvailable(): Promise<void> {
    this.refreshing ??= this.readAvailable().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async readAvailable(): Promise<void> {
    const startedAt = Date.now();
    this.stats.refreshes++;
    const filter = odata`PartitionKey eq ${this.poolName} and state eq ${'available'}`;
    const rows: Namespace[] = [];
    for await (const entity of this.table.listEntities({ queryOptions: { filter } })) {
      // A row that does not parse cannot be leased safely; skipping it keeps one bad row from refusing every lease.
      try {
        rows.push(namespaceFromEntity(entity));
      } catch {
        continue;
      }
    }
    // Rows this process took since the read started may still show as available in it.
    this.cache = rows
      .filter((n) => !this.inFlight.has(n.name) && !((this.taken.get(n.name) ?? -Infinity) >= startedAt))
      .map((n) => ({ n, d: fnv1a(n.name) }))
      .sort((a, b) => a.d - b.d)
      .map((x) => x.n);
    this.hop();
    this.cacheReadStartedAt = startedAt;
    for (const [name, at] of this.taken) if (at < startedAt) this.taken.delete(name);
  }

  /** Removes and returns the candidate at the cursor; the next one slides into its place. */
  private draw(): Namespace | undefined {
    if (this.cache.length === 0) return undefined;
    if (this.cursor >= this.cache.length) this.cursor = 0;
    const [picked] = this.cache.splice(this.cursor, 1);
    if (picked) this.taken.set(picked.name, Date.now());
    return picked;
  }

  /** Moves the draw cursor to a random place on the ring. */
  private hop(): void {
    this.cursor = Math.floor(this.random() * Math.max(1, this.cache.length));
  }

  /** A namespace this process just made available can be leased at once with its fresh ETag. */
  private offer(ns: Namespace): void {
    if (ns.state !== 'available' || !ns.etag || this.inFlight.has(ns.name)) return;
    this.cache = this.cache.filter((c) => c.name !== ns.name);
    this.cache.push(ns);
  }

  private forget(name: string): void {
    this.cache = this.cache.filter((c) => c.name !== name);
  }
}

/** 32-bit FNV-1a hash of a name: its position on the lease hash ring. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Counts rows by state, in total and per subscription. Pure. */
export function countNamespaces(rows: readonly Namespace[]): PoolCounts {
  const counts: PoolCounts = { total: 0, byState: emptyCounts(), bySubscription: {} };
  for (const n of rows) {
    counts.total++;
    counts.byState[n.state]++;
    const sub = (counts.bySubscription[n.subscriptionId] ??= { total: 0, ...emptyCounts() });
    sub.total++;
    sub[n.state]++;
  }
  return counts;
}
