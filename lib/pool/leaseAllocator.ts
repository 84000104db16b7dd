// Which namespace a session gets: the lease (available → leased, one transaction with the
// session's lease-index row) and where it looks for candidates, a short-lived, process-wide cache
// of the pool's available set, read by one query at a time (single flight) and shared by every
// concurrent caller of the process. The cache is ordered on a hash ring of the names (the same ring
// in every instance); this process draws consecutive rows from a random cursor and jumps elsewhere
// when it loses a race, so instances work in different regions of the set instead of all fighting
// over the first row. The cache holds no truth: every candidate is leased by a write conditional
// on the ETag it was read with.
import { odata, type TableClient, type TransactionAction } from '@azure/data-tables';
import { z } from 'zod';
import { PoolExhaustedError, ValidationError } from '../errors';
import { deleteIfExists, getOrUndefined, tableFault } from '../storage/tables';
import { assertTransition, namespaceFromEntity, namespaceToEntity, type Namespace } from './namespace';

export interface LeaseAllocatorOptions {
  /** How long a read of the available set is used before it is read again (default 1000 ms). */
  availableCacheTtlMs?: number;
  /** Conditional writes one lease tries before it gives up with pool_exhausted (default 32). */
  maxLeaseAttempts?: number;
  /** Reads of the available set one lease may wait for (default 4). */
  maxLeaseRefreshes?: number;
  /** Source of randomness for where the draw cursor jumps (tests may pin it). */
  random?: () => number;
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

const leaseIndexSchema = z.object({ namespace: z.string().min(1), etag: z.string().min(1) });

const LEASE_INDEX_PREFIX = '~lease~';

/** Row key of the session's lease-index row in the pool partition. */
export function leaseIndexRowKey(sessionId: string): string {
  return LEASE_INDEX_PREFIX + sessionId;
}

/** Session ids become row keys: no '/', '\\', '#', '?' or control characters, at most 200 chars. */
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const SESSION_ID_PATTERN = /^[^/\\#?\u0000-\u001f\u007f-\u009f]{1,200}$/;

function assertSessionId(sessionId: string): void {
  if (!SESSION_ID_PATTERN.test(sessionId)) {
    throw new ValidationError('sessionId must be 1-200 characters without / \\ # ? or control characters', [
      { path: 'sessionId', message: 'invalid' },
    ]);
  }
}

export class LeaseAllocator {
  readonly stats: LeaseStats = { leased: 0, idempotentHits: 0, exhausted: 0, conflicts: 0, refreshes: 0 };
  private readonly ttlMs: number;
  private readonly random: () => number;
  private readonly maxAttempts: number;
  private readonly maxRefreshes: number;
  /** Available rows not yet handed to a caller of this process, each with the ETag it was read with. */
  private cache: Namespace[] = [];
  private cacheReadStartedAt = Number.NEGATIVE_INFINITY;
  private refreshing?: Promise<void>;
  /** Names this process took from the cache, with when: filtered out of reads that started earlier. */
  private readonly taken = new Map<string, number>();
  /** Names a caller of this process is writing right now: never offered, never in a fresh read. */
  private readonly inFlight = new Set<string>();
  /** Where this instance draws next in the cache, which is sorted by ring position. */
  private cursor = 0;

  /** `getNamespace` is the store's point read of a namespace row. */
  constructor(
    private readonly table: TableClient,
    readonly poolName: string,
    private readonly getNamespace: (name: string) => Promise<Namespace | undefined>,
    options: LeaseAllocatorOptions = {},
  ) {
    this.ttlMs = options.availableCacheTtlMs ?? 1000;
    this.random = options.random ?? Math.random;
    this.maxAttempts = options.maxLeaseAttempts ?? 32;
    this.maxRefreshes = options.maxLeaseRefreshes ?? 4;
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
      const candidate = await this.next(callStartedAt, budget);
      if (!candidate) break;
      let settled = false;
      const settle = (outcome: 'done' | 'untouched' | 'lostRace') => {
        if (!settled) this.settle(candidate, outcome);
        settled = true;
      };
      try {
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
          ['create', { partitionKey: this.poolName, rowKey: leaseIndexRowKey(sessionId), namespace: candidate.name }],
        ];
        const res = await this.table.submitTransaction(actions);
        this.stats.leased++;
        return { ...next, etag: res.subResponses[0]?.etag };
      } catch (err) {
        const fault = tableFault(err);
        if (fault === 'conflict') {
          // The index row exists: a concurrent run for this session committed first. The candidate
          // was not touched (the transaction is atomic), so it goes back to the cache.
          settle('untouched');
          const winner = await this.readLeaseIndex(sessionId);
          if (winner?.namespace) {
            this.stats.idempotentHits++;
            return winner.namespace;
          }
          if (winner) await this.deleteStaleLeaseIndex(sessionId, winner.etag);
          continue;
        }
        if (fault === undefined) throw err;
        this.stats.conflicts++;
        // Lost to another instance (412) or the row is gone (404): its region is probably here.
        settle('lostRace');
      } finally {
        settle('done');
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
      op: 'leaseAllocator.lease',
    });
  }

  /**
   * A candidate for a lease that started at `callStartedAt` (ms): drawn from the cache while it is
   * fresh; otherwise the cache is read again (shared with concurrent callers), which spends one of
   * `budget.refreshes`. Undefined when a read that started after the call began has nothing left
   * (so a refusal is never based on an older view), or the refresh budget is spent. The candidate
   * is in flight until `settle` is called for it.
   */
  private async next(callStartedAt: number, budget: { refreshes: number }): Promise<Namespace | undefined> {
    // A read this caller waited for is used whatever its age: on a loaded table it can take longer
    // than the TTL, and reading again instead spent the refresh budget and refused with
    // pool_exhausted while namespaces were available (seen after a host restart under 20 opens).
    let waited = false;
    for (;;) {
      const fresh = waited || Date.now() - this.cacheReadStartedAt <= this.ttlMs;
      if (this.cache.length > 0 && fresh) {
        const picked = this.draw();
        if (picked) this.inFlight.add(picked.name);
        return picked;
      }
      if (this.cache.length === 0 && this.cacheReadStartedAt >= callStartedAt) return undefined;
      if (budget.refreshes <= 0) return undefined;
      budget.refreshes--;
      await this.refresh();
      waited = true;
    }
  }

  /**
   * The write of a candidate ended (`done`: leased, or failed for another reason). `untouched`: the row was not changed (the caller's session
   * already held another namespace), so it goes back to the cache. `lostRace`: another instance
   * won it, so its region is probably here: jump elsewhere rather than follow it.
   */
  private settle(candidate: Namespace, outcome: 'done' | 'untouched' | 'lostRace'): void {
    this.inFlight.delete(candidate.name);
    if (outcome === 'untouched') this.offer(candidate);
    if (outcome === 'lostRace') this.hop();
  }

  /** A namespace this process just made available can be leased at once with its fresh ETag. */
  offer(ns: Namespace): void {
    if (ns.state !== 'available' || !ns.etag || this.inFlight.has(ns.name)) return;
    this.cache = this.cache.filter((c) => c.name !== ns.name);
    this.cache.push(ns);
  }

  /** A namespace this process moved out of `available`: no caller of this process should try it. */
  forget(name: string): void {
    this.cache = this.cache.filter((c) => c.name !== name);
  }

  /** One read of the available set at a time; concurrent callers share it. */
  private refresh(): Promise<void> {
    this.refreshing ??= this.reload().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async reload(): Promise<void> {
    const startedAt = Date.now();
    const rows = await this.readAvailable();
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

  /** The session's lease-index row, and the namespace it names if that is still leased to the session. */
  private async readLeaseIndex(sessionId: string): Promise<{ etag: string; namespace?: Namespace } | undefined> {
    const index = await getOrUndefined(this.table, this.poolName, leaseIndexRowKey(sessionId), (e) =>
      leaseIndexSchema.parse(e),
    );
    if (!index) return undefined;
    const ns = await this.getNamespace(index.namespace);
    const held = ns && ns.state === 'leased' && ns.sessionId === sessionId ? ns : undefined;
    return { etag: index.etag, ...(held ? { namespace: held } : {}) };
  }

  /** An index row whose namespace is no longer leased to the session (cannot happen through this store; repaired if found). */
  private async deleteStaleLeaseIndex(sessionId: string, etag: string): Promise<void> {
    try {
      await deleteIfExists(this.table, this.poolName, leaseIndexRowKey(sessionId), etag);
    } catch (err) {
      if (tableFault(err) !== 'preconditionFailed') throw err;
    }
  }

  /** The available set (one query; a row that does not parse is left out). */
  private async readAvailable(): Promise<Namespace[]> {
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
    return rows;
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
}

/** 32-bit FNV-1a hash of a name: its position on the lease hash ring. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
