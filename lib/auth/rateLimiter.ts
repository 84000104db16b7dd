// Per-principal token bucket for POST /sessions, in memory with bounded size. It limits per process:
// in Azure every instance of the Function App keeps its own buckets, so the effective limit is
// `perMinute` times the number of instances serving a principal.
import { RateLimitedError } from '../errors';

export interface RateLimiterOptions {
  /** Sustained rate: tokens added per minute. */
  perMinute: number;
  /** Bucket size, i.e. the largest burst (default `perMinute`). */
  burst?: number;
  /** Principals tracked at most (default 10000); beyond it idle ones are forgotten first. */
  maxPrincipals?: number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class RateLimiter {
  private readonly capacity: number;
  private readonly refillPerMs: number;
  private readonly maxPrincipals: number;
  /** Map order is least recently used first: every take re-inserts its key at the end. */
  private readonly buckets = new Map<string, Bucket>();

  constructor(options: RateLimiterOptions) {
    if (!(options.perMinute > 0)) throw new Error('perMinute must be positive');
    this.capacity = options.burst ?? options.perMinute;
    if (!(this.capacity >= 1)) throw new Error('burst must be at least 1');
    this.refillPerMs = options.perMinute / 60_000;
    this.maxPrincipals = Math.max(1, options.maxPrincipals ?? 10_000);
  }

  /** Spends one token of `principalId`'s bucket, or says how long until one is available. */
  take(principalId: string, nowMs: number = Date.now()): TakeResult {
    const bucket = this.refilled(principalId, nowMs);
    this.buckets.delete(principalId);
    this.buckets.set(principalId, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true };
    }
    const waitMs = (1 - bucket.tokens) / this.refillPerMs;
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  /** `take`, throwing RateLimitedError (429 with Retry-After) when the bucket is empty. */
  enforce(principalId: string, nowMs: number = Date.now()): void {
    const result = this.take(principalId, nowMs);
    if (!result.ok) {
      throw new RateLimitedError(
        `Too many requests; try again in ${result.retryAfterSeconds} s.`,
        result.retryAfterSeconds,
        {
          op: 'rateLimiter.enforce',
        },
      );
    }
  }

  /** Principals currently tracked (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }

  private refilled(principalId: string, nowMs: number): Bucket {
    const existing = this.buckets.get(principalId);
    if (!existing) {
      this.makeRoom(nowMs);
      return { tokens: this.capacity, updatedMs: nowMs };
    }
    // A clock that steps back never adds tokens.
    const elapsedMs = Math.max(0, nowMs - existing.updatedMs);
    existing.tokens = Math.min(this.capacity, existing.tokens + elapsedMs * this.refillPerMs);
    existing.updatedMs = Math.max(existing.updatedMs, nowMs);
    return existing;
  }

  /**
   * Frees a slot for a new principal. A bucket that has refilled completely is the same as no bucket,
   * so dropping those loses nothing; only when every tracked principal is active is the least
   * recently used one forgotten (it then starts over with a full bucket: lenient, never stricter).
   */
  private makeRoom(nowMs: number): void {
    if (this.buckets.size < this.maxPrincipals) return;
    for (const [id, b] of this.buckets) {
      if (b.tokens + Math.max(0, nowMs - b.updatedMs) * this.refillPerMs >= this.capacity) this.buckets.delete(id);
    }
    while (this.buckets.size >= this.maxPrincipals) {
      const oldest = this.buckets.keys().next().value;
      if (oldest === undefined) break;
      this.buckets.delete(oldest);
    }
  }
}
