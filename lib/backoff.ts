// The one retry backoff of the code base: exponential, capped, jittered so that a fleet that failed
// at the same second does not retry in step, honouring Retry-After, and bounded by attempts and a
// deadline. Random and clock are injectable so tests can state exact delays.

export type Jitter =
  /** No randomness: for callers that must be deterministic (tests, replayed orchestrations). */
  | 'none'
  /** Half fixed, half random: never less than half the step, so a retry is not immediate. */
  | 'equal'
  /** Anywhere between 0 and the step: the widest spread. */
  | 'full';

export interface BackoffPolicy {
  /** The first step (attempt 0), doubled per attempt. */
  baseMs: number;
  /** No step exceeds this. */
  capMs: number;
  jitter: Jitter;
}

/**
 * The delay before retry number `attempt` (0 for the first retry): `min(capMs, baseMs * 2^attempt)`,
 * jittered. `random` returns a number in [0, 1).
 */
export function delayFor(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  // 2^31 already exceeds any cap a timer accepts; clamping the exponent keeps the product finite.
  const step = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(Math.max(0, attempt), 31));
  switch (policy.jitter) {
    case 'none':
      return Math.round(step);
    case 'equal':
      return Math.round(step / 2 + (random() * step) / 2);
    case 'full':
      return Math.round(random() * step);
  }
}

/** Retry-After in seconds or as an HTTP date, in ms; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Math.round(Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export interface BackoffOptions extends BackoffPolicy {
  /** Attempts in all, the first included; `next()` answers undefined once they are spent. */
  maxAttempts?: number;
  /** Total budget from construction (or `reset`); `next()` answers undefined for a delay that would pass it. */
  deadlineMs?: number;
  random?: () => number;
  now?: () => number;
}

/**
 * The state of one retry loop: how many failures so far and the budget left. Call `next()` after
 * each failure for the delay before the next attempt (undefined: give up), `reset()` after a success.
 */
export class Backoff {
  private failureCount = 0;
  private startedAt: number;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(private readonly options: BackoffOptions) {
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
  }

  /** Failures since the start or the last reset. */
  get failures(): number {
    return this.failureCount;
  }

  /** Time left before the deadline (Infinity without one; never negative). */
  remainingMs(): number {
    if (this.options.deadlineMs === undefined) return Infinity;
    return Math.max(0, this.startedAt + this.options.deadlineMs - this.now());
  }

  /**
   * Records a failure and returns the delay before the next attempt: the server's Retry-After when
   * it gave one, else the jittered step. Undefined when the attempts or the deadline are spent.
   */
  next(retryAfterMs?: number): number | undefined {
    const attempt = this.failureCount++;
    if (this.options.maxAttempts !== undefined && this.failureCount >= this.options.maxAttempts) return undefined;
    const delay = retryAfterMs ?? delayFor(attempt, this.options, this.random);
    if (delay > this.remainingMs()) return undefined;
    return delay;
  }

  /** After a success: the next failure starts from the first step again, with the whole budget. */
  reset(): void {
    this.failureCount = 0;
    this.startedAt = this.now();
  }
}

/**
 * A retry the Durable engine runs for an activity, doubling from `baseMs`. Orchestrations replay,
 * so the engine's delays must be the same on every replay: no jitter (the durable host has none);
 * the shape is BackoffPolicy's so every retry in the code base reads the same way.
 */
export interface DurableRetryPolicy {
  baseMs: number;
  capMs?: number;
  /** Attempts in all, the first included. */
  maxAttempts: number;
}

/** Resolves after `ms`, or at once when `signal` aborts (it never rejects: the caller checks why it woke). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.min(Math.max(0, ms), 2 ** 31 - 1));
    signal?.addEventListener('abort', done, { once: true });
  });
}
