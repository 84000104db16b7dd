// The pooled namespace: its states, the ONE table of allowed transitions, and the table-entity
// schema (PK = pool name, RK = namespace name) that every read is parsed with.
import { z } from 'zod';
import { InvalidTransitionError } from '../errors';

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

const isoTime = z.iso.datetime({ offset: false });
const intCount = z.number().int().min(0);

/** Namespace name rule of Azure Relay: 6–50 chars, a letter first, letters/digits/hyphens, no trailing hyphen. */
export const NAMESPACE_NAME_PATTERN = /^[a-z][a-z0-9-]{4,48}[a-z0-9]$/;

/**
 * The stored entity, as read back from Azure Tables (unknown properties are dropped, an unknown
 * state is an error). Invariants of a state are checked here, so an inconsistent row never
 * reaches the domain: an available or leased namespace has its endpoint and hybrid connection,
 * a leased one has its session and lease times.
 */
export const namespaceEntitySchema = z
  .object({
    partitionKey: z.string().min(1),
    rowKey: z.string().regex(NAMESPACE_NAME_PATTERN),
    state: namespaceStateSchema,
    subscriptionId: z.string().min(1),
    resourceGroup: z.string().min(1),
    location: z.string().min(1),
    /** The namespace's serviceBusEndpoint, e.g. https://<ns>.servicebus.windows.net:443/. */
    endpoint: z.string().min(1).optional(),
    hybridConnection: z.string().min(1).optional(),
    /**
     * The Listen and Send rule keys of the current generation, sealed (lib/sealing.ts) with the
     * context `sealedKeysContext(name, generation)`: opening them is the hot path's only key lookup.
     */
    sealedKeys: z.string().min(1).max(8000).optional(),
    sessionId: z.string().min(1).optional(),
    leasedAt: isoTime.optional(),
    leaseExpiresAt: isoTime.optional(),
    /** Last time the namespace was leased; survives recycle so the policy can measure the lease rate. */
    lastLeasedAt: isoTime.optional(),
    /** Bumped once per completed recycle, i.e. once per key regeneration. */
    generation: intCount,
    createdAt: isoTime,
    stateChangedAt: isoTime,
    /** Consecutive failed preparations (recycles, or creation retries) since it was last available. */
    recycleFailures: intCount,
    lastError: z.string().max(2000).optional(),
    quarantineReason: z.string().max(2000).optional(),
    /** Who is doing this recycle's ARM work, and since when (see NamespaceStore.claimRecycle). */
    recycleClaim: z.string().min(1).max(200).optional(),
    recycleClaimedAt: isoTime.optional(),
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
export type NamespaceEntity = z.infer<typeof namespaceEntitySchema>;

/** The domain view of a pooled namespace (dates as Date, keys named for what they are). */
export interface Namespace {
  pool: string;
  name: string;
  state: NamespaceState;
  subscriptionId: string;
  resourceGroup: string;
  location: string;
  endpoint?: string;
  hybridConnection?: string;
  /** Sealed `{listen, send}` keys of this generation (see lib/pool/sealedKeys.ts); never in clear. */
  sealedKeys?: string;
  sessionId?: string;
  leasedAt?: Date;
  leaseExpiresAt?: Date;
  lastLeasedAt?: Date;
  generation: number;
  createdAt: Date;
  stateChangedAt: Date;
  recycleFailures: number;
  lastError?: string;
  quarantineReason?: string;
  recycleClaim?: string;
  recycleClaimedAt?: Date;
  /** The ETag this view was read with; writes based on it are conditional on it. */
  etag?: string;
}

const toDate = (s: string | undefined) => (s === undefined ? undefined : new Date(s));
const toIso = (d: Date | undefined) => (d === undefined ? undefined : d.toISOString());

/** Parses a stored row; throws a zod error naming the field when the row is not a valid namespace. */
export function namespaceFromEntity(raw: unknown): Namespace {
  const e = namespaceEntitySchema.parse(raw);
  return dropUndefined({
    pool: e.partitionKey,
    name: e.rowKey,
    state: e.state,
    subscriptionId: e.subscriptionId,
    resourceGroup: e.resourceGroup,
    location: e.location,
    endpoint: e.endpoint,
    hybridConnection: e.hybridConnection,
    sealedKeys: e.sealedKeys,
    sessionId: e.sessionId,
    leasedAt: toDate(e.leasedAt),
    leaseExpiresAt: toDate(e.leaseExpiresAt),
    lastLeasedAt: toDate(e.lastLeasedAt),
    generation: e.generation,
    createdAt: new Date(e.createdAt),
    stateChangedAt: new Date(e.stateChangedAt),
    recycleFailures: e.recycleFailures,
    lastError: e.lastError,
    quarantineReason: e.quarantineReason,
    recycleClaim: e.recycleClaim,
    recycleClaimedAt: toDate(e.recycleClaimedAt),
    etag: e.etag,
  });
}

/** The entity to write for a namespace (validated, so an invalid state is never stored; no etag). */
export function namespaceToEntity(ns: Namespace): Omit<NamespaceEntity, 'etag'> {
  const entity = dropUndefined({
    partitionKey: ns.pool,
    rowKey: ns.name,
    state: ns.state,
    subscriptionId: ns.subscriptionId,
    resourceGroup: ns.resourceGroup,
    location: ns.location,
    endpoint: ns.endpoint,
    hybridConnection: ns.hybridConnection,
    sealedKeys: ns.sealedKeys,
    sessionId: ns.sessionId,
    leasedAt: toIso(ns.leasedAt),
    leaseExpiresAt: toIso(ns.leaseExpiresAt),
    lastLeasedAt: toIso(ns.lastLeasedAt),
    generation: ns.generation,
    createdAt: ns.createdAt.toISOString(),
    stateChangedAt: ns.stateChangedAt.toISOString(),
    recycleFailures: ns.recycleFailures,
    lastError: ns.lastError,
    quarantineReason: ns.quarantineReason,
    recycleClaim: ns.recycleClaim,
    recycleClaimedAt: toIso(ns.recycleClaimedAt),
  });
  namespaceEntitySchema.parse(entity);
  return entity;
}

/** Azure Tables stores `undefined` as a property; a Replace without it is how a field is cleared. */
function dropUndefined<T extends object>(obj: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v;
  return out as T;
}
