// ARM request throttling as Azure applies it since 2024: token buckets per subscription and
// principal per operation kind (reads, writes, deletes), a global per-subscription bucket of 15× each,
// the x-ms-ratelimit-remaining-* headers on every answer, and 429 + Retry-After when a bucket is
// empty; plus Microsoft.Relay's own lower limit on namespace writes (a fixed window per subscription).

export type RequestKind = 'reads' | 'writes' | 'deletes';

export interface BucketLimit {
  /** Tokens when full (the burst). */
  burst: number;
  /** Tokens added per second of (scaled) time. */
  refillPerSecond: number;
}

export interface ThrottlingOptions {
  /** Default true. `false` answers every request and sends no rate-limit headers. */
  enabled?: boolean;
  /** Per subscription and principal (ARM: reads 250 / 25 per s, writes 200 / 10, deletes 200 / 10). */
  reads?: BucketLimit;
  writes?: BucketLimit;
  deletes?: BucketLimit;
  /** The global bucket of a subscription across principals, as a multiple of the per-principal one (ARM: 15). */
  globalMultiplier?: number;
  /** Namespace PUT/PATCH per subscription per window (recorded real traffic: 49 then 48 remaining, so ~50). */
  namespaceWriteLimit?: number;
  /** The window of `namespaceWriteLimit`, in unscaled ms (not published; default one hour). */
  namespaceWriteWindowMs?: number;
}

export const ARM_LIMITS: Record<RequestKind, BucketLimit> = {
  reads: { burst: 250, refillPerSecond: 25 },
  writes: { burst: 200, refillPerSecond: 10 },
  deletes: { burst: 200, refillPerSecond: 10 },
};
export const DEFAULT_NAMESPACE_WRITE_LIMIT = 50;
export const DEFAULT_NAMESPACE_WRITE_WINDOW_MS = 3_600_000;

export type ThrottleDecision =
  | { ok: true; headers: Record<string, string> }
  | { ok: false; headers: Record<string, string>; retryAfterMs: number; code: string; message: string };

class TokenBucket {
  private tokens: number;
  private at: number;
  constructor(
    private readonly capacity: number,
    private readonly perMs: number,
    now: number,
  ) {
    this.tokens = capacity;
    this.at = now;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.capacity, this.tokens + (now - this.at) * this.perMs);
    this.at = now;
  }

  /** How long until one token is there (0 if now). */
  waitMs(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil((1 - this.tokens) / this.perMs);
  }

  take(): void {
    this.tokens -= 1;
  }

  remaining(): number {
    return Math.max(0, Math.floor(this.tokens));
  }
}

interface Window {
  startedAt: number;
  used: number;
}

export class ArmThrottle {
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly windows = new Map<string, Window>();
  private readonly enabled: boolean;
  private readonly limits: Record<RequestKind, BucketLimit>;
  private readonly globalMultiplier: number;
  private readonly nsLimit: number;
  private readonly nsWindowMs: number;

  /** `timeScale` < 1 runs ARM's clock faster: buckets refill and windows pass 1/timeScale times sooner. */
  constructor(
    options: ThrottlingOptions,
    private readonly timeScale: number,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.enabled = options.enabled ?? true;
    this.limits = {
      reads: options.reads ?? ARM_LIMITS.reads,
      writes: options.writes ?? ARM_LIMITS.writes,
      deletes: options.deletes ?? ARM_LIMITS.deletes,
    };
    this.globalMultiplier = options.globalMultiplier ?? 15;
    this.nsLimit = options.namespaceWriteLimit ?? DEFAULT_NAMESPACE_WRITE_LIMIT;
    this.nsWindowMs = (options.namespaceWriteWindowMs ?? DEFAULT_NAMESPACE_WRITE_WINDOW_MS) * timeScale;
  }

  /**
   * Takes a token for one request (and one of the namespace-write window when `namespaceWrite`),
   * or says how long to wait. A refused request takes nothing, as ARM counts only what it serves.
   */
  admit(subscriptionId: string, principal: string, kind: RequestKind, namespaceWrite: boolean): ThrottleDecision {
    if (!this.enabled) return { ok: true, headers: {} };
    const now = this.nowMs();
    const sub = subscriptionId.toLowerCase();
    const mine = this.bucket(`${sub}|${principal}|${kind}`, this.limits[kind], 1, now);
    const global = this.bucket(`${sub}|*|${kind}`, this.limits[kind], this.globalMultiplier, now);
    const headers: Record<string, string> = {};
    const wait = Math.max(mine.waitMs(now), global.waitMs(now));
    if (wait > 0) {
      headers[`x-ms-ratelimit-remaining-subscription-${kind}`] = String(mine.remaining());
      headers[`x-ms-ratelimit-remaining-subscription-global-${kind}`] = String(global.remaining());
      const seconds = this.retryAfterText(wait);
      return {
        ok: false,
        headers: { ...headers, 'retry-after': seconds },
        retryAfterMs: wait,
        code: 'SubscriptionRequestsThrottled',
        message: `Number of '${kind.replace(/s$/, '')}' requests for subscription '${subscriptionId}' actor '${principal}' exceeded. Please try after '${seconds}' seconds after which the limit would be reset.`,
      };
    }
    let window: Window | undefined;
    if (namespaceWrite) {
      window = this.windows.get(sub);
      if (!window || now - window.startedAt >= this.nsWindowMs)
        this.windows.set(sub, (window = { startedAt: now, used: 0 }));
      if (window.used >= this.nsLimit) {
        const retryAfterMs = Math.max(1, window.startedAt + this.nsWindowMs - now);
        const seconds = this.retryAfterText(retryAfterMs);
        return {
          ok: false,
          headers: { 'x-ms-ratelimit-remaining-subscription-resource-requests': '0', 'retry-after': seconds },
          retryAfterMs,
          code: 'TooManyRequests',
          message: `The subscription '${subscriptionId}' has reached the limit of ${this.nsLimit} Microsoft.Relay namespace writes in its current window. Please try after '${seconds}' seconds.`,
        };
      }
    }
    mine.take();
    global.take();
    headers[`x-ms-ratelimit-remaining-subscription-${kind}`] = String(mine.remaining());
    headers[`x-ms-ratelimit-remaining-subscription-global-${kind}`] = String(global.remaining());
    if (window) {
      window.used++;
      headers['x-ms-ratelimit-remaining-subscription-resource-requests'] = String(this.nsLimit - window.used);
    }
    return { ok: true, headers };
  }

  private bucket(key: string, limit: BucketLimit, multiplier: number, now: number): TokenBucket {
    let b = this.buckets.get(key);
    if (!b) {
      b = new TokenBucket(limit.burst * multiplier, (limit.refillPerSecond * multiplier) / 1000 / this.timeScale, now);
      this.buckets.set(key, b);
    }
    return b;
  }

  /** Whole seconds as ARM sends them; under a time scale the exact scaled value (ms precision). */
  private retryAfterText(ms: number): string {
    if (this.timeScale === 1) return String(Math.max(1, Math.ceil(ms / 1000)));
    return String(Math.max(0.001, Math.ceil(ms) / 1000));
  }
}
