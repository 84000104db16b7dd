// Outbound HTTP proxies for the CLI's three channels (queue polling, API/ready calls, relay
// WebSockets): which proxy applies to a URL (--proxy, else HTTPS_PROXY/ALL_PROXY/HTTP_PROXY, minus
// NO_PROXY), and HTTP CONNECT tunnels with basic auth. The proxy password never reaches a log line:
// everything that names a proxy goes through `redactProxyUrl`.
import { Buffer } from 'node:buffer';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { CliError } from './errors';

export interface ProxySettings {
  /** The proxy (http: or https:), credentials included when given. */
  url: URL;
  /** Where it came from, for `doctor` and the startup log. */
  source: '--proxy' | 'HTTPS_PROXY' | 'ALL_PROXY' | 'HTTP_PROXY';
  /** NO_PROXY entries: a host name or address matched exactly, or `.domain` for it and its subdomains. */
  noProxy: string[];
}

/** Why a tunnel through the proxy failed; `cause` says which step, for the log and `doctor`. */
export class ProxyError extends Error {
  constructor(
    message: string,
    readonly step: 'connect' | 'auth' | 'refused' | 'protocol' | 'timeout',
    readonly statusCode?: number,
  ) {
    super(message);
    this.name = 'ProxyError';
  }
}

function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  return env[name] || env[name.toLowerCase()] || undefined;
}

/** The proxy URL with its password replaced: safe to log. */
export function redactProxyUrl(url: URL): string {
  const copy = new URL(url.href);
  if (copy.password) copy.password = '***';
  return copy.href.replace(/\/$/, '');
}

function parseProxyUrl(value: string, source: string): URL {
  // A bare host:port is what many proxy settings hold; treat it as http://.
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError({
      title: 'The proxy setting is not a URL',
      detail: `${source} is not a URL (the value is not shown: it may hold a password).`,
      hint: 'Use http://[user:password@]host:port.',
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliError({
      title: 'Unsupported proxy',
      detail: `${source} uses ${url.protocol}; only HTTP proxies (http:// or https://) are supported.`,
      hint: 'Use http://[user:password@]host:port.',
    });
  }
  return url;
}

/**
 * The proxy settings in force: `--proxy`, else the environment as the Azure SDK reads it (one proxy
 * for every scheme: HTTPS_PROXY, else ALL_PROXY, else HTTP_PROXY; lower-case names too). NO_PROXY
 * uses the Azure SDK's rules so the queue channel and ours never disagree. Undefined: no proxy.
 */
export function resolveProxySettings(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ProxySettings | undefined {
  const noProxy = (envValue(env, 'NO_PROXY') ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s.length > 0);
  if (flag) return { url: parseProxyUrl(flag, '--proxy'), source: '--proxy', noProxy };
  for (const name of ['HTTPS_PROXY', 'ALL_PROXY', 'HTTP_PROXY'] as const) {
    const v = envValue(env, name);
    if (v) return { url: parseProxyUrl(v, name), source: name, noProxy };
  }
  return undefined;
}

/** The proxy for `target`, or undefined when there is none or NO_PROXY exempts its host. */
export function proxyFor(settings: ProxySettings | undefined, target: string | URL): URL | undefined {
  if (!settings) return undefined;
  const host = new URL(target).hostname.toLowerCase().replace(/^\[|\]$/g, '');
  for (const pattern of settings.noProxy) {
    if (pattern.startsWith('.') ? host.endsWith(pattern) || host === pattern.slice(1) : host === pattern) {
      return undefined;
    }
  }
  return settings.url;
}

/** The Azure SDK's `proxyOptions` for a client of `target` (the queue), or undefined. */
export function azureProxyOptions(
  settings: ProxySettings | undefined,
  target: string,
): { host: string; port: number; username?: string; password?: string } | undefined {
  const proxy = proxyFor(settings, target);
  if (!proxy) return undefined;
  return {
    host: `${proxy.protocol}//${proxy.hostname}`,
    port: Number(proxy.port || (proxy.protocol === 'https:' ? 443 : 80)),
    ...(proxy.username ? { username: decodeURIComponent(proxy.username) } : {}),
    ...(proxy.password ? { password: decodeURIComponent(proxy.password) } : {}),
  };
}

function proxyAuthorization(proxy: URL): string | undefined {
  if (!proxy.username && !proxy.password) return undefined;
  const user = decodeURIComponent(proxy.username);
  const pass = decodeURIComponent(proxy.password);
  return `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
}

/**
 * Opens a TCP tunnel to host:port through the proxy with HTTP CONNECT. Resolves with the raw
 * socket once the proxy answered 2xx; rejects with a ProxyError naming the step that failed.
 */
export function connectThroughProxy(
  proxy: URL,
  host: string,
  port: number,
  options: { timeoutMs?: number; proxyCa?: string | Buffer } = {},
): Promise<net.Socket> {
  const proxyPort = Number(proxy.port || (proxy.protocol === 'https:' ? 443 : 80));
  const where = `${proxy.hostname}:${proxyPort}`;
  const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  return new Promise((resolve, reject) => {
    const socket: net.Socket =
      proxy.protocol === 'https:'
        ? tls.connect({ host: proxy.hostname, port: proxyPort, servername: proxy.hostname, ca: options.proxyCa })
        : net.connect({ host: proxy.hostname, port: proxyPort });
    let settled = false;
    let head = Buffer.alloc(0);
    const fail = (err: ProxyError): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      reject(err);
    };
    socket.setTimeout(options.timeoutMs ?? 15_000, () =>
      fail(new ProxyError(`the proxy ${where} did not answer CONNECT ${authority} in time`, 'timeout')),
    );
    socket.once('error', (err: NodeJS.ErrnoException) =>
      fail(new ProxyError(`cannot reach the proxy ${where}: ${err.code ?? err.message}`, 'connect')),
    );
    socket.once('close', () =>
      fail(new ProxyError(`the proxy ${where} closed the connection during CONNECT ${authority}`, 'protocol')),
    );
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 16 * 1024) fail(new ProxyError(`the proxy ${where} sent an oversized answer`, 'protocol'));
        return;
      }
      socket.off('data', onData);
      const statusLine = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})\s*(.*)$/.exec(statusLine);
      if (!m) return fail(new ProxyError(`the proxy ${where} answered CONNECT with "${statusLine}"`, 'protocol'));
      const status = Number(m[1]);
      if (status === 407) {
        return fail(
          new ProxyError(
            `the proxy ${where} requires authentication (407)${proxy.username ? ' and refused the credentials' : ''}`,
            'auth',
            status,
          ),
        );
      }
      if (status < 200 || status > 299) {
        return fail(
          new ProxyError(
            `the proxy ${where} refused CONNECT ${authority}: ${status} ${m[2]}`.trim(),
            'refused',
            status,
          ),
        );
      }
      settled = true;
      socket.setTimeout(0);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      const rest = head.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    socket.on('data', onData);
    const auth = proxyAuthorization(proxy);
    socket.write(
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`,
    );
  });
}

type ConnectionCallback = (err: Error | null, stream: Duplex) => void;

/** An http.Agent whose every connection is a CONNECT tunnel (no pooling: one tunnel per request). */
class HttpTunnelAgent extends http.Agent {
  constructor(private readonly proxy: URL) {
    super({ keepAlive: false });
  }
  override createConnection(options: http.ClientRequestArgs, cb?: ConnectionCallback): undefined {
    const host = String(options.host ?? options.hostname ?? 'localhost');
    connectThroughProxy(this.proxy, host, Number(options.port ?? 80)).then(
      (s) => cb?.(null, s),
      (err: Error) => cb?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

/** The same for TLS targets: TLS to the target runs inside the tunnel, with the request's CA options. */
class HttpsTunnelAgent extends https.Agent {
  constructor(private readonly proxy: URL) {
    super({ keepAlive: false });
  }
  override createConnection(options: https.RequestOptions, cb?: ConnectionCallback): undefined {
    const host = String(options.host ?? options.hostname ?? 'localhost');
    connectThroughProxy(this.proxy, host, Number(options.port ?? 443)).then(
      (raw) => {
        const secure = tls.connect({
          socket: raw,
          servername: options.servername ?? (net.isIP(host) ? undefined : host),
          ca: options.ca,
          cert: options.cert,
          key: options.key,
          rejectUnauthorized: options.rejectUnauthorized,
          ALPNProtocols: ['http/1.1'],
        });
        cb?.(null, secure);
      },
      (err: Error) => cb?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

/** Agents per proxy, reused across requests (they hold no sockets). */
const agents = new Map<string, { http: http.Agent; https: https.Agent }>();

/** The agent to use for `target` (http(s):// or ws(s)://), or undefined to connect directly. */
export function proxyAgentFor(settings: ProxySettings | undefined, target: string | URL): http.Agent | undefined {
  const proxy = proxyFor(settings, target);
  if (!proxy) return undefined;
  let pair = agents.get(proxy.href);
  if (!pair) {
    pair = { http: new HttpTunnelAgent(proxy), https: new HttpsTunnelAgent(proxy) };
    agents.set(proxy.href, pair);
  }
  const protocol = new URL(target).protocol;
  return protocol === 'https:' || protocol === 'wss:' ? pair.https : pair.http;
}

/**
 * A `fetch` that goes through the proxy when one applies to the URL (Node's built-in fetch cannot
 * take an agent), and is the built-in fetch otherwise. Enough for the CLI: string bodies, JSON answers.
 */
export function fetchVia(settings: ProxySettings | undefined): typeof fetch {
  if (!settings) return fetch;
  return async (input, init = {}) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const agent = proxyAgentFor(settings, url);
    if (!agent) return fetch(input, init);
    if (init.body !== undefined && init.body !== null && typeof init.body !== 'string')
      throw new TypeError('the proxied fetch sends string bodies only');
    const body = init.body ?? undefined;
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((v, k) => (headers[k] = v));
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const request = url.protocol === 'https:' ? https.request : http.request;
    return new Promise<Response>((resolve, reject) => {
      const req = request(
        url,
        { method: init.method ?? 'GET', headers, agent, signal: init.signal ?? undefined },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const status = res.statusCode ?? 502;
            const out = new Headers();
            for (const [k, v] of Object.entries(res.headers)) {
              if (Array.isArray(v)) for (const x of v) out.append(k, x);
              else if (v !== undefined) out.set(k, v);
            }
            const nullBody = status === 204 || status === 205 || status === 304;
            resolve(
              new Response(nullBody ? null : Buffer.concat(chunks), {
                status,
                statusText: res.statusMessage,
                headers: out,
              }),
            );
          });
        },
      );
      // fetch's own shape: a network failure is a TypeError whose cause is the underlying error.
      req.on('error', (err) => reject(err.name === 'AbortError' ? err : new TypeError('fetch failed', { cause: err })));
      req.end(body);
    });
  };
}
