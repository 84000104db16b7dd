// The host's HTTP front door, as guarded as the real one: the system key on /admin and the
// extension webhooks, the request limits of the Azure front end (100 MB body, 4 KB URL) enforced
// before anything is buffered, header and body timeouts (408) and a connection cap.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

export interface FrontDoorLimits {
  /** Largest request body (Azure: 100 MB, the httpRuntime maxRequestLength). */
  maxRequestBytes: number;
  /** Longest request target (Azure: 4 KB). */
  maxUrlBytes: number;
  /** Time to receive the request headers before 408. */
  headersTimeoutMs: number;
  /** Time to receive the whole request (headers and body) before 408. */
  requestTimeoutMs: number;
  /** Open connections at once; more are refused at accept. */
  maxConnections: number;
  /**
   * Connections the listening socket holds before they are accepted. Azure's front end takes a
   * burst of hundreds of new connections at once; Node's default (511) made the kernel drop the
   * SYNs of a burst of 500 opens on a busy host (TcpExtListenOverflows), and the clients' SYN
   * retries (1, 3, 7, 15 s) spread the burst over 30 s. The kernel caps it at net.core.somaxconn.
   */
  acceptBacklog: number;
}

export const DEFAULT_LIMITS: FrontDoorLimits = {
  maxRequestBytes: 100 * 1024 * 1024,
  maxUrlBytes: 4096,
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 60_000,
  maxConnections: 1024,
  acceptBacklog: 4096,
};

/** The header and query parameter the real host reads a key from. */
export const KEY_HEADER = 'x-functions-key';
export const KEY_QUERY = 'code';

/** A fresh system key: 32 random bytes, base64url (what `code=` carries). */
export function newSystemKey(): string {
  return randomBytes(32).toString('base64url');
}

/** Paths the real host serves only with its master or system key: the admin API and extension webhooks. */
export function needsSystemKey(pathname: string): boolean {
  return pathname === '/admin' || pathname.startsWith('/admin/') || pathname.startsWith('/runtime/webhooks/');
}

/** The key a request presents, as the real host reads it: the `x-functions-key` header, else `?code=`. */
export function presentedKey(req: IncomingMessage, url: URL): string | undefined {
  const header = req.headers[KEY_HEADER];
  const fromHeader = Array.isArray(header) ? header[0] : header;
  return fromHeader || url.searchParams.get(KEY_QUERY) || undefined;
}

/** Constant-time comparison (hashing first makes the lengths equal). */
export function keyMatches(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** Timeouts and the connection cap on the server itself (Node answers 408 for the timeouts). */
export function applyServerLimits(server: Server, limits: FrontDoorLimits): void {
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.maxConnections = limits.maxConnections;
}

/**
 * Reads the body while counting: a declared Content-Length over the limit is refused before a
 * byte is read, a streamed body as soon as it passes the limit (undefined then; nothing more is
 * buffered and the connection closes after the 413).
 */
export function readBodyWithin(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size <= limit) return void chunks.push(c);
      req.off('data', onData);
      req.pause();
      chunks.length = 0;
      resolve(undefined);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** An RFC 9457 problem document from the front door itself (the app's own use lib/errors.ts). */
export function sendProblem(
  res: ServerResponse,
  status: number,
  code: string,
  title: string,
  detail: string,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify({
    type: `https://relay-broker.dev/problems/${code}`,
    title,
    status,
    detail,
    code,
  });
  res.writeHead(status, {
    'content-type': 'application/problem+json',
    'content-length': String(Buffer.byteLength(body)),
    ...headers,
  });
  res.end(body);
}
