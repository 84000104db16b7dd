// A discrete-time (1 s) simulator of the namespace pool: sessions arrive and end, namespaces are
// created, leased, recycled and deleted, and every maintenance period the pure policy (planPool)
// decides, exactly as the maintenance orchestration will. With `arm`, ARM's limits too: a write
// token bucket per subscription, Relay's namespace-write window, and the orchestration's pacing
// (lib/pool/provisionPacing.ts, the same class) in waves. Deterministic for a given seed.
import type { PoolSubscription } from '../lib/config';
import type { NamespaceState } from '../lib/pool/namespace';
import { planPool, type DeletedName, type PoolPolicy, type PoolSnapshot } from '../lib/pool/poolPolicy';
import type { ProvisionItem, ProvisionOutcome } from '../lib/pool/maintenanceRun';
import {
  carryArmBudget,
  DEFAULT_PROVISION_PER_SUBSCRIPTION,
  ProvisionPacer,
  type SubscriptionArmBudget,
} from '../lib/pool/provisionPacing';
import { MinHeap } from '../lib/minHeap';

/** A session to simulate: arrives at `at` (seconds from the start of the measured day) and lasts `durationSeconds`. */
export interface SimSession {
  at: number;
  durationSeconds: number;
}

export type PoolMode =
  | { kind: 'policy'; policy: PoolPolicy }
  /** A fixed pool of `size` namespaces, ready at the start, never resized (the seed's example). */
  | { kind: 'static'; size: number; subscriptionId?: string };

export interface SimOptions {
  mode: PoolMode;
  /** The sessions, sorted or not; arrivals before 0 fall in the warm-up. */
  sessions: SimSession[];
  /** Measured period, seconds (a day = 86,400). */
  durationSeconds: number;
  /** Simulated before the measured period (not counted), so the pool starts warm; sessions may arrive from -warmupSeconds. */
  warmupSeconds: number;
  /** UTC time of second 0 (the hour profile is read at dayStart + t). */
  dayStart: Date;
  /** Real time for a namespace to be created (ARM), for a recycle, for a delete. */
  createSeconds: number;
  recycleSeconds: number;
  deleteSeconds: number;
  maintenanceSeconds: number;
  /** Window of the lease rate the policy reads (minutes). */
  leaseWindowMinutes: number;
  /** Seed of the generator that picks which available namespace a session gets. */
  seed: number;
  /** ARM's limits and the pacing (absent: creations are instant orders, as before). */
  arm?: SimArmLimits;
  /** Stop at the first second this many namespaces are available (SimResult.reachedAt). */
  stopWhenAvailable?: number;
}

/** ARM as the simulator models it, per subscription. */
export interface SimArmLimits {
  /** ARM's write bucket: 200 burst, 10 per second. */
  writeBurst: number;
  writeRefillPerSecond: number;
  /** Relay's namespace writes per subscription per window (~50), and the window (not published; 1 h assumed). */
  namespaceWriteLimit: number;
  namespaceWriteWindowSeconds: number;
  /** Writes one creation costs besides its namespace PUT (hybrid connection, 2 rules, 2 listKeys). */
  writesAfterCreate: number;
  /** Writes one recycle costs (arm_writes_per_session). */
  writesPerRecycle: number;
  /** The pacer's creations in flight per subscription. */
  perSubscription: number;
}

/** Azure's values (docs/capacity.md and the research note): the defaults of the emulator too. */
export const AZURE_ARM_LIMITS: SimArmLimits = {
  writeBurst: 200,
  writeRefillPerSecond: 10,
  namespaceWriteLimit: 50,
  namespaceWriteWindowSeconds: 3600,
  writesAfterCreate: 5,
  writesPerRecycle: 8,
  perSubscription: DEFAULT_PROVISION_PER_SUBSCRIPTION,
};

export interface SimResult {
  sessions: number;
  refused: number;
  peakConcurrency: number;
  /** ∫ available namespaces dt over the measured period, in hours. */
  idleNamespaceHours: number;
  /** ∫ all namespaces (any state) dt, in hours. */
  namespaceHours: number;
  created: number;
  deleted: number;
  maxRows: number;
  maxRowsBySubscription: Record<string, number>;
  /** Seconds (measured period) at which a session was refused, for reports. */
  refusedAt: number[];
  /** With `stopWhenAvailable`: the second it was reached (undefined: not within the period). */
  reachedAt?: number;
  /** With `arm`: maintenance runs, creation waves, creations deferred by the pacer, probes refused (handled 429s). */
  arm?: { runs: number; waves: number; deferred: number; refused: number; bucketWaitSeconds: number };
}

/** ARM's write bucket of one subscription, served at its refill rate once empty (429 + Retry-After, retried). */
class SimBucket {
  private tokens: number;
  private at: number;
  constructor(
    private readonly limits: SimArmLimits,
    t: number,
  ) {
    this.tokens = limits.writeBurst;
    this.at = t;
  }
  /** Takes `n` writes at `t`; returns how long the last one waits for its token (0: none). */
  take(n: number, t: number): number {
    this.tokens = Math.min(this.limits.writeBurst, this.tokens + (t - this.at) * this.limits.writeRefillPerSecond);
    this.at = t;
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : -this.tokens / this.limits.writeRefillPerSecond;
  }
}

/** Relay's fixed namespace-write window of one subscription (starts at its first write). */
class SimWindow {
  private startedAt = Number.NEGATIVE_INFINITY;
  private used = 0;
  constructor(private readonly limits: SimArmLimits) {}
  /** Takes one namespace write at `t`: the writes left after it, or the end of the window when refused. */
  take(t: number): { ok: true; remaining: number } | { ok: false; until: number } {
    if (t - this.startedAt >= this.limits.namespaceWriteWindowSeconds) {
      this.startedAt = t;
      this.used = 0;
    }
    if (this.used >= this.limits.namespaceWriteLimit)
      return { ok: false, until: this.startedAt + this.limits.namespaceWriteWindowSeconds };
    this.used++;
    return { ok: true, remaining: this.limits.namespaceWriteLimit - this.used };
  }
}

interface SimNamespace {
  name: string;
  subscriptionId: string;
  state: NamespaceState;
  createdAt: number;
  stateChangedAt: number;
  /** When the current creating/recycling/deleting step ends. */
  readyAt: number;
}

/** Small, fast, seeded PRNG (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function simulatePool(options: SimOptions): SimResult {
  const random = seededRandom(options.seed);
  const start = -options.warmupSeconds;
  const end = options.durationSeconds;
  const at = (t: number) => new Date(options.dayStart.getTime() + t * 1000);
  const namespaces = new Map<string, SimNamespace>();
  const available: string[] = [];
  const tombstones: DeletedName[] = [];
  const leaseTimes: number[] = [];
  let leaseTimesHead = 0;
  let aboveTargetSince: Date | undefined;
  // Ending sessions, by their end time.
  const endings = new MinHeap<{ end: number; name: string }>((e) => e.end);

  const result: SimResult = {
    sessions: 0,
    refused: 0,
    peakConcurrency: 0,
    idleNamespaceHours: 0,
    namespaceHours: 0,
    created: 0,
    deleted: 0,
    maxRows: 0,
    maxRowsBySubscription: {},
    refusedAt: [],
  };
  const rowsBySubscription = new Map<string, number>();
  const addRow = (ns: SimNamespace) => {
    namespaces.set(ns.name, ns);
    const n = (rowsBySubscription.get(ns.subscriptionId) ?? 0) + 1;
    rowsBySubscription.set(ns.subscriptionId, n);
    result.maxRowsBySubscription[ns.subscriptionId] = Math.max(result.maxRowsBySubscription[ns.subscriptionId] ?? 0, n);
    result.maxRows = Math.max(result.maxRows, namespaces.size);
  };
  const setState = (ns: SimNamespace, state: NamespaceState, t: number, readyAt = t) => {
    ns.state = state;
    ns.stateChangedAt = t;
    ns.readyAt = readyAt;
  };
  const removeAvailable = (name: string) => {
    const i = available.indexOf(name);
    if (i >= 0) {
      available[i] = available[available.length - 1];
      available.pop();
    }
  };

  if (options.mode.kind === 'static') {
    for (let i = 0; i < options.mode.size; i++) {
      const ns: SimNamespace = {
        name: `static-${i}`,
        subscriptionId: options.mode.subscriptionId ?? 'static',
        state: 'available',
        createdAt: start,
        stateChangedAt: start,
        readyAt: start,
      };
      addRow(ns);
      available.push(ns.name);
    }
  }

  // ARM and the maintenance run in progress (with `arm`, a run lasts as long as its waves).
  const arm = options.arm;
  const buckets = new Map<string, SimBucket>();
  const windows = new Map<string, SimWindow>();
  const bucket = (sub: string, t: number) => {
    let b = buckets.get(sub);
    if (!b) buckets.set(sub, (b = new SimBucket(arm!, t)));
    return b;
  };
  const nsWindow = (sub: string) => {
    let w = windows.get(sub);
    if (!w) windows.set(sub, (w = new SimWindow(arm!)));
    return w;
  };
  let armBudget: Record<string, SubscriptionArmBudget> = {};
  let run: { pacer: ProvisionPacer; waveEnd: number; outcomes: ProvisionOutcome[] } | undefined;
  if (arm) result.arm = { runs: 0, waves: 0, deferred: 0, refused: 0, bucketWaitSeconds: 0 };
  const startWave = (t: number) => {
    const wave = run!.pacer.nextWave();
    if (wave.length === 0) {
      const deferred = run!.pacer.deferred();
      result.arm!.deferred += deferred.length;
      armBudget = carryArmBudget(armBudget, run!.pacer.budget(), at(t).toISOString());
      run = undefined;
      return;
    }
    result.arm!.waves++;
    let end = t;
    run!.outcomes = wave.map((item) => {
      const w = nsWindow(item.subscriptionId).take(t);
      if (!w.ok) {
        result.arm!.refused++;
        return {
          name: item.name,
          subscriptionId: item.subscriptionId,
          result: 'throttled',
          arm: { refusedUntil: at(w.until).toISOString(), namespaceWritesRemaining: 0, throttled: 1 },
        };
      }
      const b = bucket(item.subscriptionId, t);
      const putWait = b.take(1, t);
      const afterWait = b.take(arm!.writesAfterCreate, t);
      result.arm!.bucketWaitSeconds += putWait + afterWait;
      const readyAt = t + Math.ceil(Math.max(putWait + options.createSeconds, afterWait));
      addRow({
        name: item.name,
        subscriptionId: item.subscriptionId,
        state: 'creating',
        createdAt: t,
        stateChangedAt: t,
        readyAt,
      });
      result.created++;
      end = Math.max(end, readyAt);
      return {
        name: item.name,
        subscriptionId: item.subscriptionId,
        result: 'available',
        arm: { namespaceWritesRemaining: w.remaining },
      };
    });
    run!.waveEnd = end;
  };

  const sessions = [...options.sessions].filter((s) => s.at >= start && s.at < end).sort((a, b) => a.at - b.at);
  let next = 0;
  let leased = 0;
  for (let t = start; t < end; t++) {
    // 1. Steps that finish now.
    for (const ns of namespaces.values()) {
      if (ns.readyAt > t) continue;
      if (ns.state === 'creating' || ns.state === 'recycling') {
        setState(ns, 'available', t);
        available.push(ns.name);
      } else if (ns.state === 'deleting') {
        namespaces.delete(ns.name);
        rowsBySubscription.set(ns.subscriptionId, (rowsBySubscription.get(ns.subscriptionId) ?? 1) - 1);
        tombstones.push({ name: ns.name, deletedAt: at(t) });
      }
    }
    // 2. Sessions that end: their namespace is recycled.
    while (endings.size > 0 && endings.peek()!.end <= t) {
      const e = endings.pop()!;
      const ns = namespaces.get(e.name)!;
      const wait = arm ? bucket(ns.subscriptionId, t).take(arm.writesPerRecycle, t) : 0;
      if (arm) result.arm!.bucketWaitSeconds += wait;
      setState(ns, 'recycling', t, t + Math.ceil(Math.max(options.recycleSeconds, wait)));
      leased--;
    }
    // 3. Maintenance: a run in progress goes on with its next wave; the timer skips while it runs.
    if (run && t >= run.waveEnd) {
      run.pacer.record(run.outcomes);
      startWave(t);
    }
    if (options.mode.kind === 'policy' && !run && (t - start) % options.maintenanceSeconds === 0) {
      const windowStart = t - options.leaseWindowMinutes * 60;
      while (leaseTimesHead < leaseTimes.length && leaseTimes[leaseTimesHead] < windowStart) leaseTimesHead++;
      const snapshot: PoolSnapshot = {
        namespaces: [...namespaces.values()].map((n) => ({
          name: n.name,
          subscriptionId: n.subscriptionId,
          state: n.state,
          createdAt: at(n.createdAt),
          stateChangedAt: at(n.stateChangedAt),
        })),
        recentlyDeleted: tombstones,
        recentLeases: { count: leaseTimes.length - leaseTimesHead, windowMinutes: options.leaseWindowMinutes },
        ...(aboveTargetSince ? { aboveTargetSince } : {}),
      };
      // As PoolMaintenance.plan: a subscription whose namespace writes are refused gets no share.
      const refused = Object.entries(armBudget).filter(
        ([, b]) => b.refusedUntil && b.refusedUntil > at(t).toISOString(),
      );
      const policy: PoolPolicy = {
        ...options.mode.policy,
        subscriptions: options.mode.policy.subscriptions.map((s) =>
          refused.some(([sub]) => sub === s.subscriptionId)
            ? { ...s, quota: Math.min(s.quota, rowsBySubscription.get(s.subscriptionId) ?? 0) }
            : s,
        ),
      };
      const plan = planPool(snapshot, policy, at(t));
      aboveTargetSince = plan.aboveTargetSince;
      if (arm) {
        const items: ProvisionItem[] = plan.create.flatMap((c) =>
          c.names.map((name) => ({
            name,
            subscriptionId: c.subscriptionId,
            resourceGroup: c.resourceGroup,
            location: c.location,
          })),
        );
        const budget: Record<string, SubscriptionArmBudget> = {};
        for (const [sub, b] of Object.entries(armBudget))
          if (b.namespaceWritesRemaining !== undefined && !refused.some(([r]) => r === sub))
            budget[sub] = { namespaceWritesRemaining: b.namespaceWritesRemaining };
        result.arm!.runs++;
        run = {
          pacer: new ProvisionPacer(items, { perSubscription: arm.perSubscription, budget }),
          waveEnd: t,
          outcomes: [],
        };
        startWave(t);
      }
      for (const c of arm ? [] : plan.create) {
        for (const name of c.names) {
          addRow({
            name,
            subscriptionId: c.subscriptionId,
            state: 'creating',
            createdAt: t,
            stateChangedAt: t,
            readyAt: t + options.createSeconds,
          });
          result.created++;
        }
      }
      for (const name of plan.delete) {
        const ns = namespaces.get(name);
        if (!ns || ns.state !== 'available') continue; // as beginDelete would refuse
        removeAvailable(name);
        setState(ns, 'deleting', t, t + options.deleteSeconds);
        result.deleted++;
      }
    }
    // 4. Arrivals.
    while (next < sessions.length && sessions[next].at <= t) {
      const s = sessions[next++];
      const measured = t >= 0;
      if (measured) result.sessions++;
      if (available.length === 0) {
        if (measured) {
          result.refused++;
          result.refusedAt.push(t);
        }
        continue;
      }
      const i = Math.floor(random() * available.length);
      const name = available[i];
      available[i] = available[available.length - 1];
      available.pop();
      setState(namespaces.get(name)!, 'leased', t, Number.POSITIVE_INFINITY);
      leaseTimes.push(t);
      leased++;
      endings.push({ end: t + Math.max(1, Math.round(s.durationSeconds)), name });
    }
    if (
      options.stopWhenAvailable !== undefined &&
      result.reachedAt === undefined &&
      available.length >= options.stopWhenAvailable
    ) {
      result.reachedAt = t;
      break;
    }
    // 5. Integrals over the measured period.
    if (t >= 0) {
      result.idleNamespaceHours += available.length / 3600;
      result.namespaceHours += namespaces.size / 3600;
      result.peakConcurrency = Math.max(result.peakConcurrency, leased);
    }
  }
  if (options.mode.kind === 'policy') {
    for (const sub of options.mode.policy.subscriptions) result.maxRowsBySubscription[sub.subscriptionId] ??= 0;
  }
  return result;
}

/**
 * The day of the benchmark: normal load 30–50 concurrent, a ramp to `peak` from 13:00 UTC over
 * `rampMinutes` (60: reached at 14:00), held until 15:00, released by 16:00.
 */
export function peakDayConcurrency(t: number, peak = 500, rampMinutes = 60): number {
  const hours = t / 3600;
  const base = 40 + 10 * Math.sin(((hours - 6) / 24) * 2 * Math.PI); // 30 at 00:00, 50 at 12:00
  const rampEnd = 13 + rampMinutes / 60;
  let extra = 0;
  if (hours >= 13 && hours < rampEnd) extra = ((hours - 13) / (rampEnd - 13)) * (peak - base);
  else if (hours >= rampEnd && hours < 15) extra = peak - base;
  else if (hours >= 15 && hours < 16) extra = (16 - hours) * (peak - base);
  return base + Math.max(0, extra);
}

/** Session lengths: 30 % 2–10 min, 50 % 10–60 min, 20 % 1–3 h (mean ≈ 43 min). */
export function sampleSessionSeconds(random: () => number): number {
  const u = random();
  const minutes = u < 0.3 ? 2 + random() * 8 : u < 0.8 ? 10 + random() * 50 : 60 + random() * 120;
  return Math.round(minutes * 60);
}

export const MEAN_SESSION_SECONDS = (0.3 * 6 + 0.5 * 35 + 0.2 * 120) * 60;

/**
 * Arrivals that make the concurrency follow `concurrency(t)`: a Poisson process of rate
 * c(t) / mean duration + max(0, c'(t)) per second (Little's law plus the growth of a ramp).
 */
export function generateSessions(
  concurrency: (t: number) => number,
  from: number,
  to: number,
  seed: number,
): SimSession[] {
  const random = seededRandom(seed);
  const out: SimSession[] = [];
  for (let t = from; t < to; t++) {
    const rate = concurrency(t) / MEAN_SESSION_SECONDS + Math.max(0, concurrency(t + 1) - concurrency(t));
    // Poisson(rate) by inversion; rates here are well below 10 per second.
    let k = 0;
    let p = Math.exp(-rate);
    let cdf = p;
    const u = random();
    while (u > cdf && k < 100) {
      k++;
      p *= rate / k;
      cdf += p;
    }
    for (let i = 0; i < k; i++) out.push({ at: t, durationSeconds: sampleSessionSeconds(random) });
  }
  return out;
}

/** The hour profile an operator would configure for a known day: each UTC hour's highest expected concurrency. */
export function hourProfileOf(concurrency: (t: number) => number): number[] {
  return Array.from({ length: 24 }, (_, h) => {
    let max = 0;
    for (let s = h * 3600; s <= (h + 1) * 3600; s += 60) max = Math.max(max, concurrency(s));
    return Math.ceil(max);
  });
}

/** `count` subscriptions of `quota` namespaces each. */
export function simSubscriptions(count: number, quota: number): PoolSubscription[] {
  return Array.from({ length: count }, (_, i) => ({
    subscriptionId: `sub-${i + 1}`,
    resourceGroup: 'rg-pool',
    location: 'westeurope',
    quota,
  }));
}
