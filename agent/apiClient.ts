// The CLI's client of the relay-broker HTTP API (docs/api.md): JSON in and out, bearer token,
// and every failure turned into a CliError with the problem's title, detail and what to do.
import { describeError, isErrorCode, type ErrorCode } from '../lib/errors';
import { CliError, type CliProblem } from './errors';

export interface ApiResponse {
  status: number;
  body: unknown;
  headers: Headers;
}

export interface ApiClientOptions {
  /** Base URL including `/api`, e.g. `http://127.0.0.1:7071/api`. */
  apiUrl: string;
  token?: string;
  /** Per-request timeout (default 30000; the open budget is 8 s). */
  timeoutMs?: number;
  /** The fetch to use (through a proxy: agent/proxy.ts `fetchVia`); default the built-in one. */
  fetch?: typeof fetch;
}

export class ApiClient {
  readonly apiUrl: string;
  constructor(private readonly options: ApiClientOptions) {
    this.apiUrl = options.apiUrl.replace(/\/+$/, '');
  }

  /** Sends a request; non-2xx answers throw a CliError built from the problem document. */
  async request(
    method: string,
    path: string,
    options: { body?: unknown; query?: Record<string, string | undefined>; signal?: AbortSignal } = {},
  ): Promise<ApiResponse> {
    const url = new URL(this.apiUrl + path);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const timeout = AbortSignal.timeout(this.options.timeoutMs ?? 30_000);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await (this.options.fetch ?? fetch)(url, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal,
      });
    } catch (err) {
      throw unreachable(this.apiUrl, err, timeout.aborted);
    }
    const text = await res.text().catch(() => '');
    let body: unknown = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    if (res.status >= 200 && res.status < 300) return { status: res.status, body, headers: res.headers };
    throw problemError(res.status, body, res.headers, `${method} ${url.pathname}`);
  }

  get(path: string, query?: Record<string, string | undefined>, signal?: AbortSignal): Promise<ApiResponse> {
    return this.request('GET', path, { query, signal });
  }
  post(path: string, body?: unknown, signal?: AbortSignal): Promise<ApiResponse> {
    return this.request('POST', path, { body: body ?? {}, signal });
  }
  /** PUT; without `body` nothing is sent (routes that take no body refuse one). */
  put(path: string, body?: unknown, signal?: AbortSignal): Promise<ApiResponse> {
    return this.request('PUT', path, { body, signal });
  }
  delete(path: string, signal?: AbortSignal): Promise<ApiResponse> {
    return this.request('DELETE', path, { signal });
  }
}

function unreachable(apiUrl: string, err: unknown, timedOut: boolean): CliError {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  if (timedOut) {
    return new CliError({
      title: 'The API did not answer in time',
      detail: `No answer from ${apiUrl}.`,
      hint: 'Check that the broker is running and reachable, then retry.',
    });
  }
  if ((err as { name?: unknown }).name === 'AbortError') {
    return new CliError({ title: 'Cancelled', detail: 'The request was cancelled.' });
  }
  return new CliError({
    title: 'Cannot reach the API',
    detail: `${apiUrl}: ${code ?? (typeof cause?.message === 'string' ? cause.message : describeError(err))}`,
    hint: 'Check --api-url or RELAY_BROKER_URL; locally, is `npm start` running?',
  });
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** A CliError from an error answer: the problem's title and detail, and a hint by code or status. */
export function problemError(status: number, body: unknown, headers: Headers, what: string): CliError {
  const doc = body && typeof body === 'object' ? (body as Record<string, unknown>) : {};
  const code = str(doc.code);
  const retryAfter = headers.get('retry-after') ?? undefined;
  const problem: CliProblem = {
    title: str(doc.title) ?? `The API answered ${status}`,
    detail:
      str(doc.detail) ?? (typeof body === 'string' && body.length < 300 ? body : `${what} failed with HTTP ${status}.`),
    status,
    ...(code ? { code } : {}),
    ...(str(doc.correlationId) ? { correlationId: str(doc.correlationId) } : {}),
    ...(retryAfter ? { retryAfter } : {}),
  };
  const fieldErrors = Array.isArray(doc.errors)
    ? doc.errors
        .map((e) =>
          e && typeof e === 'object'
            ? `${str((e as { path?: unknown }).path) ?? ''}: ${str((e as { message?: unknown }).message) ?? ''}`
            : '',
        )
        .filter(Boolean)
    : [];
  if (fieldErrors.length) problem.detail += ` (${fieldErrors.join('; ')})`;
  const hint = hintFor(status, code, retryAfter, doc);
  if (hint) problem.hint = hint;
  return new CliError(problem);
}

/**
 * What to do about an error code. Keyed by the registry's codes, so a hint for a code the server
 * never sends does not compile; codes without a hint fall back to the status.
 */
export const HINTS: Partial<Record<ErrorCode, (later: string, problem: Record<string, unknown>) => string>> = {
  device_not_found: () => 'Check the device id with `relay-broker devices list`.',
  device_exists: () =>
    'Pick another id, or `relay-broker devices rotate <id>` to get a new enrollment for the existing device.',
  device_not_granted: () =>
    'Ask an admin to grant you this device: `relay-broker grants add <your principal id> <deviceId>`.',
  role_required: () => 'This command needs a token with the admin role.',
  // The problem says whether the pool can still grow (lib/pool/poolGrowth.ts): wait, or raise a setting.
  pool_exhausted: (later, problem) =>
    problem.poolGrowth === 'at_cap'
      ? `The pool is at its cap: an admin can raise POOL_CAP (\`relay-broker pool\` shows it); otherwise retry once a session has ended. ${later}`
      : problem.poolGrowth === 'at_quota'
        ? `Every pool subscription is at its namespace quota: an admin can raise a quota or add a subscription in POOL_SUBSCRIPTIONS (\`relay-broker pool\` shows them); otherwise retry once a session has ended. ${later}`
        : problem.poolGrowth === 'growing'
          ? `Every relay namespace is in use and the pool is growing. ${later}`
          : `Every relay namespace is in use. ${later}`,
  rate_limited: (later) => `Too many requests. ${later}`,
  too_many_sessions: () =>
    'You hold as many open sessions as allowed: end one with `relay-broker sessions end <id>` (list yours with `relay-broker sessions list --status ready`).',
  device_not_ready: () =>
    'Check that `relay-broker agent` runs on the device, can reach its queue, and that its enrollment is current.',
  device_refused: () =>
    "The detail says the agent's reason: if the port is not allowed, add it to the agent's --allow list on the device or pick an allowed --port.",
  device_offline: () =>
    'Its agent is not running or cannot reach the broker: check `relay-broker devices show <id>` (last seen) and the agent log on the device (`relay-broker agent doctor` names the cause).',
  session_not_found: () => 'Check the session id with `relay-broker sessions list`.',
};

function hintFor(
  status: number,
  code: string | undefined,
  retryAfter: string | undefined,
  problem: Record<string, unknown>,
): string | undefined {
  const later = retryAfter ? `Retry in ${retryAfter} s.` : 'Retry in a moment.';
  const byCode = isErrorCode(code) ? HINTS[code] : undefined;
  if (byCode) return byCode(later, problem);
  if (status === 401)
    return 'The token is missing, expired or invalid: pass --token or set RELAY_BROKER_TOKEN (locally: `relay-broker local token --role admin`).';
  if (status === 403) return 'Your token does not allow this; ask an admin for the role or grant.';
  if (status === 404) return 'Check the id, and that --api-url points at the right broker.';
  if (status === 429 || status === 503) return later;
  if (status >= 500) return 'The broker failed; retry, and quote the correlation id to its operator if it persists.';
  return undefined;
}
