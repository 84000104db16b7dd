// The pooled namespace: its states, the ONE table of allowed transitions, and the row codec
// (PK = pool name, RK = namespace name) that every read is parsed with and every write encoded by.
import { z } from 'zod';
import { InvalidTransitionError } from '../errors';
import type { NamespaceRef } from '../relay/relayManager';

export const NAMESPACE_STATES = ['creating', 'available', 'leased', 'recycling', 'quarantined', 'deleting'] as const;
export const namespaceStateSchema = z.enum(NAMESPACE_STATES);
export type NamespaceState = z.infer<typeof namespaceStateSchema>;

/**
 * Every allowed transition, `from → to[]`. Nothing else may change a namespace's state.
 * - creating → creating: a retried preparation (reconcile found it stuck, or ARM failed once).
 * - available → recycling: a key rotation of an idle namespace (reconcile, admin).
 * - recycling → recycling: a retried recycle after a failure.
 * - quarantined → recycling: a repair attempt; quarantined never goes straight back to available,
 *   because its keys are in an unknown state.
 * - deleting is terminal: the row is removed (and its name recorded) once ARM deleted it.
 */
export const NAMESPACE_TRANSITIONS: Readonly<Record<NamespaceState, readonly NamespaceState[]>> = Object.freeze({
  creating: ['creating', 'available', 'quarantined', 'deleting'],
  available: ['leased', 'recycling', 'deleting'],
  leased: ['recycling'],
  recycling: ['recycling', 'available', 'quarantined'],
  quarantined: ['recycling', 'deleting'],
  deleting: [],
});

export function canTransition(from: NamespaceState, to: NamespaceState): boolean {
  return NAMESPACE_TRANSITIONS[from].includes(to);
}

/** Throws InvalidTransitionError unless `from → to` is in NAMESPACE_TRANSITIONS. */
export function assertTransition(from: NamespaceState, to: NamespaceState, name?: string): void {
  if (!canTransition(from, to)) {
    const allowed = NAMESPACE_TRANSITIONS[from];
    throw new InvalidTransitionError(
      `namespace ${name ?? ''}${name ? ' ' : ''}cannot go from ${from} to ${to}` +
        ` (allowed from ${from}: ${allowed.length ? allowed.join(', ') : 'none, it is terminal'})`,
      { op: 'namespace.assertTransition', extensions: { from, to, ...(name ? { namespace: name } : {}) } },
    );
  }
}

/** A time: a fixed-width UTC ISO string in the row (so `odata` comparisons are time comparisons), a Date in the domain. */
const isoDate = z.codec(z.iso.datetime({ offset: false }), z.date(), {
  decode: (iso) => new Date(iso),
  encode: (date) => date.toISOString(),
});
const intCount = z.number().int().min(0);

/** Namespace name rule of Azure Relay: 6–50 chars, a letter first, letters/digits/hyphens, no trailing hyphen. */
export const NAMESPACE_NAME_PATTERN = /^[a-z][a-z0-9-]{4,48}[a-z0-9]$/;

/**
 * The namespace row, written once: decoding (`parse`) turns a stored row into the domain view
 * (times as Date; unknown properties dropped; an unknown state is an error), encoding turns the
 * domain view back into the row. The invariants of a state are checked both ways, so an
 * inconsistent row is never stored and never reaches the domain: an available or leased namespace
 * has its endpoint and hybrid connection, a leased one has its session and lease times. The table
 * keys are `pool` (PartitionKey) and `name` (RowKey), renamed by `namespaceFromEntity`/`namespaceToEntity`.
 */
export const namespaceSchema = z
  .object({
    pool: z.string().min(1),
    name: z.string().regex(NAMESPACE_NAME_PATTERN),
    state: namespaceStateSchema,
    subscriptionId: z.string().min(1),
    resourceGroup: z.string().min(1),
    location: z.string().min(1),
    /** The namespace's serviceBusEndpoint, e.g. https://<ns>.servicebus.windows.net:443/. */
    endpoint: z.string().min(1).optional(),
    hybridConnection: z.string().min(1).optional(),
    /**
     * When `hybridConnection` was deleted (a recycle's first step, the only one on a session's
     * critical path): its connections are dropped and its tokens dead; the next generation is not
     * prepared yet. Cleared when it is (markRecycled).
     */
    hybridConnectionDeletedAt: isoDate.optional(),
    /**
     * The Listen and Send rule keys of the current generation, sealed (lib/sealing.ts, see
     * lib/pool/sealedKeys.ts) with the context `sealedKeysContext(name, generation)`: opening them
     * is the hot path's only key lookup. Never in clear.
     */
    sealedKeys: z.string().min(1).max(8000).optional(),
    sessionId: z.string().min(1).optional(),
    leasedAt: isoDate.optional(),
    leaseExpiresAt: isoDate.optional(),
    /** Last time the namespace was leased; survives recycle so the policy can measure the lease rate. */
    lastLeasedAt: isoDate.optional(),
    /** Bumped once per completed recycle, i.e. once per key regeneration. */
    generation: intCount,
    createdAt: isoDate,
    stateChangedAt: isoDate,
    /** Consecutive failed preparations (recycles, or creation retries) since it was last available. */
    recycleFailures: intCount,
    lastError: z.string().max(2000).optional(),
    quarantineReason: z.string().max(2000).optional(),
    /** Who is doing this recycle's ARM work, and since when (see NamespaceStore.beginRecycle). */
    recycleClaim: z.string().min(1).max(200).optional(),
    recycleClaimedAt: isoDate.optional(),
    /** The ETag this view was read with; writes based on it are conditional on it. Never written. */
    etag: z.string().min(1).optional(),
  })
  .superRefine((e, ctx) => {
    if (e.state === 'available' || e.state === 'leased') {
      if (!e.endpoint) ctx.addIssue({ code: 'custom', path: ['endpoint'], message: `is required in state ${e.state}` });
      if (!e.hybridConnection)
        ctx.addIssue({ code: 'custom', path: ['hybridConnection'], message: `is required in state ${e.state}` });
    }
    if (e.state === 'leased') {
      for (const f of ['sessionId', 'leasedAt', 'leaseExpiresAt'] as const) {
        if (!e[f]) ctx.addIssue({ code: 'custom', path: [f], message: 'is required in state leased' });
      }
    }
  });

/** The domain view of a pooled namespace (dates as Date). */
export type Namespace = z.output<typeof namespaceSchema>;
/** The stored row (times as ISO strings), keyed by PartitionKey = pool and RowKey = name. */
export type NamespaceEntity = Omit<z.input<typeof namespaceSchema>, 'pool' | 'name' | 'etag'> & {
  partitionKey: string;
  rowKey: string;
};

const entityKeysSchema = z.looseObject({ partitionKey: z.unknown(), rowKey: z.unknown() });

/** Parses a stored row; throws a zod error naming the field when the row is not a valid namespace. */
export function namespaceFromEntity(raw: unknown): Namespace {
  const { partitionKey, rowKey, ...fields } = entityKeysSchema.parse(raw);
  return namespaceSchema.parse({ ...fields, pool: partitionKey, name: rowKey });
}

/** The entity to write for a namespace (validated, so an invalid state is never stored; no etag). */
export function namespaceToEntity(ns: Namespace): NamespaceEntity {
  const { pool, name, etag: _etag, ...fields } = namespaceSchema.encode(ns);
  return dropUndefined({ partitionKey: pool, rowKey: name, ...fields });
}

/** Azure Tables stores `undefined` as a property; a Replace without it is how a field is cleared. */
function dropUndefined<T extends object>(obj: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v;
  return out as T;
}

/** Where a namespace lives in ARM, for RelayManager calls (with its hybrid connection and endpoint once known). */
export function refOf(ns: Namespace): NamespaceRef {
  return {
    subscriptionId: ns.subscriptionId,
    resourceGroup: ns.resourceGroup,
    name: ns.name,
    ...(ns.hybridConnection ? { hybridConnection: ns.hybridConnection } : {}),
    ...(ns.endpoint ? { endpoint: ns.endpoint } : {}),
  };
}

/** Zero of every state: the start of every count by state. */
export function zeroByState(): Record<NamespaceState, number> {
  return Object.fromEntries(NAMESPACE_STATES.map((s) => [s, 0])) as Record<NamespaceState, number>;
}

export interface PoolCounts {
  total: number;
  byState: Record<NamespaceState, number>;
  bySubscription: Record<string, { total: number } & Record<NamespaceState, number>>;
}

/** Counts rows (or row summaries) by state, in total and per subscription. Pure. */
export function countNamespaces(rows: readonly Pick<Namespace, 'subscriptionId' | 'state'>[]): PoolCounts {
  const counts: PoolCounts = { total: 0, byState: zeroByState(), bySubscription: {} };
  for (const n of rows) {
    counts.total++;
    counts.byState[n.state]++;
    const sub = (counts.bySubscription[n.subscriptionId] ??= { total: 0, ...zeroByState() });
    sub.total++;
    sub[n.state]++;
  }
  return counts;
}
