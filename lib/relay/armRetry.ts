// How RelayManager talks to ARM through faults: which failures are transient (429, 5xx, 408,
// timeouts, dropped connections), the typed error for every other one, and the retry loop that
// repeats a call with lib/backoff.ts's jittered backoff, honouring Retry-After, within a deadline.
import { Backoff, parseRetryAfter } from '../backoff';
import {
  RelayArmError,
  RelayArmUnavailableError,
  RelayConflictError,
  RelayQuotaExceededError,
  RelayResourceNotFoundError,
  RelayThrottledError,
  type RelayArmErrorOptions,
} from '../errors';

export interface RetryPolicy {
  /** Attempts per call, the first included (default 6). */
  maxAttempts: number;
  /** First backoff delay (default 500), doubled per attempt, equal-jittered, capped at `maxDelayMs` (default 20000). */
  initialDelayMs: number;
  maxDelayMs: number;
  /** No call (with its retries) runs longer than this (default 120000). */
  deadlineMs: number;
  /** One request longer than this is aborted and counts as transient (default 60000). */
  attemptTimeoutMs: number;
  /**
   * A 429 whose Retry-After is longer than this (or than the deadline left) is not waited for: the
   * call fails at once with RelayThrottledError, so the caller defers the work (default 60000).
   */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  maxAttempts: 6,
  initialDelayMs: 500,
  maxDelayMs: 20_000,
  deadlineMs: 120_000,
  attemptTimeoutMs: 60_000,
  maxRetryAfterMs: 60_000,
});

interface ArmFault {
  statusCode?: number;
  code?: string;
  name?: string;
  message: string;
  retryAfterMs?: number;
}

const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ETIMEDOUT',
  'ECONNREFUSED',
  'EPIPE',
  'EAI_AGAIN',
  'ECONNABORTED',
  'REQUEST_SEND_ERROR',
]);

function describeFault(err: unknown): ArmFault {
  if (typeof err !== 'object' || err === null) return { message: String(err) };
  const e = err as {
    statusCode?: unknown;
    code?: unknown;
    name?: unknown;
    message?: unknown;
    response?: { headers?: { get?: (n: string) => string | undefined } };
  };
  const retryAfter = typeof e.response?.headers?.get === 'function' ? e.response.headers.get('retry-after') : undefined;
  return {
    statusCode: typeof e.statusCode === 'number' ? e.statusCode : undefined,
    code: typeof e.code === 'string' ? e.code : undefined,
    name: typeof e.name === 'string' ? e.name : undefined,
    message: typeof e.message === 'string' ? e.message : 'unknown error',
    retryAfterMs: parseRetryAfter(retryAfter),
  };
}

function isTransient(f: ArmFault): boolean {
  if (f.statusCode !== undefined) return f.statusCode === 408 || f.statusCode === 429 || f.statusCode >= 500;
  if (f.name === 'AbortError' || f.name === 'TimeoutError') return true;
  return f.code !== undefined && TRANSIENT_NETWORK_CODES.has(f.code);
}

function toTypedError(operation: string, f: ArmFault, cause: unknown): RelayArmError {
  const options: RelayArmErrorOptions = {
    operation,
    armStatus: f.statusCode,
    armCode: f.code,
    cause,
    op: `relayManager.${operation}`,
  };
  const detail = `${operation} failed${f.statusCode ? ` with ${f.statusCode}` : ''}${f.code ? ` ${f.code}` : ''}: ${f.message}`;
  if (f.code === 'QuotaExceeded' || /TooManyNamespace|quota/i.test(f.message))
    return new RelayQuotaExceededError(detail, options);
  if (f.statusCode === 404) return new RelayResourceNotFoundError(detail, options);
  if (f.statusCode === 409) return new RelayConflictError(detail, options);
  return new RelayArmError(detail, options);
}

export interface CallArmOptions {
  policy: RetryPolicy;
  sleep: (ms: number) => Promise<void>;
  /** Injected for tests (the jitter); default Math.random. */
  random?: () => number;
  /** Called before every request, retries included (RelayManager counts reads and writes). */
  onAttempt?: () => void;
  /** Called for every 429 (retried or not): throttling stays visible even when it is handled. */
  onThrottled?: () => void;
}

/**
 * Runs `fn` until it succeeds, fails for good (a typed RelayArmError), or the transient faults
 * outlast the attempts or the deadline (RelayArmUnavailableError). Each attempt gets an abort
 * signal bounded by the attempt timeout and the time left.
 */
export async function callArm<T>(
  operation: string,
  fn: (signal: AbortSignal) => Promise<T>,
  options: CallArmOptions,
): Promise<T> {
  const { policy } = options;
  const backoff = new Backoff({
    baseMs: policy.initialDelayMs,
    capMs: policy.maxDelayMs,
    jitter: 'equal',
    maxAttempts: policy.maxAttempts,
    deadlineMs: policy.deadlineMs,
    random: options.random,
  });
  const random = options.random ?? Math.random;
  let attempts = 0;
  for (;;) {
    attempts++;
    options.onAttempt?.();
    try {
      return await fn(AbortSignal.timeout(Math.max(1, Math.min(policy.attemptTimeoutMs, backoff.remainingMs()))));
    } catch (err) {
      if (err instanceof RelayArmError) throw err;
      const fault = describeFault(err);
      if (!isTransient(fault)) throw toTypedError(operation, fault, err);
      if (fault.statusCode === 429) options.onThrottled?.();
      const throttledFor = fault.statusCode === 429 ? fault.retryAfterMs : undefined;
      if (
        throttledFor !== undefined &&
        (throttledFor > policy.maxRetryAfterMs || throttledFor > backoff.remainingMs())
      ) {
        throw new RelayThrottledError(
          `${operation} throttled by ARM for ${Math.ceil(throttledFor / 1000)} s (${fault.code ?? '429'}: ${fault.message})`,
          {
            operation,
            armStatus: 429,
            armCode: fault.code,
            cause: err,
            op: `relayManager.${operation}`,
            retryAfterMs: throttledFor,
          },
        );
      }
      let delay = backoff.next(fault.retryAfterMs);
      if (delay !== undefined && throttledFor !== undefined) {
        // Never sooner than ARM says, and up to half again later: callers that drew their 429s from
        // one empty bucket do not all come back on the same tick (only one of them would get in).
        delay = Math.min(delay + Math.round(random() * (delay / 2)), backoff.remainingMs());
      }
      if (delay === undefined) {
        throw new RelayArmUnavailableError(
          `${operation} still failing after ${attempts} attempt(s) (last: ${fault.statusCode ?? fault.code ?? fault.name}: ${fault.message})`,
          {
            operation,
            armStatus: fault.statusCode,
            armCode: fault.code,
            cause: err,
            op: `relayManager.${operation}`,
          },
        );
      }
      await options.sleep(delay);
    }
  }
}
