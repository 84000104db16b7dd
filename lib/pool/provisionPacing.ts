// How one maintenance run spends ARM's budget on namespace creations: in waves of at most
// `perSubscription` creations per subscription (ARM's write bucket holds 200 and refills 10/s, and
// every creation costs ~6 writes and a dozen polls), never past the namespace writes Relay's
// `x-ms-ratelimit-remaining-subscription-resource-requests` header says are left (~50 per window),
// never into a subscription whose namespace writes were refused with a Retry-After not yet over.
// Pure and deterministic (no clock, no I/O): the maintenance orchestration replays it from its
// activities' outcomes, the integration tests and the pool simulator run the same rules.
import type { ProvisionItem, ProvisionOutcome } from './maintenanceRun';

/** What ARM said of one subscription's namespace writes, as the next run needs it. */
export interface SubscriptionArmBudget {
  /** Namespace writes Relay said were left in its window (absent: never said). */
  namespaceWritesRemaining?: number;
  /** Relay refused a namespace write until then (its Retry-After). */
  refusedUntil?: string;
  /** 429s drawn while provisioning in this run (all of them handled: retried or deferred). */
  throttled?: number;
}

export interface ProvisionPacing {
  /** Creations in flight at once per subscription (one wave). */
  perSubscription: number;
  /** What the last run learnt per subscription (from its run record). */
  budget: Record<string, SubscriptionArmBudget>;
}

/** Default `perSubscription`: 20 × ~6 writes stays inside ARM's 200-write burst, ~10 polls/s inside its 25 reads/s. */
export const DEFAULT_PROVISION_PER_SUBSCRIPTION = 20;

/** What a provision activity reports of ARM's limits (ProvisionOutcome.arm). */
export interface ProvisionArmReport {
  /** Relay's namespace writes left, read off this activity's own namespace PUT. */
  namespaceWritesRemaining?: number;
  /** The PUT was refused (429) until then. */
  refusedUntil?: string;
  /** 429s this activity's calls drew (retried ones included). */
  throttled?: number;
}

interface SubscriptionQueue {
  items: ProvisionItem[];
  remaining?: number;
  refusedUntil?: string;
  /** Only one creation may go while the budget is known spent, at the start of a run: a probe. */
  probed: boolean;
  throttled: number;
  deferredReason?: string;
}

export class ProvisionPacer {
  private readonly subs = new Map<string, SubscriptionQueue>();
  private readonly perSubscription: number;
  private waves = 0;

  constructor(items: readonly ProvisionItem[], pacing: ProvisionPacing) {
    this.perSubscription = Math.max(1, Math.floor(pacing.perSubscription));
    for (const item of items) {
      let q = this.subs.get(item.subscriptionId);
      if (!q) {
        const b = pacing.budget[item.subscriptionId] ?? {};
        q = {
          items: [],
          ...(b.namespaceWritesRemaining !== undefined ? { remaining: b.namespaceWritesRemaining } : {}),
          ...(b.refusedUntil ? { refusedUntil: b.refusedUntil } : {}),
          probed: false,
          throttled: 0,
        };
        this.subs.set(item.subscriptionId, q);
      }
      q.items.push(item);
    }
  }

  /**
   * The next wave: per subscription, up to `perSubscription` items, no more than its namespace
   * writes left (a retry of an existing row costs none: it only finishes the row), one probe when
   * the last run found the budget spent and nothing since said otherwise. Empty: the run is done.
   */
  nextWave(): ProvisionItem[] {
    const wave: ProvisionItem[] = [];
    for (const [sub, q] of this.subs) {
      if (q.items.length === 0 || q.deferredReason) continue;
      if (q.refusedUntil) {
        q.deferredReason = `subscription ${sub}: Relay refused namespace writes until ${q.refusedUntil}`;
        continue;
      }
      let allowed = this.perSubscription;
      if (q.remaining !== undefined && q.remaining <= 0) {
        if (this.waves > 0 || q.probed) {
          q.deferredReason = `subscription ${sub}: no Relay namespace write left in its window (x-ms-ratelimit-remaining-subscription-resource-requests 0)`;
          continue;
        }
        q.probed = true;
        allowed = 1;
      }
      let writes = q.remaining === undefined || q.remaining <= 0 ? allowed : Math.min(allowed, q.remaining);
      const next: ProvisionItem[] = [];
      const rest: ProvisionItem[] = [];
      for (const item of q.items) {
        if (next.length < allowed && (item.retry || writes > 0)) {
          next.push(item);
          if (!item.retry) writes--;
        } else rest.push(item);
      }
      q.items = rest;
      wave.push(...next);
    }
    if (wave.length > 0) this.waves++;
    return wave;
  }

  /** Reads a wave's outcomes: the lowest namespace-write count any reported, and any refusal. */
  record(outcomes: readonly ProvisionOutcome[]): void {
    const lowest = new Map<string, number>();
    for (const o of outcomes) {
      const q = this.subs.get(o.subscriptionId);
      if (!q || !o.arm) continue;
      q.throttled += o.arm.throttled ?? 0;
      if (o.arm.refusedUntil && (!q.refusedUntil || o.arm.refusedUntil > q.refusedUntil))
        q.refusedUntil = o.arm.refusedUntil;
      if (o.arm.namespaceWritesRemaining !== undefined)
        lowest.set(
          o.subscriptionId,
          Math.min(lowest.get(o.subscriptionId) ?? Infinity, o.arm.namespaceWritesRemaining),
        );
    }
    for (const [sub, n] of lowest) {
      const q = this.subs.get(sub)!;
      q.remaining = n;
    }
  }

  /** Items never started, as `deferred` outcomes naming why (a later run plans them again). */
  deferred(): ProvisionOutcome[] {
    const out: ProvisionOutcome[] = [];
    for (const [sub, q] of this.subs)
      for (const item of q.items)
        out.push({
          name: item.name,
          subscriptionId: sub,
          result: 'deferred',
          error: q.deferredReason ?? 'not started',
        });
    return out;
  }

  /** One line per subscription whose creations were deferred (for the log and the run record's reasons). */
  deferredReasons(): string[] {
    const out: string[] = [];
    for (const q of this.subs.values())
      if (q.deferredReason && q.items.length > 0)
        out.push(`${q.deferredReason}: ${q.items.length} creation(s) deferred`);
    return out;
  }

  /** What the run learnt per subscription, for the run record (and so for the next run's plan). */
  budget(): Record<string, SubscriptionArmBudget> {
    const out: Record<string, SubscriptionArmBudget> = {};
    for (const [sub, q] of this.subs) {
      const b: SubscriptionArmBudget = {
        ...(q.remaining !== undefined ? { namespaceWritesRemaining: q.remaining } : {}),
        ...(q.refusedUntil ? { refusedUntil: q.refusedUntil } : {}),
        ...(q.throttled > 0 ? { throttled: q.throttled } : {}),
      };
      if (Object.keys(b).length > 0) out[sub] = b;
    }
    return out;
  }

  /** Waves started so far. */
  get waveCount(): number {
    return this.waves;
  }
}

/**
 * The budget the next plan starts from: this run's observations over the last record's, refusals
 * already over at `now` dropped (a spent count is kept: the next run probes with one creation). Pure.
 */
export function carryArmBudget(
  last: Record<string, SubscriptionArmBudget> | undefined,
  run: Record<string, SubscriptionArmBudget>,
  now: string,
): Record<string, SubscriptionArmBudget> {
  const out: Record<string, SubscriptionArmBudget> = {};
  for (const [sub, b] of Object.entries({ ...(last ?? {}), ...run })) {
    const kept: SubscriptionArmBudget = {
      ...(b.namespaceWritesRemaining !== undefined ? { namespaceWritesRemaining: b.namespaceWritesRemaining } : {}),
      ...(b.refusedUntil && b.refusedUntil > now ? { refusedUntil: b.refusedUntil } : {}),
      ...(run[sub]?.throttled ? { throttled: run[sub].throttled } : {}),
    };
    if (Object.keys(kept).length > 0) out[sub] = kept;
  }
  return out;
}
