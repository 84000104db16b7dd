// Typed errors with a stable `code` and HTTP status, and the one mapping of any error to an
// RFC 9457 problem document. lib/ throws these; functions/ maps them with `toProblem`.
import { randomUUID } from 'node:crypto';

export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  correlationId?: string;
  errors?: Array<{ path: string; message: string }>;
  [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
const PROBLEM_TYPE_BASE = 'https://relay-broker.dev/problems/';

export interface BrokerErrorOptions {
  /** Logical location of the failure, e.g. `namespaceStore.lease` (boundary-style op tag). */
  op?: string;
  cause?: unknown;
  /** Extra members of the problem document (must never hold a secret). */
  extensions?: Record<string, unknown>;
  /** Response headers that go with the problem, e.g. Retry-After. */
  headers?: Record<string, string>;
}

/** Base of every error the domain raises on purpose. `detail` is shown to the caller: no secrets. */
export abstract class BrokerError extends Error {
  abstract readonly code: string;
  abstract readonly status: number;
  abstract readonly title: string;
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
}

export interface FieldError {
  path: string;
  message: string;
}

export class ValidationError extends BrokerError {
  readonly code = 'validation_failed';
  readonly status = 400;
  readonly title = 'The request is not valid';
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
  readonly status = 400;
  readonly title = 'The request body is not valid JSON';
}

export class PayloadTooLargeError extends BrokerError {
  readonly code = 'payload_too_large';
  readonly status = 413;
  readonly title = 'The request body is too large';
}

export class UnsupportedMediaTypeError extends BrokerError {
  readonly code = 'unsupported_media_type';
  readonly status = 415;
  readonly title = 'The request body must be application/json';
}

export class UnauthenticatedError extends BrokerError {
  readonly code = 'unauthenticated';
  readonly status = 401;
  readonly title = 'Authentication is required';
  constructor(detail: string, options: BrokerErrorOptions = {}) {
    super(detail, {
      ...options,
      headers: { 'www-authenticate': 'Bearer error="invalid_token"', ...(options.headers ?? {}) },
    });
  }
}

export class ForbiddenError extends BrokerError {
  readonly code: string;
  readonly status = 403;
  readonly title = 'Not allowed';
  constructor(detail: string, code = 'forbidden', options?: BrokerErrorOptions) {
    super(detail, options);
    this.code = code;
  }
}

export class NotFoundError extends BrokerError {
  readonly code: string;
  readonly status = 404;
  readonly title = 'Not found';
  constructor(detail: string, code = 'not_found', options?: BrokerErrorOptions) {
    super(detail, options);
    this.code = code;
  }
}

export class ConflictError extends BrokerError {
  readonly code: string;
  readonly status = 409;
  readonly title = 'Conflict with the current state';
  constructor(detail: string, code = 'conflict', options?: BrokerErrorOptions) {
    super(detail, options);
    this.code = code;
  }
}

export class MethodNotAllowedError extends BrokerError {
  readonly code = 'method_not_allowed';
  readonly status = 405;
  readonly title = 'Method not allowed';
}

export class RateLimitedError extends BrokerError {
  readonly code = 'rate_limited';
  readonly status = 429;
  readonly title = 'Too many requests';
  constructor(detail: string, retryAfterSeconds: number, options: BrokerErrorOptions = {}) {
    super(detail, { ...options, headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) } });
  }
}

export class PoolExhaustedError extends BrokerError {
  readonly code = 'pool_exhausted';
  readonly status = 503;
  readonly title = 'No relay namespace is available';
  constructor(detail: string, retryAfterSeconds = 30, options: BrokerErrorOptions = {}) {
    super(detail, { ...options, headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) } });
  }
}

export class DeviceNotReadyError extends BrokerError {
  readonly code = 'device_not_ready';
  readonly status = 504;
  readonly title = 'The device did not answer in time';
}

/** A dependency (ARM, Storage) failed in a way a retry did not fix. */
export class UpstreamError extends BrokerError {
  readonly code: string;
  readonly status = 502;
  readonly title = 'An Azure dependency failed';
  constructor(detail: string, code = 'upstream_failed', options?: BrokerErrorOptions) {
    super(detail, options);
    this.code = code;
  }
}

/** A write lost an optimistic-concurrency race (ETag mismatch). Callers retry elsewhere. */
export class ConcurrencyError extends BrokerError {
  readonly code = 'concurrent_update';
  readonly status = 409;
  readonly title = 'The resource was changed by someone else';
}

/** A state machine refused a transition. */
export class InvalidTransitionError extends BrokerError {
  readonly code = 'invalid_transition';
  readonly status = 409;
  readonly title = 'The transition is not allowed';
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ProblemResponse {
  status: number;
  headers: Record<string, string>;
  body: ProblemDetails;
  /** Set for unknown errors: the id to find the full error in the logs. */
  correlationId?: string;
}

/**
 * Maps any thrown value to a problem+json response. Known errors keep their status and code;
 * anything else becomes a 500 with a correlation id and nothing of its internals.
 */
export function toProblem(err: unknown, instance?: string): ProblemResponse {
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
    status: 500,
    headers: { 'content-type': PROBLEM_CONTENT_TYPE },
    correlationId,
    body: {
      type: PROBLEM_TYPE_BASE + 'internal_error',
      title: 'Internal error',
      status: 500,
      detail: `An unexpected error occurred. Quote correlation id ${correlationId} when reporting it.`,
      code: 'internal_error',
      correlationId,
      ...(instance ? { instance } : {}),
    },
  };
}
