// The closed registry of errors: every stable `code` the API can answer with, its HTTP status, the
// one class that raises it, the one mapping of any error to an RFC 9457 problem document
// (`toProblem`) and the one way to turn anything thrown into text (`describeError`).
// lib/ throws these; functions/ maps them with `toProblem`; docs/api.md lists the same table.
import { randomUUID } from 'node:crypto';
import { redactSecrets } from './auth/logRedaction';

export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance?: string;
  correlationId?: string;
  errors?: Array<{ path: string; message: string }>;
  [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
const PROBLEM_TYPE_BASE = 'https://relay-broker.dev/problems/';

// ---------------------------------------------------------------------------------------------
// The registry

/**
 * Every code the API can answer with: its HTTP status and the problem's title. Closed: a code not
 * here does not compile, and each has exactly one class below (`internal_error` is `toProblem`'s
 * answer to anything that is not a BrokerError). docs/api.md lists the same table (tested).
 */
export const ERRORS = {
  validation_failed: { status: 400, title: 'The request is not valid' },
  malformed_json: { status: 400, title: 'The request body is not valid JSON' },
  unauthenticated: { status: 401, title: 'Authentication is required' },
  role_required: { status: 403, title: 'Not allowed' },
  device_not_granted: { status: 403, title: 'Not allowed' },
  invalid_ready_token: { status: 403, title: 'Not allowed' },
  device_refused: { status: 403, title: 'The device refused the session' },
  not_found: { status: 404, title: 'Not found' },
  device_not_found: { status: 404, title: 'Not found' },
  session_not_found: { status: 404, title: 'Not found' },
  grant_not_found: { status: 404, title: 'Not found' },
  namespace_not_found: { status: 404, title: 'Not found' },
  relay_resource_not_found: { status: 404, title: 'The Relay resource does not exist' },
  device_exists: { status: 409, title: 'Conflict with the current state' },
  device_being_deleted: { status: 409, title: 'Conflict with the current state' },
  session_exists: { status: 409, title: 'Conflict with the current state' },
  session_not_pending: { status: 409, title: 'Conflict with the current state' },
  namespace_exists: { status: 409, title: 'Conflict with the current state' },
  concurrent_update: { status: 409, title: 'The resource was changed by someone else' },
  invalid_transition: { status: 409, title: 'The transition is not allowed' },
  relay_conflict: { status: 409, title: 'The Relay resource is in a conflicting state' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: 'The request body must be application/json' },
  rate_limited: { status: 429, title: 'Too many requests' },
  too_many_sessions: { status: 429, title: 'Too many open sessions' },
  internal_error: { status: 500, title: 'Internal error' },
  sealed_data_invalid: { status: 500, title: 'Stored secret could not be opened' },
  auth_keys_unavailable: { status: 502, title: 'An Azure dependency failed' },
  session_ended: { status: 502, title: 'An Azure dependency failed' },
  session_failed: { status: 502, title: 'An Azure dependency failed' },
  relay_arm_failed: { status: 502, title: 'An Azure Relay management call failed' },
  relay_handshake_failed: { status: 502, title: 'The relay refused or failed the connection' },
  pool_exhausted: { status: 503, title: 'No relay namespace is available' },
  relay_arm_unavailable: { status: 503, title: 'Azure Relay management is unavailable; try again later' },
  relay_arm_throttled: {
    status: 503,
    title: 'Azure Resource Manager is throttling the Relay subscription; try again later',
  },
  device_offline: { status: 503, title: 'The device is offline' },
  relay_quota_exceeded: { status: 503, title: 'The subscription has no Relay namespace quota left' },
  service_busy: { status: 503, title: 'The service is busy; try again shortly' },
  device_not_ready: { status: 504, title: 'The device did not answer in time' },
  relay_activation_timeout: { status: 504, title: 'The Relay namespace did not finish activating' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERRORS;
/** The codes answered with HTTP status `S`. */
export type ErrorCodeWithStatus<S extends number> = {
  [C in ErrorCode]: (typeof ERRORS)[C]['status'] extends S ? C : never;
}[ErrorCode];

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}

export interface BrokerErrorOptions {
  /** Logical location of the failure, e.g. `namespaceStore.lease` (boundary-style op tag). */
  op?: string;
  cause?: unknown;
  /** Extra members of the problem document (must never hold a secret). */
  extensions?: Record<string, unknown>;
  /** Response headers that go with the problem, e.g. Retry-After. */
  headers?: Record<string, string>;
}

/**
 * Base of every error the domain raises on purpose. A subclass names its code; status and title
 * come from ERRORS. `detail` is shown to the caller: no secrets.
 */
export abstract class BrokerError extends Error {
  abstract readonly code: Exclude<ErrorCode, 'internal_error'>;
  readonly op?: string;
  readonly extensions: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(detail: string, options: BrokerErrorOptions = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.op = options.op;
    this.extensions = options.extensions ?? {};
    this.headers = options.headers ?? {};
  }

  get status(): number {
    return ERRORS[this.code].status;
  }

  get title(): string {
    return ERRORS[this.code].title;
  }
}

const retryAfterHeader = (seconds: number): Record<string, string> => ({
  'retry-after': String(Math.max(1, Math.ceil(seconds))),
});

// ---------------------------------------------------------------------------------------------
// 400, 401, 413, 415, 429

export interface FieldError {
  path: string;
  message: string;
}

export class ValidationError extends BrokerError {
  readonly code = 'validation_failed';
  constructor(
    detail: string,
    readonly fieldErrors: FieldError[] = [],
    options?: BrokerErrorOptions,
  ) {
    super(detail, options);
  }
}

export class MalformedJsonError extends BrokerError {
  readonly code = 'malformed_json';
}

export class PayloadTooLargeError extends BrokerError {
  readonly code = 'payload_too_large';
}

export class UnsupportedMediaTypeError extends BrokerError {
  readonly code = 'unsupported_media_type';
}

export class UnauthenticatedError extends BrokerError {
  readonly code = 'unauthenticated';
  constructor(detail: string, options: BrokerErrorOptions = {}) {
    super(detail, {
      ...options,
      headers: { 'www-authenticate': 'Bearer error="invalid_token"', ...(options.headers ?? {}) },
    });
  }
}

export class RateLimitedError extends BrokerError {
  readonly code = 'rate_limited';
  constructor(detail: string, retryAfterSeconds: number, options: BrokerErrorOptions = {}) {
    super(detail, { ...options, headers: retryAfterHeader(retryAfterSeconds) });
  }
}

/** The operator holds SESSION_MAX_PER_PRINCIPAL open sessions already: one must end first. */
export class TooManySessionsError extends BrokerError {
  readonly code = 'too_many_sessions';
  constructor(detail: string, openSessions: number, cap: number, options: BrokerErrorOptions = {}) {
    super(detail, { ...options, extensions: { ...options.extensions, openSessions, cap } });
  }
}

// ---------------------------------------------------------------------------------------------
// 403: a base per status so callers can catch "any 403"; the code is the subclass's.

export abstract class ForbiddenError extends BrokerError {
  abstract override readonly code: ErrorCodeWithStatus<403>;
}

/** The principal lacks the role the call needs. */
export class RoleRequiredError extends ForbiddenError {
  readonly code = 'role_required';
}

export class DeviceNotGrantedError extends ForbiddenError {
  readonly code = 'device_not_granted';
}

export class InvalidReadyTokenError extends ForbiddenError {
  readonly code = 'invalid_ready_token';
}

// ---------------------------------------------------------------------------------------------
// 404

export abstract class NotFoundError extends BrokerError {
  abstract override readonly code: ErrorCodeWithStatus<404>;
}

/** No operation serves the request's path and method (the API's catch-all route). */
export class RouteNotFoundError extends NotFoundError {
  readonly code = 'not_found';
}

export class DeviceNotFoundError extends NotFoundError {
  readonly code = 'device_not_found';
}

export class SessionNotFoundError extends NotFoundError {
  readonly code = 'session_not_found';
}

export class GrantNotFoundError extends NotFoundError {
  readonly code = 'grant_not_found';
}

/** No row of that name in the pool's table. */
export class NamespaceNotFoundError extends NotFoundError {
  readonly code = 'namespace_not_found';
}

// ---------------------------------------------------------------------------------------------
// 409

export abstract class ConflictError extends BrokerError {
  abstract override readonly code: ErrorCodeWithStatus<409>;
}

export class DeviceExistsError extends ConflictError {
  readonly code = 'device_exists';
}

/** A device of that id was deleted moments ago and its queue is still going. */
export class DeviceBeingDeletedError extends ConflictError {
  readonly code = 'device_being_deleted';
}

export class SessionExistsError extends ConflictError {
  readonly code = 'session_exists';
}

/** The device answered a session that no longer waits for it. */
export class SessionNotPendingError extends ConflictError {
  readonly code = 'session_not_pending';
}

/** The name is taken in the pool's table by another namespace or state. */
export class NamespaceExistsError extends ConflictError {
  readonly code = 'namespace_exists';
}

/** A write lost an optimistic-concurrency race (ETag mismatch) more often than it retries. */
export class ConcurrencyError extends ConflictError {
  readonly code = 'concurrent_update';
}

/** A state machine refused a transition. */
export class InvalidTransitionError extends ConflictError {
  readonly code = 'invalid_transition';
}

// ---------------------------------------------------------------------------------------------
// 500, 502, 503, 504

/** A sealed secret at rest could not be opened (unknown format, truncated, wrong key, tampered). */
export class SealedDataError extends BrokerError {
  readonly code = 'sealed_data_invalid';
}

export class PoolExhaustedError extends BrokerError {
  readonly code = 'pool_exhausted';
  constructor(detail: string, retryAfterSeconds = 30, options: BrokerErrorOptions = {}) {
    super(detail, { ...options, headers: retryAfterHeader(retryAfterSeconds) });
  }
}

export class DeviceNotReadyError extends BrokerError {
  readonly code = 'device_not_ready';
}

/** The device's agent has not reported for longer than the offline threshold: an open fails at once. */
export class DeviceOfflineError extends BrokerError {
  readonly code = 'device_offline';
}

/** A dependency (the token issuer, the device, the orchestration) failed in a way a retry did not fix. */
export abstract class UpstreamError extends BrokerError {
  abstract override readonly code: ErrorCodeWithStatus<502>;
}

/**
 * Storage or the orchestration runtime failed transiently (timeout, 429, 5xx, a dropped connection)
 * past its client's own retries: load, not a fault of the request, so 503 with Retry-After.
 */
export class ServiceBusyError extends BrokerError {
  readonly code = 'service_busy';
  constructor(detail: string, retryAfterSeconds = 2, options: BrokerErrorOptions = {}) {
    super(detail, { ...options, headers: retryAfterHeader(retryAfterSeconds) });
  }
}

const TRANSIENT_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'REQUEST_SEND_ERROR',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
]);

/**
 * Whether a failure that is not a BrokerError says "busy, try again": an Azure SDK RestError with
 * 408/429/5xx, a network error or timeout, or the durable client's "unexpected status code: 5xx"
 * (its answer when the runtime's own storage write failed). Follows `cause`.
 */
export function isTransientFault(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || err instanceof BrokerError || depth > 4) return false;
  const e = err as Error & { statusCode?: unknown; code?: unknown; cause?: unknown };
  if (err.name === 'AbortError' || err.name === 'TimeoutError') return true;
  if (typeof e.statusCode === 'number') return TRANSIENT_STATUSES.has(e.statusCode);
  if (typeof e.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
  const durable = /unexpected status code: (\d{3})/.exec(err.message);
  if (durable) return TRANSIENT_STATUSES.has(Number(durable[1]));
  return isTransientFault(e.cause, depth + 1);
}

/** The token issuer's signing keys could not be fetched. */
export class AuthKeysUnavailableError extends UpstreamError {
  readonly code = 'auth_keys_unavailable';
}

/**
 * The device's agent refused the session; the detail carries its reason (the port is not in its
 * --allow list, it could not open its relay listener): a decision of the device, not an Azure fault.
 */
export class DeviceRefusedError extends BrokerError {
  readonly code = 'device_refused';
}

/** The session was ended before it became ready. */
export class SessionEndedError extends UpstreamError {
  readonly code = 'session_ended';
}

/** The session could not be opened; its namespace went back to the pool. */
export class SessionFailedError extends UpstreamError {
  readonly code = 'session_failed';
}

// ---------------------------------------------------------------------------------------------
// Relay: management (ARM) and data plane (the WebSocket handshake)

export type RelayArmCode = Extract<ErrorCode, `relay_${string}`>;

export interface RelayArmErrorOptions extends BrokerErrorOptions {
  operation: string;
  armStatus?: number;
  armCode?: string;
}

/** An ARM call for Relay failed and retrying would not help. The base of the family below. */
export class RelayArmError extends BrokerError {
  readonly code: Exclude<RelayArmCode, 'relay_handshake_failed'> = 'relay_arm_failed';
  readonly operation: string;
  readonly armStatus?: number;
  readonly armCode?: string;
  constructor(detail: string, options: RelayArmErrorOptions) {
    super(detail, options);
    this.operation = options.operation;
    this.armStatus = options.armStatus;
    this.armCode = options.armCode;
  }
}

/** A transient fault persisted past the retry budget (attempts or deadline). */
export class RelayArmUnavailableError extends RelayArmError {
  override readonly code = 'relay_arm_unavailable';
}

/**
 * ARM answered 429 and asked for a wait longer than a call may hold (the namespace-write window,
 * an emptied bucket): the caller defers the work to after `retryAfterMs` instead of sleeping.
 */
export class RelayThrottledError extends RelayArmError {
  override readonly code = 'relay_arm_throttled';
  readonly retryAfterMs: number;
  constructor(detail: string, options: RelayArmErrorOptions & { retryAfterMs: number }) {
    super(detail, options);
    this.retryAfterMs = options.retryAfterMs;
  }
}

export class RelayResourceNotFoundError extends RelayArmError {
  override readonly code = 'relay_resource_not_found';
}

export class RelayConflictError extends RelayArmError {
  override readonly code = 'relay_conflict';
}

export class RelayQuotaExceededError extends RelayArmError {
  override readonly code = 'relay_quota_exceeded';
}

/** A namespace did not reach `Succeeded` in time (or reached `Failed`). */
export class RelayActivationTimeoutError extends RelayArmError {
  override readonly code = 'relay_activation_timeout';
}

/** The relay refused a handshake (`statusCode` is its HTTP status) or it could not be reached (0). */
export class RelayHandshakeError extends BrokerError {
  readonly code = 'relay_handshake_failed';
  constructor(
    readonly statusCode: number,
    detail: string,
    options?: BrokerErrorOptions,
  ) {
    super(detail, options);
  }
}

// ---------------------------------------------------------------------------------------------

/** A setting is missing or invalid: raised at start-up, never answered to a caller. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

// ---------------------------------------------------------------------------------------------
// Anything thrown, as text

export interface DescribeErrorOptions {
  /** Append this many stack frames (server logs of unexpected errors only; never stored or shown). */
  stackFrames?: number;
}

/**
 * The one way to turn anything thrown into text for a log line, a row's `lastError`, a run
 * record or a CLI message: `Name: message` (the name only when it says more than `Error`),
 * whitespace folded onto one line, every recognised secret redacted, then cut to `maxLen`
 * characters (redacted before it is cut, so a cut never leaves half a secret behind).
 */
export function describeError(err: unknown, maxLen = 500, options: DescribeErrorOptions = {}): string {
  let text: string;
  if (err instanceof Error) {
    const message = err.message || err.name;
    text = err.name && err.name !== 'Error' && message !== err.name ? `${err.name}: ${message}` : message;
  } else if (typeof err === 'string') {
    text = err;
  } else {
    try {
      text = JSON.stringify(err) ?? String(err);
    } catch {
      text = String(err);
    }
  }
  text = redactSecrets(text.replace(/\s+/g, ' ').trim());
  if (text.length > maxLen) text = `${text.slice(0, Math.max(0, maxLen - 1))}…`;
  const frames = options.stackFrames ?? 0;
  if (frames > 0 && err instanceof Error && err.stack) {
    const stack = err.stack
      .split('\n')
      .filter((line) => /^\s+at /.test(line))
      .slice(0, frames);
    if (stack.length > 0) text += `\n${redactSecrets(stack.join('\n'))}`;
  }
  return text;
}

export interface ProblemResponse {
  status: number;
  headers: Record<string, string>;
  body: ProblemDetails;
  /** Set for unknown errors: the id to find the full error in the logs. */
  correlationId?: string;
}

/**
 * Maps any thrown value to a problem+json response. Known errors keep their status and code; a
 * transient fault (isTransientFault) is 503 `service_busy` with Retry-After; anything else becomes
 * a 500 with a correlation id and nothing of its internals.
 */
export function toProblem(err: unknown, instance?: string): ProblemResponse {
  // Load is never a 500: a transient storage or runtime fault is a 503 the caller may retry.
  if (isTransientFault(err))
    err = new ServiceBusyError('The service is busy (storage or the orchestration runtime); retry shortly.');
  if (err instanceof BrokerError) {
    const body: ProblemDetails = {
      type: PROBLEM_TYPE_BASE + err.code,
      title: err.title,
      status: err.status,
      detail: err.message,
      code: err.code,
      ...(instance ? { instance } : {}),
      ...err.extensions,
    };
    if (err instanceof ValidationError && err.fieldErrors.length > 0) body.errors = err.fieldErrors;
    return { status: err.status, headers: { 'content-type': PROBLEM_CONTENT_TYPE, ...err.headers }, body };
  }
  const correlationId = randomUUID();
  return {
    status: ERRORS.internal_error.status,
    headers: { 'content-type': PROBLEM_CONTENT_TYPE },
    correlationId,
    body: {
      type: PROBLEM_TYPE_BASE + 'internal_error',
      title: ERRORS.internal_error.title,
      status: ERRORS.internal_error.status,
      detail: `An unexpected error occurred. Quote correlation id ${correlationId} when reporting it.`,
      code: 'internal_error',
      correlationId,
      ...(instance ? { instance } : {}),
    },
  };
}
