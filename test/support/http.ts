// Small HTTP helpers for tests that call the API the way a user does.
import assert from 'node:assert/strict';

export interface ApiResult<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export async function call<T = Record<string, unknown>>(
  method: string,
  url: string,
  options: { token?: string; body?: unknown; rawBody?: string | Uint8Array; headers?: Record<string, string> } = {},
): Promise<ApiResult<T>> {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | Uint8Array | undefined = options.rawBody;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(url, { method, headers, body });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed as T, text };
}

/** Asserts an RFC 9457 problem with the given status and (optionally) code. */
export function assertProblem(r: ApiResult, status: number, code?: string): void {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
  const b = r.body as Record<string, unknown>;
  assert.equal(b.status, status);
  assert.equal(typeof b.title, 'string');
  assert.equal(typeof b.type, 'string');
  assert.equal(typeof b.code, 'string');
  if (code) assert.equal(b.code, code);
  assert.doesNotMatch(r.text, /at [A-Za-z.]+ \(|node_modules|\.js:\d+/, 'no stack trace');
}
